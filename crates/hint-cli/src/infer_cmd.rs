//! `hint eval` and `hint infer` on a trained model directory.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use hint_train::eval::write_results;
use hint_train::{load_run, Overrides, TrainError};

use crate::gin_args::GinArgs;
use crate::progress::{bar_wanted, EvalDisplay, StopFlag};

/// Arguments of `hint eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The model directory of a `hint train` run.
    #[arg(long = "model_dir")]
    pub model_dir: PathBuf,
    /// A checkpoint folder (default: the newest in the model directory).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Where to write `eval_results.json` and `.md` (default: the checkpoint folder's
    /// name under the model directory, `eval_<checkpoint>`).
    #[arg(long = "output_dir", alias = "output-dir")]
    pub output_dir: Option<PathBuf>,
    /// Gin files parsed after the run's own `config.gin` (e.g. `configs/ni_eval.gin`) and
    /// bindings after them, e.g. `--gin.Run.eval_examples_per_task=10`.
    #[command(flatten)]
    pub gin: GinArgs,
}

/// Arguments of `hint infer`.
#[derive(Debug, Args)]
pub struct InferArgs {
    /// A checkpoint folder of a `hint train` run (its parent is the model directory).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The task's instruction (encoded once for all inputs).
    #[arg(long)]
    pub instruction: String,
    /// One input.
    #[arg(long, conflicts_with = "inputs", required_unless_present = "inputs")]
    pub input: Option<String>,
    /// A JSON Lines file of `{"input": "…"}` objects.
    #[arg(long)]
    pub inputs: Option<PathBuf>,
}

/// `hint eval`.
pub fn eval(args: &EvalArgs) -> Result<ExitCode> {
    let overrides = Overrides {
        files: args.gin.gin_files.clone(),
        search_paths: args.gin.gin_search_paths.clone(),
        bindings: args.gin.gin_bindings.clone(),
    };
    let run = load_run(&args.model_dir, args.checkpoint.as_deref(), &overrides)
        .with_context(|| format!("loading the run in {}", args.model_dir.display()))?;
    let mut display = EvalDisplay::new(StopFlag::install()?, bar_wanted());
    let evaluated = run.evaluate(&mut display);
    display.finish();
    let results = match evaluated {
        Err(TrainError::Interrupted { task }) => {
            tracing::warn!("interrupted while evaluating `{task}`; no results were written");
            return Ok(ExitCode::from(130));
        }
        other => other.context("evaluating")?,
    };
    let name = run.checkpoint.file_name().map_or_else(
        || "checkpoint".to_string(),
        |n| n.to_string_lossy().to_string(),
    );
    let output = args
        .output_dir
        .clone()
        .unwrap_or_else(|| args.model_dir.join(format!("eval_{name}")));
    std::fs::create_dir_all(&output).with_context(|| format!("creating {}", output.display()))?;
    let markdown = write_results(&output, &results)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{markdown}")?;
    writeln!(out, "results: {}", output.display())?;
    Ok(ExitCode::SUCCESS)
}

/// `hint infer`: JSON Lines out, one `{"input", "prediction"}` per input.
pub fn infer(args: &InferArgs) -> Result<ExitCode> {
    let Some(model_dir) = args.checkpoint.parent() else {
        bail!(
            "{} has no parent model directory",
            args.checkpoint.display()
        );
    };
    let inputs: Vec<String> = match (&args.input, &args.inputs) {
        (Some(input), _) => vec![input.clone()],
        (None, Some(path)) => {
            let file =
                std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            let mut inputs = Vec::new();
            for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
                let line = line.with_context(|| format!("reading {}", path.display()))?;
                if line.trim().is_empty() {
                    continue;
                }
                let value: serde_json::Value = serde_json::from_str(&line)
                    .with_context(|| format!("{}:{}: not JSON", path.display(), number + 1))?;
                let Some(input) = value.get("input").and_then(|v| v.as_str()) else {
                    bail!(
                        "{}:{}: field `input` (a string) is missing",
                        path.display(),
                        number + 1
                    );
                };
                inputs.push(input.to_string());
            }
            inputs
        }
        (None, None) => bail!("give --input TEXT or --inputs FILE.jsonl"),
    };
    let run = load_run(model_dir, Some(&args.checkpoint), &Overrides::default())
        .with_context(|| format!("loading {}", args.checkpoint.display()))?;
    let mut display = EvalDisplay::new(StopFlag::install()?, bar_wanted());
    let inferred = run.infer(&args.instruction, &inputs, &mut display);
    display.finish();
    let predictions = match inferred {
        Err(TrainError::Interrupted { .. }) => {
            tracing::warn!("interrupted; nothing was written");
            return Ok(ExitCode::from(130));
        }
        other => other?,
    };
    let mut out = std::io::stdout().lock();
    for (input, prediction) in inputs.iter().zip(predictions) {
        writeln!(
            out,
            "{}",
            serde_json::json!({"input": input, "prediction": prediction})
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
