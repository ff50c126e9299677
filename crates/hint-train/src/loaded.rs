//! A trained run loaded back from its model directory (t5x's `eval` / `infer`): the
//! configuration the run wrote (`config.gin`), its tokenizer and a checkpoint's parameters.

use std::path::{Path, PathBuf};

use hint_data::RunData;
use hint_model::HyperT5;
use tch::nn::VarStore;

use crate::batches::converter;
use crate::checkpoint::{CheckpointManager, PARAMETERS_FILE};
use crate::error::{Result, TrainError};
use crate::eval::{evaluate, EvalContext, EvalExample, EvalMonitor, EvalTask};
use crate::eval_sets::{decoder, read_eval_sets, score_sets, SetResults};
use crate::model::build_model;
use crate::settings::RunSettings;

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

/// A trained model with everything needed to evaluate it or run it on new inputs.
pub struct LoadedRun {
    /// The run's settings (with the overrides applied).
    pub settings: RunSettings,
    /// Tasks and vocabulary.
    pub data: RunData,
    /// Parameters.
    pub vs: VarStore,
    /// The model.
    pub model: HyperT5,
    /// The checkpoint that was loaded.
    pub checkpoint: PathBuf,
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
    let mut settings =
        RunSettings::load(&files, &overrides.bindings, &overrides.search_paths, false)?;
    // The checkpoint supersedes the initial one the run started from.
    settings.run.initial_checkpoint.clear();
    let checkpoint = match checkpoint {
        Some(path) => path.to_path_buf(),
        None => {
            CheckpointManager::new(model_dir, 1)
                .latest()?
                .ok_or_else(|| TrainError::Checkpoint {
                    path: model_dir.to_path_buf(),
                    message: "holds no complete checkpoint".into(),
                })?
                .path
        }
    };
    let data = settings.data.build(
        settings.run.lengths,
        Some(&model_dir.join("tokenizer.json")),
    )?;
    let (vs, model) = build_model(&settings)?;
    hint_model::load_parameters(&vs, checkpoint.join(PARAMETERS_FILE))?;
    Ok(LoadedRun {
        settings,
        data,
        vs,
        model,
        checkpoint,
    })
}

impl LoadedRun {
    /// Evaluates the run's evaluation sets, reporting to `monitor` (which may stop it:
    /// [`TrainError::Interrupted`]).
    pub fn evaluate(&self, monitor: &mut dyn EvalMonitor) -> Result<SetResults> {
        let sets = read_eval_sets(&self.data, &self.settings)?;
        score_sets(&self.model, &sets, &self.data, &self.settings, monitor)
    }

    /// Generates an answer for every input of one instruction, adapting to the instruction
    /// once (in concatenation mode the instruction is prepended to each input instead).
    pub fn infer(
        &self,
        instruction: &str,
        inputs: &[String],
        monitor: &mut dyn EvalMonitor,
    ) -> Result<Vec<String>> {
        let vocabulary = &self.data.vocabulary;
        let encode = |text: &str| -> Result<Vec<i64>> {
            Ok(vocabulary
                .encode(text)?
                .into_iter()
                .map(i64::from)
                .collect())
        };
        let converter = converter(&self.settings);
        let lengths = converter.lengths;
        let instruction_ids = encode(instruction)?;
        if instruction_ids.len() > lengths.hyper_inputs {
            tracing::warn!(
                "the instruction is {} tokens; the model reads its first {} (hint.train.Run.lengths: hyper_inputs)",
                instruction_ids.len(),
                lengths.hyper_inputs
            );
        }
        let mut task_instruction = Vec::new();
        let mut examples = Vec::new();
        let mut truncated = Vec::new();
        for (index, input) in inputs.iter().enumerate() {
            let ids = encode(input)?;
            if ids.len() > lengths.inputs {
                truncated.push((index, ids.len()));
            }
            let model_inputs = converter.model_inputs(&ids, &instruction_ids);
            task_instruction = model_inputs.instruction;
            examples.push(EvalExample {
                input: model_inputs.encoder,
                references: vec![String::new()],
                choices: None,
            });
        }
        if let Some(&(first, tokens)) = truncated.first() {
            tracing::warn!(
                "{} of {} inputs are longer than the {} tokens the model reads and are truncated (the first: input {}, {} tokens; hint.train.Run.lengths: inputs)",
                truncated.len(),
                inputs.len(),
                lengths.inputs,
                first + 1,
                tokens
            );
        }
        let task = EvalTask {
            name: "infer".into(),
            metrics: Vec::new(),
            instruction: task_instruction,
            examples,
        };
        let decode = decoder(vocabulary);
        let mut context = EvalContext {
            decode: &decode,
            config: &self.settings.eval,
            device: self.settings.device,
            monitor,
        };
        let results = tch::no_grad(|| evaluate(&self.model, "", &[task], &mut context))?;
        Ok(results
            .into_iter()
            .next()
            .map(|r| r.predictions)
            .unwrap_or_default())
    }
}
