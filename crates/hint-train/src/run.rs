//! A whole run from a gin configuration, as t5x's `train.py` / `eval.py` assemble one:
//! the registry of configurables, data (tasks, mixtures, batches), the model, the dual
//! Adafactor, the loop, evaluation tables and plots.
//!
//! Configurables (bind them in gin with any unique suffix):
//! `hint.train.Run`, `hint.train.TrainConfig`, `hint.train.EvalConfig`,
//! `hint.model.T5Config`, `hint.model.HyperConfig`, and `hint.optim.Adafactor` in the
//! scopes `hyper` and `t5` (the dual groups).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use hint_config::{Config, ConfigBuilder, Registry};
use hint_data::feature_converter::HintConverter;
use hint_data::task::ReadOptions;
use hint_data::{BatchIterator, DatasetConfig, IteratorState, TaskRegistry, Value};
use hint_model::{select_device, HyperConfig, HyperT5, T5Config};
use hint_optim::{Adafactor, AdafactorConfig, ParamGroup};
use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Device, Kind, Tensor};

use crate::data::{build_data, DataSettings, RunData};
use crate::error::{io_error, Result, TrainError};
use crate::eval::{evaluate, markdown_table, EvalConfig, EvalExample, EvalTask, TaskResult};
use crate::model_dir::ModelDir;
use crate::trainer::{BatchSource, TrainBatch, TrainConfig, TrainHooks, TrainOutcome, Trainer};

/// How the instruction reaches the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstructionMode {
    /// In `hyper_inputs`, for the hypernetwork and fusion (HINT).
    Hyper,
    /// Prepended to every input (the Tk-Instruct / T0 concatenation baseline).
    Concat,
}

/// The run: where it writes, what it trains on and evaluates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// The model directory (t5x's `MODEL_DIR`).
    pub model_dir: String,
    /// The training task or mixture.
    pub mixture: String,
    /// Evaluation sets: `(label, task or mixture, split)`.
    pub eval_sets: Vec<(String, String, String)>,
    /// Examples per batch.
    pub batch_size: usize,
    /// Lengths of `inputs`, `hyper_inputs`, `targets`.
    pub lengths: (usize, usize, usize),
    /// Where the instruction goes.
    pub instruction_mode: InstructionMode,
    /// Evaluate at most this many instances per task (0: all).
    pub eval_examples_per_task: usize,
    /// `cpu`, `cuda`, `cuda:N` or `auto`.
    pub device: String,
    /// A Hugging Face T5 directory to start from (a fresh hypernetwork on top); empty for
    /// random initialisation.
    pub initial_checkpoint: String,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            model_dir: String::new(),
            mixture: "builtin_train".into(),
            eval_sets: vec![
                ("seen".into(), "builtin_train".into(), "validation".into()),
                ("held-out".into(), "builtin_heldout".into(), "test".into()),
            ],
            batch_size: 32,
            lengths: (24, 32, 16),
            instruction_mode: InstructionMode::Hyper,
            eval_examples_per_task: 0,
            device: "cpu".into(),
            initial_checkpoint: String::new(),
        }
    }
}

/// The configurables a run reads.
pub fn registry() -> Result<Registry> {
    let mut registry = Registry::new();
    let err = |e: hint_config::ConfigError| TrainError::Data(e.to_string());
    registry
        .register_struct::<RunConfig>("hint.train.Run")
        .map_err(err)?;
    registry
        .register_struct::<TrainConfig>("hint.train.TrainConfig")
        .map_err(err)?;
    registry
        .register_struct::<EvalConfig>("hint.train.EvalConfig")
        .map_err(err)?;
    registry
        .register_struct::<T5Config>("hint.model.T5Config")
        .map_err(err)?;
    registry
        .register_struct::<HyperConfig>("hint.model.HyperConfig")
        .map_err(err)?;
    registry
        .register_struct::<AdafactorConfig>("hint.optim.Adafactor")
        .map_err(err)?;
    crate::data::register(&mut registry).map_err(err)?;
    registry
        .register_struct::<crate::experiment::ExperimentConfig>("hint.experiment.Experiment")
        .map_err(err)?;
    Ok(registry)
}

/// Parses gin files and bindings (t5x order) against [`registry`].
pub fn load_config(
    files: &[PathBuf],
    bindings: &[String],
    search_paths: &[PathBuf],
    skip_unknown: bool,
) -> Result<Config> {
    let mut builder = ConfigBuilder::new()
        .registry(registry()?)
        .search_paths(search_paths.iter().cloned())
        .skip_unknown(skip_unknown);
    for file in files {
        builder = builder.file(file.display().to_string());
    }
    for binding in bindings {
        builder = builder.binding(binding.clone());
    }
    builder.build().map_err(|e| TrainError::Data(e.to_string()))
}

/// Everything a run is built from, read from the configuration.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// `hint.train.Run`.
    pub run: RunConfig,
    /// `hint.train.TrainConfig`.
    pub train: TrainConfig,
    /// `hint.train.EvalConfig`.
    pub eval: EvalConfig,
    /// `hint.model.T5Config`.
    pub t5: T5Config,
    /// `hint.model.HyperConfig`.
    pub hyper: HyperConfig,
    /// `hyper/hint.optim.Adafactor`.
    pub hyper_optimizer: AdafactorConfig,
    /// `t5/hint.optim.Adafactor`.
    pub t5_optimizer: AdafactorConfig,
    /// The `hint.data.*` configurables.
    pub data: DataSettings,
}

impl RunSettings {
    /// Reads every configurable of a run.
    pub fn from_config(config: &Config) -> Result<Self> {
        let get_err = |e: hint_config::ConfigError| TrainError::Data(e.to_string());
        Ok(Self {
            run: config.get("hint.train.Run", "").map_err(get_err)?,
            train: config.get("hint.train.TrainConfig", "").map_err(get_err)?,
            eval: config.get("hint.train.EvalConfig", "").map_err(get_err)?,
            t5: config.get("hint.model.T5Config", "").map_err(get_err)?,
            hyper: config.get("hint.model.HyperConfig", "").map_err(get_err)?,
            hyper_optimizer: config
                .get("hint.optim.Adafactor", "hyper")
                .map_err(get_err)?,
            t5_optimizer: config.get("hint.optim.Adafactor", "t5").map_err(get_err)?,
            data: DataSettings::from_config(config)?,
        })
    }
}

/// Strips padding (0) and, optionally, a final EOS (1).
fn strip(row: &[i64], drop_eos: bool) -> Vec<i64> {
    let mut out: Vec<i64> = row.iter().copied().take_while(|&t| t != 0).collect();
    if drop_eos && out.last() == Some(&1) {
        out.pop();
    }
    out
}

/// The concatenation baseline's input: instruction (without its EOS) then the input.
fn concatenate(instruction: &[i64], input: &[i64]) -> Vec<i64> {
    let mut out = strip(instruction, true);
    out.extend(strip(input, false));
    out
}

/// Training batches from a [`BatchIterator`], as tensors on the run's device.
pub struct IteratorSource<'a> {
    registry: &'a TaskRegistry,
    name: String,
    config: DatasetConfig,
    converter: Arc<HintConverter>,
    iterator: BatchIterator,
    mode: InstructionMode,
    device: Device,
}

impl<'a> IteratorSource<'a> {
    /// Batches of `name` in `split`.
    pub fn new(
        registry: &'a TaskRegistry,
        run: &RunConfig,
        seed: u64,
        device: Device,
    ) -> Result<Self> {
        let config = DatasetConfig {
            seed,
            batch_size: run.batch_size,
            ..DatasetConfig::default()
        };
        let (li, lh, lt) = run.lengths;
        let converter = Arc::new(HintConverter::new(li, lh, lt));
        let iterator =
            BatchIterator::new(registry, &run.mixture, config.clone(), converter.clone())
                .map_err(|e| TrainError::Data(e.to_string()))?;
        Ok(Self {
            registry,
            name: run.mixture.clone(),
            config,
            converter,
            iterator,
            mode: run.instruction_mode,
            device,
        })
    }
}

fn feature(batch: &hint_data::Batch, name: &str) -> Result<hint_data::BatchFeature> {
    batch
        .get(name)
        .cloned()
        .ok_or_else(|| TrainError::Data(format!("the batch has no `{name}`")))
}

fn to_tensor(rows: &[Vec<i64>], device: Device) -> Tensor {
    let refs: Vec<&[i64]> = rows.iter().map(Vec::as_slice).collect();
    crate::eval::pad_rows(&refs, device)
}

impl BatchSource for IteratorSource<'_> {
    fn next_batch(&mut self) -> Result<TrainBatch> {
        let batch = self
            .iterator
            .next()
            .transpose()
            .map_err(|e| TrainError::Data(e.to_string()))?
            .ok_or_else(|| {
                TrainError::Data(format!("`{}` ran out of training batches", self.name))
            })?;
        let rows = |f: &hint_data::BatchFeature| {
            (0..f.shape[0])
                .map(|i| f.row(i).to_vec())
                .collect::<Vec<_>>()
        };
        let inputs = rows(&feature(&batch, "encoder_input_tokens")?);
        let hyper = rows(&feature(&batch, "hyper_encoder_input_tokens")?);
        let (inputs, hyper) = match self.mode {
            InstructionMode::Hyper => (inputs, hyper),
            InstructionMode::Concat => (
                inputs
                    .iter()
                    .zip(&hyper)
                    .map(|(x, h)| concatenate(h, x))
                    .collect(),
                hyper.iter().map(|_| vec![1]).collect(),
            ),
        };
        let float = |f: hint_data::BatchFeature| {
            Tensor::from_slice(&f.data)
                .view([f.shape[0] as i64, f.shape[1] as i64])
                .to_kind(Kind::Float)
                .to_device(self.device)
        };
        let ids = |f: hint_data::BatchFeature| {
            Tensor::from_slice(&f.data)
                .view([f.shape[0] as i64, f.shape[1] as i64])
                .to_device(self.device)
        };
        Ok(TrainBatch {
            inputs: to_tensor(&inputs, self.device),
            hyper_inputs: to_tensor(&hyper, self.device),
            decoder_inputs: ids(feature(&batch, "decoder_input_tokens")?),
            targets: ids(feature(&batch, "decoder_target_tokens")?),
            loss_weights: float(feature(&batch, "decoder_loss_weights")?),
        })
    }

    fn state(&self) -> serde_json::Value {
        serde_json::to_value(self.iterator.state()).unwrap_or_default()
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<()> {
        let state: IteratorState = serde_json::from_value(state.clone())
            .map_err(|e| TrainError::Data(format!("iterator state: {e}")))?;
        self.iterator = BatchIterator::restore(
            self.registry,
            &self.name,
            self.config.clone(),
            self.converter.clone(),
            &state,
        )
        .map_err(|e| TrainError::Data(e.to_string()))?;
        Ok(())
    }
}

/// The evaluation tasks of `(task or mixture, split)`: instances grouped by task and
/// instruction, tokenized.
pub fn eval_tasks(
    data: &RunData,
    name: &str,
    split: &str,
    run: &RunConfig,
) -> Result<Vec<EvalTask>> {
    let data_err = |e: hint_data::DataError| TrainError::Data(e.to_string());
    let members = data.registry.resolve(name, split, &[]).map_err(data_err)?;
    let mut tasks = Vec::new();
    for (task, _) in members {
        let mut stream = task
            .open(split, &ReadOptions::default())
            .map_err(data_err)?;
        let mut groups: BTreeMap<Vec<i64>, Vec<EvalExample>> = BTreeMap::new();
        let mut count = 0;
        'read: while let Some(chunk) = stream.next_chunk(256) {
            for example in chunk {
                let example = example.map_err(data_err)?;
                let tokens = |name: &str| -> Vec<i64> {
                    match example.get(name) {
                        Some(Value::Tokens(t)) => t.iter().map(|&x| i64::from(x)).collect(),
                        _ => Vec::new(),
                    }
                };
                let references = match example.get("references") {
                    Some(Value::Texts(t)) => t.clone(),
                    _ => match example.get("targets_pretokenized") {
                        Some(Value::Text(t)) => vec![t.clone()],
                        _ => Vec::new(),
                    },
                };
                let (li, lh, _) = run.lengths;
                let mut input = tokens("inputs");
                input.truncate(li);
                let mut instruction = tokens("hyper_inputs");
                instruction.truncate(lh);
                let (instruction, input) = match run.instruction_mode {
                    InstructionMode::Hyper => (instruction, input),
                    InstructionMode::Concat => (Vec::new(), concatenate(&instruction, &input)),
                };
                let choices = rank_choices(&example, &references, data)?;
                groups.entry(instruction).or_default().push(EvalExample {
                    input,
                    references,
                    choices,
                });
                count += 1;
                if run.eval_examples_per_task > 0 && count >= run.eval_examples_per_task {
                    break 'read;
                }
            }
        }
        let several = groups.len() > 1;
        for (i, (instruction, examples)) in groups.into_iter().enumerate() {
            tasks.push(EvalTask {
                name: if several {
                    format!("{}#{i}", task.name())
                } else {
                    task.name().to_string()
                },
                instruction,
                examples,
            });
        }
    }
    Ok(tasks)
}

/// Rank classification's candidates (P3 / T0 evaluation, BIG-bench `target_scores`): the
/// `answer_choices` tokenized with EOS, and the index of the reference among them. `None`
/// when the example has no choices or its reference is not one of them.
fn rank_choices(
    example: &hint_data::Example,
    references: &[String],
    data: &RunData,
) -> Result<Option<(Vec<Vec<i64>>, usize)>> {
    let Some(Value::Texts(choices)) = example.get("answer_choices") else {
        return Ok(None);
    };
    let Some(correct) = references
        .first()
        .and_then(|r| choices.iter().position(|c| c.trim() == r.trim()))
    else {
        return Ok(None);
    };
    let tokens = choices
        .iter()
        .map(|c| {
            data.vocabulary
                .encode(c)
                .map(|ids| ids.into_iter().map(i64::from).collect())
                .map_err(|e| TrainError::Data(e.to_string()))
        })
        .collect::<Result<Vec<Vec<i64>>>>()?;
    Ok(Some((tokens, correct)))
}

/// The model's embedding must cover every id the tokenizer produces.
pub fn check_vocabulary(data: &RunData, t5: &T5Config) -> Result<()> {
    let size = data.vocabulary.vocab_size() as i64;
    if size > t5.vocab_size {
        return Err(TrainError::Data(format!(
            "the tokenizer has {size} ids but hint.model.T5Config.vocab_size is {}: \
             bind vocab_size to at least {size}",
            t5.vocab_size
        )));
    }
    Ok(())
}

/// Builds the model and its variables on `device`.
pub fn build_model(settings: &RunSettings, device: Device) -> Result<(VarStore, HyperT5)> {
    tch::manual_seed(settings.train.seed);
    let vs = VarStore::new(device);
    let mut model = HyperT5::new(vs.root(), &settings.t5, &settings.hyper);
    model
        .t5
        .set_compute_kind(settings.train.compute_dtype.kind());
    if !settings.run.initial_checkpoint.is_empty() {
        // A Hugging Face T5 with a fresh hypernetwork: missing `hyper.*` is expected.
        let report =
            hint_model::load_weights(&vs, Path::new(&settings.run.initial_checkpoint), true)?;
        let foreign: Vec<&String> = report
            .missing
            .iter()
            .filter(|n| !n.starts_with("hyper."))
            .collect();
        if !foreign.is_empty() {
            return Err(TrainError::Checkpoint {
                path: settings.run.initial_checkpoint.clone().into(),
                message: format!(
                    "lacks T5 parameters: {}",
                    foreign
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    Ok((vs, model))
}

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
    pub results: Vec<(String, Vec<TaskResult>)>,
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
pub fn train_and_evaluate(config: &Config, hooks: &mut dyn TrainHooks) -> Result<RunSummary> {
    let settings = RunSettings::from_config(config)?;
    if settings.run.model_dir.is_empty() {
        return Err(TrainError::Data(
            "no model directory: bind `Run.model_dir` (e.g. --gin.MODEL_DIR=\\\"/tmp/run\\\")"
                .into(),
        ));
    }
    let device = select_device(&settings.run.device)
        .ok_or_else(|| TrainError::Data(format!("unknown device `{}`", settings.run.device)))?;
    let model_dir = ModelDir::prepare(&settings.run.model_dir)?;
    let tokenizer_path = model_dir.path().join("tokenizer.json");
    let data = build_data(
        &settings.data,
        settings.run.lengths,
        model_dir.resumed().then_some(tokenizer_path.as_path()),
    )?;
    check_vocabulary(&data, &settings.t5)?;
    let (vs, model) = build_model(&settings, device)?;
    tracing::info!(
        hypernetwork_parameters = model.hypernetwork_parameter_count(),
        model_dir = %model_dir.path().display(),
        "model built"
    );
    let mut optimizer = Adafactor::from_var_store(
        &vs,
        ParamGroup::dual(
            settings.hyper_optimizer.clone(),
            settings.t5_optimizer.clone(),
        ),
    )?;
    let mut source = IteratorSource::new(
        &data.registry,
        &settings.run,
        settings.train.seed as u64,
        device,
    )?;
    // Every evaluation set is read before the first step (not after the last one), once
    // for the periodic and the final evaluations.
    let sets = read_eval_sets(&data, &settings.run)?;
    // Only now, with everything checked, does the run write into its directory (each file
    // under a temporary name, then renamed).
    let tokenizer_tmp = model_dir.path().join("tokenizer.json.tmp");
    data.vocabulary
        .save(&tokenizer_tmp)
        .map_err(|e| TrainError::Data(e.to_string()))?;
    std::fs::rename(&tokenizer_tmp, &tokenizer_path).map_err(io_error(&tokenizer_path))?;
    write_atomically(&model_dir.config_path(), config.config_str().as_bytes())?;
    let started = Instant::now();
    let outcome = {
        let mut trainer = Trainer::new(
            &model,
            &vs,
            &mut optimizer,
            settings.train.clone(),
            model_dir.clone(),
        );
        let mut hooks = PeriodicEval {
            inner: hooks,
            data: &data,
            settings: &settings,
            device,
            sets: &sets,
        };
        trainer.train(&mut source, &mut hooks)?
    };
    let train_seconds = started.elapsed().as_secs_f64();
    write_atomically(
        &model_dir.path().join("operative_config.gin"),
        config.operative_config_str().as_bytes(),
    )?;
    let mut results = Vec::new();
    if matches!(outcome, TrainOutcome::Finished { .. }) {
        results = tch::no_grad(|| score_sets(&model, &sets, &data, &settings, device))?;
    }
    let markdown = write_results(model_dir.path(), &results)?;
    let plots = crate::plot::plot_run(model_dir.path())?;
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
    device: Device,
    sets: &'a EvalSets,
}

impl TrainHooks for PeriodicEval<'_> {
    fn on_step(&mut self, metrics: &crate::StepMetrics) {
        self.inner.on_step(metrics);
    }

    fn should_stop(&self) -> bool {
        self.inner.should_stop()
    }

    fn evaluate(&mut self, step: u64, model: &HyperT5) -> Result<BTreeMap<String, f64>> {
        let mut scores = self.inner.evaluate(step, model)?;
        for (label, results) in score_sets(model, self.sets, self.data, self.settings, self.device)?
        {
            for (metric, value) in crate::eval::average(&results) {
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

/// Writes `path` through a temporary file and a rename, so that a crash never leaves it
/// half-written.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error(path))
}

/// Tokenized evaluation sets: `(label, tasks)`.
pub type EvalSets = Vec<(String, Vec<EvalTask>)>;

/// Reads every evaluation set of the run (an unknown task or split is an error naming the
/// set).
pub fn read_eval_sets(data: &RunData, run: &RunConfig) -> Result<EvalSets> {
    run.eval_sets
        .iter()
        .map(|(label, name, split)| {
            let tasks = eval_tasks(data, name, split, run)
                .map_err(|e| TrainError::Data(format!("evaluation set `{label}`: {e}")))?;
            Ok((label.clone(), tasks))
        })
        .collect()
}

/// Scores read evaluation sets.
fn score_sets(
    model: &HyperT5,
    sets: &EvalSets,
    data: &RunData,
    settings: &RunSettings,
    device: Device,
) -> Result<Vec<(String, Vec<TaskResult>)>> {
    let vocabulary = Arc::clone(&data.vocabulary);
    let decode = move |ids: &[i64]| {
        let ids: Vec<u32> = ids.iter().filter_map(|&t| u32::try_from(t).ok()).collect();
        vocabulary.decode(&ids).unwrap_or_default()
    };
    sets.iter()
        .map(|(label, tasks)| {
            Ok((
                label.clone(),
                evaluate(model, tasks, &decode, &settings.eval, device)?,
            ))
        })
        .collect()
}

/// Evaluates the run's evaluation sets.
pub fn evaluate_sets(
    model: &HyperT5,
    data: &RunData,
    settings: &RunSettings,
    device: Device,
) -> Result<Vec<(String, Vec<TaskResult>)>> {
    let sets = read_eval_sets(data, &settings.run)?;
    tch::no_grad(|| score_sets(model, &sets, data, settings, device))
}

/// Writes `eval_results.json` and `eval_results.md`; returns the Markdown.
pub fn write_results(model_dir: &Path, results: &[(String, Vec<TaskResult>)]) -> Result<String> {
    let mut markdown = String::new();
    let mut json = serde_json::Map::new();
    for (label, tasks) in results {
        markdown.push_str(&markdown_table(label, tasks));
        markdown.push('\n');
        json.insert(
            label.clone(),
            serde_json::to_value(tasks).unwrap_or_default(),
        );
    }
    write_atomically(
        &model_dir.join("eval_results.json"),
        serde_json::to_string_pretty(&json)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    write_atomically(&model_dir.join("eval_results.md"), markdown.as_bytes())?;
    Ok(markdown)
}

/// A trained model loaded back from its model directory: the configuration the run
/// wrote (`config.gin`), its tokenizer and a checkpoint's parameters.
pub struct LoadedRun {
    /// The run's settings.
    pub settings: RunSettings,
    /// Tasks and vocabulary.
    pub data: RunData,
    /// Parameters.
    pub vs: VarStore,
    /// The model.
    pub model: HyperT5,
    /// Where it runs.
    pub device: Device,
    /// The checkpoint that was loaded.
    pub checkpoint: PathBuf,
}

/// What [`load_run`] parses after the run's own `config.gin`: gin files (e.g.
/// `ni_eval.gin`), their search paths, then bindings.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Gin files, in order.
    pub files: Vec<PathBuf>,
    /// Where they and their includes are looked up.
    pub search_paths: Vec<PathBuf>,
    /// Bindings, applied last.
    pub bindings: Vec<String>,
}

/// Loads `checkpoint` (or the newest checkpoint of `model_dir`) with the run's own
/// configuration; `overrides` change it (e.g. other evaluation sets).
pub fn load_run(
    model_dir: &Path,
    checkpoint: Option<&Path>,
    overrides: &Overrides,
) -> Result<LoadedRun> {
    let config_path = model_dir.join("config.gin");
    if !config_path.is_file() {
        return Err(TrainError::Checkpoint {
            path: model_dir.to_path_buf(),
            message: "no config.gin: not the model directory of a `hint train` run".into(),
        });
    }
    let mut files = vec![config_path];
    files.extend(overrides.files.iter().cloned());
    let config = load_config(&files, &overrides.bindings, &overrides.search_paths, false)?;
    let mut settings = RunSettings::from_config(&config)?;
    // The checkpoint supersedes the initial one the run started from.
    settings.run.initial_checkpoint.clear();
    let device = select_device(&settings.run.device)
        .ok_or_else(|| TrainError::Data(format!("unknown device `{}`", settings.run.device)))?;
    let checkpoint = match checkpoint {
        Some(path) => path.to_path_buf(),
        None => {
            crate::checkpoint::CheckpointManager::new(model_dir, 1)
                .latest()?
                .ok_or_else(|| TrainError::Checkpoint {
                    path: model_dir.to_path_buf(),
                    message: "holds no complete checkpoint".into(),
                })?
                .path
        }
    };
    let data = build_data(
        &settings.data,
        settings.run.lengths,
        Some(&model_dir.join("tokenizer.json")),
    )?;
    let (vs, model) = build_model(&settings, device)?;
    crate::trainer::load_parameters(&vs, &checkpoint.join("model.safetensors"))?;
    Ok(LoadedRun {
        settings,
        data,
        vs,
        model,
        device,
        checkpoint,
    })
}

impl LoadedRun {
    /// Evaluates the run's evaluation sets.
    pub fn evaluate(&self) -> Result<Vec<(String, Vec<TaskResult>)>> {
        evaluate_sets(&self.model, &self.data, &self.settings, self.device)
    }

    /// Generates an answer for every input of one instruction, adapting to the instruction
    /// once (in concatenation mode the instruction is prepended to each input instead).
    pub fn infer(&self, instruction: &str, inputs: &[String]) -> Result<Vec<String>> {
        let vocab = &self.data.vocabulary;
        let encode = |text: &str| -> Result<Vec<i64>> {
            vocab
                .encode(text)
                .map(|ids| ids.into_iter().map(i64::from).collect())
                .map_err(|e| TrainError::Data(e.to_string()))
        };
        let (li, lh, _) = self.settings.run.lengths;
        let mut hyper = encode(instruction)?;
        hyper.truncate(lh);
        let mut examples = Vec::new();
        for input in inputs {
            let mut ids = encode(input)?;
            ids.truncate(li);
            let ids = match self.settings.run.instruction_mode {
                InstructionMode::Hyper => ids,
                InstructionMode::Concat => concatenate(&hyper, &ids),
            };
            examples.push(EvalExample {
                input: ids,
                references: vec![String::new()],
                choices: None,
            });
        }
        let task = EvalTask {
            name: "infer".into(),
            instruction: match self.settings.run.instruction_mode {
                InstructionMode::Hyper => hyper,
                InstructionMode::Concat => Vec::new(),
            },
            examples,
        };
        let decode = |ids: &[i64]| {
            let ids: Vec<u32> = ids.iter().filter_map(|&t| u32::try_from(t).ok()).collect();
            vocab.decode(&ids).unwrap_or_default()
        };
        let results = tch::no_grad(|| {
            evaluate(
                &self.model,
                &[task],
                &decode,
                &self.settings.eval,
                self.device,
            )
        })?;
        Ok(results
            .into_iter()
            .next()
            .map(|r| r.predictions)
            .unwrap_or_default())
    }
}
