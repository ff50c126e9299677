//! `hint export`: a trained run in Hugging Face formats.
//!
//! `--peft`: the LoRA a trained HINT generates for one instruction, as a PEFT adapter with
//! the base T5 beside it, and the logits HINT computes for a check input, so that
//! `PeftModel.from_pretrained` can be checked against them
//! (`crates/hint-model/scripts/peft_check.py`).
//!
//! `--hf`: the run's T5 as a Hugging Face T5 directory (`config.json`,
//! `model.safetensors`, `tokenizer.json`), which `transformers` loads and `hint serve`
//! serves as the concatenation baseline. For a concatenation run that is the whole model.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use hint_data::InstructionMode;
use hint_fs::WorkingDir;
use hint_train::eval::pad_rows;
use hint_train::{load_run, LoadedRun, Overrides};
use tch::{Device, Kind, Tensor};

use crate::gin_args::GinArgs;

/// Arguments of `hint export`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("format").required(true).args(["peft", "hf"])))]
pub struct ExportArgs {
    /// Export the LoRA generated for `--instruction` as a Hugging Face PEFT adapter, with
    /// the base T5 beside it.
    #[arg(long)]
    peft: bool,
    /// Export the run's T5 (without its hypernetwork) as a Hugging Face T5 directory.
    #[arg(long)]
    hf: bool,
    /// The model directory of a `hint train` run.
    #[arg(long = "model_dir")]
    model_dir: PathBuf,
    /// A checkpoint folder (default: the newest).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// The task's instruction (`--peft`).
    #[arg(long, required_if_eq("peft", "true"))]
    instruction: Option<String>,
    /// Where to write: with `--peft`, `base/` (the T5, Hugging Face layout), `adapter/`
    /// (PEFT) and `check.safetensors`; with `--hf`, the T5 directory itself. Refused if it
    /// exists.
    #[arg(long)]
    output: PathBuf,
    /// An input whose logits under the task go into `check.safetensors`.
    #[arg(long = "check_input", default_value = "1 2 3")]
    check_input: String,
    /// Gin files and bindings after the run's `config.gin`.
    #[command(flatten)]
    gin: GinArgs,
}

/// `hint export`.
pub fn export(args: &ExportArgs) -> Result<ExitCode> {
    if args.output.exists() {
        bail!(
            "{} exists: give a new folder (nothing was written)",
            args.output.display()
        );
    }
    let mut bindings = args.gin.gin_bindings.clone();
    bindings.push("hint.train.Run.device = \"cpu\"".into());
    let overrides = Overrides {
        files: args.gin.gin_files.clone(),
        search_paths: args.gin.gin_search_paths.clone(),
        bindings,
    };
    let run = load_run(&args.model_dir, args.checkpoint.as_deref(), &overrides)
        .with_context(|| format!("loading {}", args.model_dir.display()))?;
    match &args.instruction {
        Some(instruction) if args.peft => export_peft(&run, instruction, args),
        _ => export_hf(&run, args),
    }
}

/// `hint export --hf`: the T5 and the tokenizer, as `transformers` reads them.
fn export_hf(run: &LoadedRun, args: &ExportArgs) -> Result<ExitCode> {
    write_whole(&args.output, |tmp| {
        write_t5(run, tmp)?;
        Ok(())
    })?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "T5: {}", args.output.display())?;
    if run.settings.run.instruction_mode == InstructionMode::Hyper {
        writeln!(
            out,
            "note: this is the run's T5 without its hypernetwork; alone it does not follow instructions as the HINT model does"
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The run's T5 and tokenizer as a Hugging Face directory.
fn write_t5(run: &LoadedRun, dir: &Path) -> Result<()> {
    hint_model::save_base_t5(&run.vs, &run.model, dir)?;
    std::fs::copy(&run.tokenizer, dir.join("tokenizer.json"))
        .with_context(|| format!("copying {}", run.tokenizer.display()))?;
    Ok(())
}

/// Writes a folder under a temporary name beside `output` (hint-fs's [`WorkingDir`]),
/// renamed to it when whole and removed if anything fails, so an export is all there or
/// not there.
fn write_whole(output: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let name = output
        .file_name()
        .map_or_else(|| "export".into(), |n| n.to_string_lossy().to_string());
    let written = (|| -> Result<()> {
        let work = WorkingDir::create(parent, &name)?;
        write(work.path())?;
        work.persist(output)?;
        Ok(())
    })();
    written.with_context(|| format!("writing {}", output.display()))
}

/// `hint export --peft`.
fn export_peft(run: &LoadedRun, instruction: &str, args: &ExportArgs) -> Result<ExitCode> {
    if let Some(refusal) = hint_model::peft_refusal(&run.model.config) {
        bail!("{refusal}");
    }
    let vocabulary = &run.data.vocabulary;
    let ids = |text: &str| -> Result<Vec<i64>> {
        Ok(vocabulary
            .encode(text)?
            .into_iter()
            .map(i64::from)
            .collect())
    };
    let converter = hint_train::batches::converter(&run.settings);
    let instruction = converter.model_inputs(&[1], &ids(instruction)?).instruction;
    let input = converter
        .model_inputs(&ids(&args.check_input)?, &[1])
        .encoder;
    let adaptation = tch::no_grad(|| {
        run.model
            .adapt(&pad_rows(&[instruction.as_slice()], Device::Cpu), false)
    });
    // The adapter names its base by the final path.
    let parent = args
        .output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    write_whole(&args.output, |tmp| {
        write_t5(run, &tmp.join("base"))?;
        let name = args.output.file_name().unwrap_or_default();
        let final_base = std::fs::canonicalize(parent)?.join(name).join("base");
        hint_model::save_peft_adapter(
            &run.model,
            &adaptation,
            &final_base.display().to_string(),
            &tmp.join("adapter"),
        )?;
        let input_ids = Tensor::from_slice(&input).view([1, -1]);
        let decoder_input_ids = run.model.t5.shift_right(&input_ids);
        let logits = tch::no_grad(|| {
            run.model.forward(
                &input_ids,
                &input_ids.ones_like(),
                &decoder_input_ids,
                &adaptation,
                false,
            )
        });
        Tensor::write_safetensors(
            &[
                ("input_ids".to_string(), input_ids),
                ("decoder_input_ids".to_string(), decoder_input_ids),
                ("logits".to_string(), logits.to_kind(Kind::Float)),
            ],
            tmp.join("check.safetensors"),
        )?;
        Ok(())
    })?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "base T5:      {}", args.output.join("base").display())?;
    writeln!(
        out,
        "PEFT adapter: {}",
        args.output.join("adapter").display()
    )?;
    writeln!(
        out,
        "check:        python crates/hint-model/scripts/peft_check.py {}",
        args.output.display()
    )?;
    Ok(ExitCode::SUCCESS)
}
