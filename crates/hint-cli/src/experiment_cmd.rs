//! `hint experiment run`: every arm of a suite, trained and evaluated alike, one table.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use hint_train::experiment::{
    experiment_config, run_experiment, ExperimentEvent, ExperimentOptions,
};
use hint_train::report::markdown;
use hint_train::RunSettings;

use crate::gin_args::GinArgs;
use crate::train_cmd::CliHooks;

/// Arguments of `hint experiment run`.
#[derive(Debug, Args)]
pub struct ExperimentArgs {
    /// The suite file (e.g. configs/experiments/list_functions.gin), its search paths and
    /// overrides.
    #[command(flatten)]
    pub gin: GinArgs,
    /// Only these arms, comma-separated (default: the suite's `Experiment.arms`).
    #[arg(long, value_delimiter = ',')]
    pub arms: Option<Vec<String>>,
    /// Seeds per arm (default: the suite's `Experiment.seeds`).
    #[arg(long)]
    pub seeds: Option<usize>,
}

/// `hint experiment run`.
pub fn run(args: &ExperimentArgs) -> Result<ExitCode> {
    let [suite] = args.gin.gin_files.as_slice() else {
        anyhow::bail!("give exactly one --gin_file: the experiment suite");
    };
    let options = ExperimentOptions {
        suite: suite.clone(),
        search_paths: args.gin.gin_search_paths.clone(),
        bindings: args.gin.gin_bindings.clone(),
        arms: args.arms.clone(),
        seeds: args.seeds,
    };
    let experiment = experiment_config(&options).context("reading the experiment suite")?;
    let steps = {
        RunSettings::load(
            std::slice::from_ref(suite),
            &options.bindings,
            &options.effective_search_paths(),
            false,
        )
        .map_or(0, |s| s.train.steps)
    };
    let mut hooks = CliHooks::new(steps)?;
    let total = experiment.arms.len() * experiment.seeds;
    let mut done = 0;
    let report = run_experiment(
        &options,
        &mut hooks,
        &mut |event| match event {
            ExperimentEvent::Start {
                arm,
                seed,
                model_dir,
            } => tracing::info!(
                "[{}/{total}] arm {arm}, seed {seed}: {}",
                done + 1,
                model_dir.display()
            ),
            ExperimentEvent::Done(run) => {
                done += 1;
                tracing::info!(
                    arm = run.arm,
                    seed = run.seed,
                    scores = ?run.scores,
                    train_seconds = format!("{:.0}", run.train_seconds),
                    "arm done"
                );
            }
        },
        &hint_train::plot::plot_experiment,
    )?;
    hooks.finish();
    let mut out = std::io::stdout().lock();
    match report {
        None => {
            writeln!(
                out,
                "interrupted; run the same command to resume ({})",
                experiment.output_dir
            )?;
            Ok(ExitCode::from(130))
        }
        Some(report) => {
            writeln!(out, "{}", markdown(&report))?;
            writeln!(out, "results: {}/results.md", experiment.output_dir)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
