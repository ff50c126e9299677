//! `hint train` and `hint plot`: a run from gin files (or the embedded default), with a
//! progress bar on a terminal, periodic log lines elsewhere, and SIGINT/SIGTERM saving a
//! checkpoint before exiting.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use hint_train::{
    train_and_evaluate, CheckpointInfo, RunSettings, StepMetrics, TrainHooks, TrainOutcome,
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::gin_args::GinArgs;

/// The embedded default run (`configs/builtin.gin`), used when no `--gin_file` is given.
pub const BUILTIN_GIN: &str = include_str!("../../../configs/builtin.gin");

/// Progress, interruption and logging for a run.
pub struct CliHooks {
    stop: Arc<AtomicBool>,
    bar: Option<ProgressBar>,
    total: u64,
    log_every: u64,
}

impl CliHooks {
    /// Hooks for runs of `total` steps: a progress bar when `bar`, log lines otherwise;
    /// SIGINT/SIGTERM ask the loop to checkpoint and stop.
    pub fn new(total: u64, bar: bool) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, Arc::clone(&stop))
                .context("installing the signal handler")?;
        }
        let bar = bar.then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] {pos}/{len} steps, {per_sec}, ETA {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        Ok(Self {
            stop,
            bar,
            total,
            log_every: (total / 20).max(1),
        })
    }

    /// Clears the progress bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl TrainHooks for CliHooks {
    fn on_step(&mut self, m: &StepMetrics) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(m.step);
                bar.set_message(format!("loss/token {:.3}", m.loss_per_token));
            }
            None if m.step % self.log_every == 0 || m.step == self.total => tracing::info!(
                step = m.step,
                loss_per_token = format!("{:.4}", m.loss_per_token),
                grad_norm = format!("{:.3}", m.grad_norm),
                examples_per_second = format!("{:.1}", m.examples_per_second),
                "train"
            ),
            None => {}
        }
    }

    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn on_checkpoint(&mut self, checkpoint: &CheckpointInfo) {
        tracing::debug!(step = checkpoint.step, path = %checkpoint.path.display(), "checkpoint");
    }
}

/// Parses the run's gin: the given files, or the embedded default.
fn settings_of(args: &GinArgs) -> Result<RunSettings> {
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

/// `hint train`.
pub fn train(args: &GinArgs) -> Result<ExitCode> {
    let settings = settings_of(args)?;
    let mut hooks = CliHooks::new(settings.train.steps, std::io::stderr().is_terminal())?;
    let summary = train_and_evaluate(&settings, &mut hooks)
        .with_context(|| format!("training in {}", settings.run.model_dir))?;
    hooks.finish();
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
