//! A trained run loaded back from its model directory (t5x's `eval` / `infer`): the
//! configuration the run wrote (`config.gin`), its tokenizer and a checkpoint's parameters
//! — or a plain Hugging Face T5 directory, loaded as the concatenation baseline.

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
    /// Parameters (frozen: loaded for inference).
    pub vs: VarStore,
    /// The model.
    pub model: HyperT5,
    /// The checkpoint that was loaded (for a Hugging Face T5, its directory).
    pub checkpoint: PathBuf,
    /// The tokenizer's `tokenizer.json`.
    pub tokenizer: PathBuf,
}

/// What a plain Hugging Face T5 directory is run as: the concatenation baseline (the
/// instruction in front of every input, no hypernetwork), with Tk-Instruct's lengths
/// (`configs/ni_train.gin`), on a GPU if there is one; the caller's bindings come after these and may change them.
const HUGGING_FACE_T5_BINDINGS: [&str; 9] = [
    "hint.train.Run.instruction_mode = \"concat\"",
    "hint.train.Run.device = \"auto\"",
    "hint.train.Run.lengths = (1024, 1024, 256)",
    "hint.model.HyperConfig.use_instructions = False",
    "hint.model.HyperConfig.use_adapter = False",
    "hint.model.HyperConfig.use_prefix = False",
    "hint.model.HyperConfig.use_lora = False",
    "hint.model.HyperConfig.use_prompt = False",
    "hint.model.HyperConfig.use_fusion_in_decoder = False",
];

/// Loads `checkpoint` (or the newest checkpoint of `model_dir`) with the run's own
/// configuration; `overrides` change it (e.g. other evaluation sets).
///
/// A `model_dir` without `config.gin` but with a Hugging Face `config.json` is a plain T5
/// (`config.json`, `model.safetensors`, `tokenizer.json`, as `hint export --hf` writes
/// them), loaded as the concatenation baseline; it has no checkpoints to choose from.
pub fn load_run(
    model_dir: &Path,
    checkpoint: Option<&Path>,
    overrides: &Overrides,
) -> Result<LoadedRun> {
    let config_path = model_dir.join("config.gin");
    if !config_path.is_file() {
        if model_dir.join("config.json").is_file() {
            return load_hugging_face_t5(model_dir, checkpoint, overrides);
        }
        return Err(TrainError::Checkpoint {
            path: model_dir.to_path_buf(),
            message: "neither config.gin (the model directory of a `hint train` run) nor config.json (a Hugging Face T5)".into(),
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
    let tokenizer = model_dir.join("tokenizer.json");
    let data = settings
        .data
        .build(settings.run.lengths, Some(&tokenizer))?;
    let (mut vs, model) = build_model(&settings)?;
    hint_model::load_parameters(&vs, checkpoint.join(PARAMETERS_FILE))?;
    // Loaded for inference: frozen weights tell the model that no gradient is wanted, so
    // its products may use reordered weight copies (`hint_model::set_weight_packing`).
    vs.freeze();
    Ok(LoadedRun {
        settings,
        data,
        vs,
        model,
        checkpoint,
        tokenizer,
    })
}

/// A plain Hugging Face T5 directory as the concatenation baseline.
fn load_hugging_face_t5(
    dir: &Path,
    checkpoint: Option<&Path>,
    overrides: &Overrides,
) -> Result<LoadedRun> {
    let not_loadable = |message: String| TrainError::Checkpoint {
        path: dir.to_path_buf(),
        message,
    };
    if let Some(checkpoint) = checkpoint {
        return Err(not_loadable(format!(
            "is a Hugging Face T5 directory, which has no checkpoints: leave out the checkpoint ({})",
            checkpoint.display()
        )));
    }
    let config_json = dir.join("config.json");
    let text =
        std::fs::read_to_string(&config_json).map_err(|source| hint_model::ModelError::Io {
            path: config_json.clone(),
            source,
        })?;
    let is_hint = serde_json::from_str::<serde_json::Value>(&text)
        .map(|json| json.get("hint").is_some())
        .unwrap_or(false);
    if is_hint {
        return Err(not_loadable(
            "holds a HINT model written by save_pretrained (config.json has a \"hint\" key): serve the `hint train` run it came from".into(),
        ));
    }
    let tokenizer = dir.join("tokenizer.json");
    if !tokenizer.is_file() {
        return Err(not_loadable(
            "has no tokenizer.json: a Hugging Face T5 directory needs its tokenizer beside config.json".into(),
        ));
    }
    let t5 = hint_model::T5Config::from_json_file(&config_json)?;
    let mut bindings: Vec<String> = HUGGING_FACE_T5_BINDINGS.map(String::from).to_vec();
    bindings.extend(overrides.bindings.iter().cloned());
    let mut settings =
        RunSettings::load(&overrides.files, &bindings, &overrides.search_paths, false)?;
    settings.t5 = t5;
    let data = settings
        .data
        .build(settings.run.lengths, Some(&tokenizer))?;
    let (mut vs, model) = build_model(&settings)?;
    hint_model::load_t5_weights(&vs, dir)?;
    vs.freeze();
    Ok(LoadedRun {
        settings,
        data,
        vs,
        model,
        checkpoint: dir.to_path_buf(),
        tokenizer,
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
            category: None,
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
