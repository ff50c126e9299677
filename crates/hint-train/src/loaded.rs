//! A trained run loaded back from its model directory (t5x's `eval` / `infer`): the
//! configuration the run wrote (`config.gin`), its tokenizer and a checkpoint's parameters.

use std::path::{Path, PathBuf};

use hint_data::RunData;
use hint_model::HyperT5;
use tch::nn::VarStore;

use crate::batches::converter;
use crate::checkpoint::{CheckpointManager, PARAMETERS_FILE};
use crate::error::{Result, TrainError};
use crate::eval::{evaluate, EvalExample, EvalTask};
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
    /// Evaluates the run's evaluation sets.
    pub fn evaluate(&self) -> Result<SetResults> {
        let sets = read_eval_sets(&self.data, &self.settings)?;
        score_sets(&self.model, &sets, &self.data, &self.settings)
    }

    /// Generates an answer for every input of one instruction, adapting to the instruction
    /// once (in concatenation mode the instruction is prepended to each input instead).
    pub fn infer(&self, instruction: &str, inputs: &[String]) -> Result<Vec<String>> {
        let vocabulary = &self.data.vocabulary;
        let encode = |text: &str| -> Result<Vec<i64>> {
            Ok(vocabulary
                .encode(text)?
                .into_iter()
                .map(i64::from)
                .collect())
        };
        let converter = converter(&self.settings);
        let instruction_ids = encode(instruction)?;
        let mut task_instruction = Vec::new();
        let mut examples = Vec::new();
        for input in inputs {
            let model_inputs = converter.model_inputs(&encode(input)?, &instruction_ids);
            task_instruction = model_inputs.instruction;
            examples.push(EvalExample {
                input: model_inputs.encoder,
                references: vec![String::new()],
                choices: None,
            });
        }
        let task = EvalTask {
            name: "infer".into(),
            metrics: Vec::new(),
            instruction: task_instruction,
            examples,
        };
        let decode = decoder(vocabulary);
        let results = tch::no_grad(|| {
            evaluate(
                &self.model,
                &[task],
                &decode,
                &self.settings.eval,
                self.settings.device,
            )
        })?;
        Ok(results
            .into_iter()
            .next()
            .map(|r| r.predictions)
            .unwrap_or_default())
    }
}
