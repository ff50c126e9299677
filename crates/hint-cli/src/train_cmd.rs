//! `hint train` and `hint plot`: a run from gin files (or the embedded default), with a
//! progress bar on a terminal, periodic log lines elsewhere, and SIGINT/SIGTERM saving a
//! checkpoint before exiting (also from the middle of an evaluation).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hint_dist::{ProcessGroup, Rendezvous};
use hint_train::eval::{EvalMonitor, EvalProgress};
use hint_train::{
    gigabytes, train_and_evaluate_in, CheckpointInfo, RunSettings, StepMetrics, TrainHooks,
    TrainOutcome,
};
use indicatif::ProgressBar;

use crate::gin_args::GinArgs;
use crate::progress::{bar, bar_wanted, eta, EvalDisplay, StopFlag};

/// The embedded default run (`configs/builtin.gin`), used when no `--gin_file` is given.
pub const BUILTIN_GIN: &str = include_str!("../../../configs/builtin.gin");

/// Progress, interruption and logging for a run.
pub struct CliHooks {
    stop: StopFlag,
    bar: Option<ProgressBar>,
    eval: EvalDisplay,
    total: u64,
    log_every: u64,
    /// The first step this process trained, and when: the ETA counts only those.
    started: Option<(u64, Instant)>,
    /// Shows nothing ([`CliHooks::silence`]).
    quiet: bool,
}

impl CliHooks {
    /// Hooks for runs of `total` steps: a progress bar on a terminal (see
    /// [`bar_wanted`]), log lines otherwise; SIGINT/SIGTERM ask the loop to checkpoint and
    /// stop, and evaluation to stop.
    pub fn new(total: u64) -> Result<Self> {
        let stop = StopFlag::install()?;
        let use_bar = bar_wanted();
        Ok(Self {
            eval: EvalDisplay::new(stop.clone(), use_bar),
            stop,
            bar: use_bar.then(|| bar(total, "steps")),
            total,
            log_every: (total / 20).max(1),
            started: None,
            quiet: false,
        })
    }

    /// Shows nothing (the other ranks of a data-parallel run); still stops on a signal.
    pub fn silence(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.quiet = true;
    }

    /// Clears the progress bars.
    pub fn finish(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        self.eval.finish();
    }
}

impl TrainHooks for CliHooks {
    fn on_step(&mut self, m: &StepMetrics) {
        if self.quiet {
            return;
        }
        let (first, started) = *self.started.get_or_insert((m.step, Instant::now()));
        match &self.bar {
            Some(bar) => {
                bar.set_position(m.step);
                bar.set_message(format!(
                    "loss/token {:.3}, peak {}",
                    m.loss_per_token,
                    gigabytes(m.peak_memory_bytes)
                ));
            }
            None if m.step % self.log_every == 0 || m.step == self.total => tracing::info!(
                step = m.step,
                loss_per_token = format!("{:.4}", m.loss_per_token),
                grad_norm = format!("{:.3}", m.grad_norm),
                examples_per_second = format!("{:.1}", m.examples_per_second),
                peak_memory = gigabytes(m.peak_memory_bytes),
                eta = eta(started, m.step - first, self.total.saturating_sub(first)),
                "train"
            ),
            None => {}
        }
    }

    fn on_checkpoint(&mut self, checkpoint: &CheckpointInfo) {
        tracing::debug!(step = checkpoint.step, path = %checkpoint.path.display(), "checkpoint");
    }
}

impl EvalMonitor for CliHooks {
    fn on_eval_progress(&mut self, progress: &EvalProgress<'_>) {
        if !self.quiet {
            self.eval.on_eval_progress(progress);
        }
    }

    fn should_stop(&self) -> bool {
        self.stop.is_set()
    }
}

/// Parses the run's gin: the given files, or the embedded default.
pub(crate) fn settings_of(args: &GinArgs) -> Result<RunSettings> {
    if args.gin_files.is_empty() {
        let tmp = std::env::temp_dir().join(format!("hint-builtin-{}.gin", std::process::id()));
        std::fs::write(&tmp, BUILTIN_GIN).with_context(|| format!("writing {}", tmp.display()))?;
        let settings = RunSettings::load(
            std::slice::from_ref(&tmp),
            &args.gin_bindings,
            &args.gin_search_paths,
            args.skip_unknown,
        );
        let _ = std::fs::remove_file(&tmp);
        return settings.context("the embedded default configuration");
    }
    RunSettings::load(
        &args.gin_files,
        &args.gin_bindings,
        &args.gin_search_paths,
        args.skip_unknown,
    )
    .context("reading the gin configuration")
}

/// `hint train`, alone or as one rank of a data-parallel run (torchrun's variables, or
/// `hint launch`).
pub fn train(args: &GinArgs) -> Result<ExitCode> {
    // Before any tensor exists, so that the CPU tensors' bytes are counted whole.
    hint_model::count_cpu_tensors();
    let mut settings = settings_of(args)?;
    let timeout = Duration::from_secs(settings.run.dist_timeout_seconds.max(1));
    let rendezvous = Rendezvous::from_env(timeout).context("reading torchrun's variables")?;
    if let (Some(rendezvous), tch::Device::Cuda(_)) = (&rendezvous, settings.device) {
        // torchrun's contract: each rank of a machine takes the GPU of its LOCAL_RANK.
        settings.device = hint_model::open_device(&format!("cuda:{}", rendezvous.local_rank))
            .with_context(|| {
                format!(
                    "rank {} (LOCAL_RANK {}) needs a GPU of its own",
                    rendezvous.rank, rendezvous.local_rank
                )
            })?;
    }
    let group = match &rendezvous {
        Some(rendezvous) => ProcessGroup::join(rendezvous, settings.device),
        None => Ok(ProcessGroup::single()),
    }
    .context("joining the data-parallel group")?;
    let mut hooks = CliHooks::new(settings.train.steps)?;
    if !group.is_main() {
        // One progress display per run: rank 0's.
        hooks.silence();
    }
    let summary = train_and_evaluate_in(&settings, &mut hooks, &group).with_context(|| {
        format!(
            "training in {} (rank {} of {})",
            settings.run.model_dir,
            group.rank(),
            group.world_size()
        )
    })?;
    hooks.finish();
    if !group.is_main() {
        return Ok(match summary.outcome {
            TrainOutcome::Interrupted { .. } => ExitCode::from(130),
            TrainOutcome::Finished { .. } => ExitCode::SUCCESS,
        });
    }
    let mut out = std::io::stdout().lock();
    match summary.outcome {
        TrainOutcome::Interrupted { step } => {
            writeln!(
                out,
                "interrupted at step {step}; checkpoint saved in {} (run the same command to resume)",
                summary.model_dir.display()
            )?;
            return Ok(ExitCode::from(130));
        }
        TrainOutcome::Finished { step } => {
            writeln!(
                out,
                "trained {step} steps in {:.0} s\n",
                summary.train_seconds
            )?;
        }
    }
    writeln!(out, "{}", summary.markdown)?;
    for plot in &summary.plots {
        writeln!(out, "plot: {}", plot.display())?;
    }
    writeln!(out, "model directory: {}", summary.model_dir.display())?;
    Ok(ExitCode::SUCCESS)
}

/// `hint plot DIR`: a run's curves, or an experiment's score-versus-FLOPs charts when
/// `DIR` holds an experiment's `results.json`.
pub fn plot(model_dir: &Path) -> Result<ExitCode> {
    let written = if model_dir.join("results.json").is_file() {
        let report = hint_train::report::read_report(model_dir)?;
        hint_train::plot::plot_experiment(model_dir, &report)
    } else {
        hint_train::plot::plot_run(model_dir)
    }
    .with_context(|| format!("plotting {}", model_dir.display()))?;
    let mut out = std::io::stdout().lock();
    for path in written {
        writeln!(out, "{}", path.display())?;
    }
    Ok(ExitCode::SUCCESS)
}
