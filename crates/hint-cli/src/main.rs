//! `hint`: the command-line face of the HINT crates, with t5x's gin conventions.

mod config_cmd;
mod experiment_cmd;
mod export_cmd;
mod gin_args;
mod infer_cmd;
mod launch_cmd;
mod plan_cmd;
mod progress;
mod serve_cmd;
mod tasks_cmd;
mod train_cmd;

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use gin_args::GinArgs;

/// HINT (Hypernetwork Instruction Tuning) on T5: train, evaluate and serve models whose
/// task adaptation is generated from the task's instruction.
#[derive(Debug, Parser)]
#[command(name = "hint", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the versions of hint and libtorch, and the CUDA devices libtorch sees.
    Version,
    /// Train a model from gin files (t5x `train`).
    Train(GinArgs),
    /// Start N local ranks of a hint command (`hint launch --nproc_per_node 2 train …`),
    /// as torchrun would, without Python.
    Launch(launch_cmd::LaunchArgs),
    /// Predict what a run's training step holds in memory (parameters, gradients,
    /// optimizer state, activations) and the largest batch that fits a device.
    Plan(plan_cmd::PlanArgs),
    /// Serve a trained run over HTTP: adapt to each instruction once, batch instances.
    Serve(serve_cmd::ServeArgs),
    /// Export the LoRA generated for an instruction as a Hugging Face PEFT adapter.
    Export(export_cmd::ExportArgs),
    /// Evaluate a checkpoint on the run's evaluation sets (t5x `eval`).
    Eval(infer_cmd::EvalArgs),
    /// Run inference for one instruction over many inputs, encoding the instruction once.
    Infer(infer_cmd::InferArgs),
    /// Inspect configurations.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// List and show registered tasks and mixtures.
    #[command(subcommand)]
    Tasks(tasks_cmd::TasksCommand),
    /// Tokenize tasks and write them as a Parquet cache (seqio_cache_tasks).
    CacheTasks(tasks_cmd::CacheTasksArgs),
    /// Draw loss and metric curves of a model directory, or an experiment's
    /// score-versus-FLOPs charts, as PNG.
    Plot {
        /// The model directory of a run, or the output folder of an experiment.
        model_dir: std::path::PathBuf,
    },
    /// Train and compare HINT against its baselines.
    #[command(subcommand)]
    Experiment(ExperimentCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the resolved bindings of gin files and overrides.
    Show {
        #[command(flatten)]
        gin: GinArgs,
        /// Output format: gin text, or JSON with one object per binding.
        #[arg(long, value_enum, default_value_t = config_cmd::ShowFormat::Gin)]
        format: config_cmd::ShowFormat,
    },
}

#[derive(Debug, Subcommand)]
enum ExperimentCommand {
    /// Train every arm of an experiment suite and write the results table.
    Run(experiment_cmd::ExperimentArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log redirected to a file stays plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Before any tensor exists: freed activations are then reused, not faulted in anew.
    if !hint_model::retain_freed_memory() {
        tracing::debug!("the C allocator keeps its defaults");
    }
    let args = match gin_args::rewrite_gin_flags(std::env::args()) {
        Ok(args) => args,
        Err(err) => {
            tracing::error!("{err}");
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(args);
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            tracing::error!("{}", error_chain(&err));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Version => {
            print_version().context("writing to stdout")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Train(args) => train_cmd::train(&args),
        Command::Launch(args) => launch_cmd::launch(&args),
        Command::Plan(args) => plan_cmd::run(&args),
        Command::Serve(args) => serve_cmd::serve(&args),
        Command::Export(args) => export_cmd::export(&args),
        Command::Eval(args) => infer_cmd::eval(&args),
        Command::Infer(args) => infer_cmd::infer(&args),
        Command::Config(ConfigCommand::Show { gin, format }) => config_cmd::show(&gin, format),
        Command::Tasks(command) => tasks_cmd::run_tasks(command),
        Command::CacheTasks(args) => tasks_cmd::run_cache_tasks(args),
        Command::Plot { model_dir } => train_cmd::plot(&model_dir),
        Command::Experiment(ExperimentCommand::Run(args)) => experiment_cmd::run(&args),
    }
}

/// The error with its causes, one a line, outermost first: what was being done, then
/// why (a gin file's `file:line:col`, a data file's line and field, a tensor's name). A
/// cause whose text its parent already shows is not repeated.
fn error_chain(err: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut shown = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if shown.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\n  caused by: ");
        }
        out.push_str(&text);
        shown = text;
    }
    out
}

fn print_version() -> std::io::Result<()> {
    let info = hint_model::RuntimeInfo::detect();
    let mut out = std::io::stdout().lock();
    writeln!(out, "hint {}", env!("CARGO_PKG_VERSION"))?;
    writeln!(out, "libtorch {}", info.libtorch_version)?;
    writeln!(
        out,
        "cuda {} ({} device{})",
        if info.cuda_available {
            "available"
        } else {
            "not available"
        },
        info.cuda_device_count,
        if info.cuda_device_count == 1 { "" } else { "s" }
    )?;
    writeln!(out, "cpu threads {}", info.cpu_threads)
}
