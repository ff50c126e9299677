//! A whole training run, as t5x's `train.py` assembles one from [`RunSettings`]: data
//! (tasks, mixtures, batches), the model, the dual Adafactor, the loop with periodic
//! evaluation, then the final evaluation tables and plots.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use hint_data::RunData;
use hint_dist::ProcessGroup;
use hint_model::HyperT5;
use hint_optim::Adafactor;

use crate::atomic::{write_atomically, write_atomically_with};
use crate::batches::TaskBatches;
use crate::error::{Result, TrainError};
use crate::eval::{average, write_results, EvalMonitor, EvalProgress};
use crate::eval_sets::{read_eval_sets, score_sets_in, EvalSets, SetResults};
use crate::model::{build_model, check_vocabulary};
use crate::model_dir::ModelDir;
use crate::settings::RunSettings;
use crate::trainer::{shard_owners, TrainHooks, TrainOutcome, Trainer};

/// What a finished (or interrupted) run reports.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The model directory.
    pub model_dir: PathBuf,
    /// How training ended.
    pub outcome: TrainOutcome,
    /// Seconds spent training.
    pub train_seconds: f64,
    /// Results per evaluation set label.
    pub results: SetResults,
    /// The Markdown report (also written as `eval_results.md`).
    pub markdown: String,
    /// Plots written.
    pub plots: Vec<PathBuf>,
    /// The tokenized evaluation sets the results come from.
    pub eval_sets: EvalSets,
    /// The run's vocabulary.
    pub vocabulary: Arc<hint_data::Vocabulary>,
}

/// Trains (resuming if the model directory holds checkpoints), then evaluates every
/// evaluation set, writes `eval_results.json`/`.md` and the plots.
pub fn train_and_evaluate(
    settings: &RunSettings,
    hooks: &mut dyn TrainHooks,
) -> Result<RunSummary> {
    train_and_evaluate_in(settings, hooks, &ProcessGroup::single())
}

/// [`train_and_evaluate`] as one rank of a data-parallel `group`. The ranks first agree
/// on the configuration and versions; rank 0 prepares (and locks) the model directory,
/// builds the vocabulary and checks the checkpoint, then the others follow, reading what
/// it wrote. Only rank 0 writes and evaluates; every rank trains its slice of each global
/// batch.
pub fn train_and_evaluate_in(
    settings: &RunSettings,
    hooks: &mut dyn TrainHooks,
    group: &ProcessGroup,
) -> Result<RunSummary> {
    if settings.run.model_dir.is_empty() {
        return Err(TrainError::invalid(
            "hint.train.Run.model_dir",
            "no model directory: bind it (e.g. --gin.MODEL_DIR=\\\"/tmp/run\\\")",
        ));
    }
    let main = group.is_main();
    if group.world_size() > 1 {
        group.agree(
            "hint and libtorch version",
            &format!(
                "hint {} libtorch {}",
                env!("CARGO_PKG_VERSION"),
                hint_model::libtorch_version()
            ),
        )?;
        group.agree(
            "configuration (digest of config.gin)",
            &format!(
                "{:016x}",
                hint_data::rng::fnv1a(settings.config_text.as_bytes())
            ),
        )?;
        if !main {
            // Rank 0 prepares the directory and its tokenizer first (the barrier below).
            group.barrier()?;
        }
    }
    let model_dir = if main {
        ModelDir::prepare(&settings.run.model_dir)?
    } else {
        ModelDir::follow(&settings.run.model_dir)?
    };
    let tokenizer_path = model_dir.path().join("tokenizer.json");
    let data = settings.data.build(
        settings.run.lengths,
        // A following rank's directory counts as resumed: it reads rank 0's tokenizer.
        model_dir.resumed().then_some(tokenizer_path.as_path()),
    )?;
    check_vocabulary(&data, &settings.t5)?;
    let (vs, model) = build_model(settings)?;
    tracing::info!(
        hypernetwork_parameters = model.hypernetwork_parameter_count(),
        model_dir = %model_dir.path().display(),
        "model built"
    );
    let groups = settings.param_groups();
    let mut optimizer = if settings.train.shard_optimizer && group.world_size() > 1 {
        let owners = shard_owners(&vs, group.world_size());
        let rank = group.rank();
        Adafactor::from_var_store_sharded(&vs, groups, &|name| owners.get(name) == Some(&rank))?
    } else {
        Adafactor::from_var_store(&vs, groups)?
    };
    tracing::info!(
        rank = group.rank(),
        world_size = group.world_size(),
        optimizer_state_bytes = optimizer.state_bytes(),
        "optimizer state on this rank"
    );
    let mut source = TaskBatches::new(&data.registry, settings, settings.train.seed as u64)?;
    // Every evaluation set is read before the first step (not after the last one), once
    // for the periodic and the final evaluations.
    let sets = read_eval_sets(&data, settings)?;
    let mut trainer = Trainer::new(
        &model,
        &vs,
        &mut optimizer,
        settings.train.clone(),
        model_dir.clone(),
    )
    .with_group(group);
    // A resume restores parameters, optimizer state and data position now: a checkpoint
    // that does not fit this configuration is refused before anything is written.
    let start = trainer.restore_latest(&mut source)?.unwrap_or(0);
    // Only now, with everything checked, does the run write into its directory (each file
    // under a temporary name, then renamed).
    if main {
        write_atomically_with(&tokenizer_path, |tmp| Ok(data.vocabulary.save(tmp)?))?;
        write_atomically(&model_dir.config_path(), settings.config_text.as_bytes())?;
        if group.world_size() > 1 {
            group.barrier()?;
        }
    }
    let started = Instant::now();
    let outcome = {
        let mut hooks = PeriodicEval {
            inner: hooks,
            data: &data,
            settings,
            sets: &sets,
            group,
        };
        trainer.train_from(start, &mut source, &mut hooks)?
    };
    let train_seconds = started.elapsed().as_secs_f64();
    if main {
        write_atomically(
            &model_dir.path().join("operative_config.gin"),
            settings.operative_text.as_bytes(),
        )?;
    }
    // An interrupted run has no results: nothing empty is written in their place. Every
    // rank evaluates its share of the tasks; rank 0 gets them all and writes.
    let (outcome, results, markdown) = match outcome {
        TrainOutcome::Finished { step } => {
            match score_sets_in(&model, &sets, &data, settings, &mut *hooks, group) {
                Ok(results) if main => {
                    let markdown = write_results(model_dir.path(), &results)?;
                    (outcome, results, markdown)
                }
                Ok(_) => (outcome, Vec::new(), String::new()),
                // The final checkpoint is saved: the same command evaluates it again.
                Err(TrainError::Interrupted { task }) => {
                    tracing::warn!(task, "final evaluation interrupted");
                    (
                        TrainOutcome::Interrupted { step },
                        Vec::new(),
                        String::new(),
                    )
                }
                Err(err) => return Err(err),
            }
        }
        interrupted => (interrupted, Vec::new(), String::new()),
    };
    let plots = if main {
        crate::plot::plot_run(model_dir.path())?
    } else {
        Vec::new()
    };
    Ok(RunSummary {
        model_dir: model_dir.path().to_path_buf(),
        outcome,
        train_seconds,
        results,
        markdown,
        plots,
        eval_sets: sets,
        vocabulary: Arc::clone(&data.vocabulary),
    })
}

/// Wraps the caller's hooks with the run's periodic evaluation (`TrainConfig.eval_every`):
/// every evaluation set, averaged per set, as `label/metric` scores in `metrics.jsonl`.
struct PeriodicEval<'a> {
    inner: &'a mut dyn TrainHooks,
    data: &'a RunData,
    settings: &'a RunSettings,
    sets: &'a EvalSets,
    /// The ranks share the tasks; rank 0 gets every score.
    group: &'a ProcessGroup,
}

impl TrainHooks for PeriodicEval<'_> {
    fn on_step(&mut self, metrics: &crate::StepMetrics) {
        self.inner.on_step(metrics);
    }

    fn evaluate(&mut self, step: u64, model: &HyperT5) -> Result<BTreeMap<String, f64>> {
        let mut scores = self.inner.evaluate(step, model)?;
        let sets = score_sets_in(
            model,
            self.sets,
            self.data,
            self.settings,
            &mut *self.inner,
            self.group,
        )?;
        for (label, results) in sets {
            for (metric, value) in average(&results) {
                scores.insert(format!("{label}/{metric}"), value);
            }
        }
        tracing::info!(step, ?scores, "evaluation");
        Ok(scores)
    }

    fn on_checkpoint(&mut self, checkpoint: &crate::CheckpointInfo) {
        self.inner.on_checkpoint(checkpoint);
    }
}

impl EvalMonitor for PeriodicEval<'_> {
    fn on_eval_progress(&mut self, progress: &EvalProgress<'_>) {
        self.inner.on_eval_progress(progress);
    }

    fn should_stop(&self) -> bool {
        self.inner.should_stop()
    }
}
