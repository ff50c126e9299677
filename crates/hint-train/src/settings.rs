//! A run's configuration: the configurables gin binds, parsed once into [`RunSettings`]
//! and passed typed to everything below the command line.
//!
//! Configurables (bind them in gin with any unique suffix):
//! `hint.train.Run`, `hint.train.TrainConfig`, `hint.train.EvalConfig`,
//! `hint.model.T5Config`, `hint.model.HyperConfig`, `hint.optim.Adafactor` in the scopes
//! `hyper` and `t5` (the dual groups), the `hint.data.*` configurables, and
//! `hint.experiment.Experiment`. The original HINT's own gin files are accepted too:
//! [`load_config`] translates them ([`crate::original_gin`]).

use std::path::PathBuf;

use hint_config::{Config, ConfigBuilder, Registry};
use hint_data::{DataConfig, FeatureLengths, InstructionMode};
use hint_model::{HyperConfig, T5Config};
use hint_optim::{AdafactorConfig, AdamWConfig, ParamGroup};
use serde::{Deserialize, Serialize};
use tch::Device;

use crate::error::{Result, TrainError};
use crate::eval::EvalConfig;
use crate::trainer::{OptimizerKind, TrainConfig};

/// `hint.train.Run`: where a run writes, what it trains on and evaluates.
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
    /// Lengths of `inputs`, `hyper_inputs`, `targets` (gin: a 3-tuple).
    pub lengths: FeatureLengths,
    /// Where the instruction goes (`hyper` or `concat`).
    pub instruction_mode: InstructionMode,
    /// Evaluate at most this many instances per task (0: all).
    pub eval_examples_per_task: usize,
    /// `cpu`, `cuda`, `cuda:N` or `auto`.
    pub device: String,
    /// A Hugging Face T5 directory to start from (a fresh hypernetwork on top); empty for
    /// random initialisation.
    pub initial_checkpoint: String,
    /// How the variables read `initial_checkpoint` (t5x's `RestoreCheckpointConfig.
    /// assignment_map`): ordered `(pattern, replacement)` rules over the model's variable
    /// names, the first full match deciding; `None` keeps the fresh initialisation, a
    /// replacement (`\1` or `$1` for groups) names the tensor to read. Empty: the T5
    /// reads its own names and `hyper.*` starts fresh.
    pub assignment_map: Vec<(String, Option<String>)>,
    /// With an assignment map: a variable whose tensor the checkpoint lacks keeps its
    /// initialisation (reported) instead of failing the run.
    pub fallback_to_scratch: bool,
    /// The spelling of names the assignment map is written in: `hint` (Hugging Face names)
    /// or `t5x` (`target/encoder/layers_0/attention/query/kernel`, as the original HINT's
    /// gin files write them; the model's and the checkpoint's names are both spelled so).
    pub assignment_map_naming: hint_model::AssignmentNaming,
    /// Read every task from its cache (seqio's `use_cached`), written by `hint cache-tasks`;
    /// a cache written for another task definition or vocabulary is refused.
    pub use_cached: bool,
    /// Where caches are looked up, first match wins (seqio's global cache dirs,
    /// `--seqio_additional_cache_dirs` in t5x).
    pub cache_dirs: Vec<String>,
    /// In a data-parallel run, how long a rank waits for the others (the rendezvous and
    /// every collective, including rank 0's periodic evaluation) before it fails.
    pub dist_timeout_seconds: u64,
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
            lengths: FeatureLengths::new(24, 32, 16),
            instruction_mode: InstructionMode::Hyper,
            eval_examples_per_task: 0,
            device: "cpu".into(),
            initial_checkpoint: String::new(),
            assignment_map: Vec::new(),
            fallback_to_scratch: false,
            assignment_map_naming: hint_model::AssignmentNaming::Hint,
            use_cached: false,
            cache_dirs: Vec::new(),
            dist_timeout_seconds: 1800,
        }
    }
}

impl RunConfig {
    /// The cache folders as paths.
    pub fn cache_dirs(&self) -> Vec<PathBuf> {
        self.cache_dirs.iter().map(PathBuf::from).collect()
    }
}

/// `hint.experiment.Experiment`: the arms and seeds of `hint experiment run`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExperimentConfig {
    /// A name for the table's title.
    pub name: String,
    /// Where every arm's model directories and the results go.
    pub output_dir: String,
    /// Arm names (files `arms/<name>.gin` beside the suite file).
    pub arms: Vec<String>,
    /// Seeds per arm (`TrainConfig.seed` = 0, 1, …).
    pub seeds: usize,
}

impl Default for ExperimentConfig {
    fn default() -> Self {
        Self {
            name: "experiment".into(),
            output_dir: String::new(),
            arms: Vec::new(),
            seeds: 3,
        }
    }
}

/// The configurables a run reads.
pub fn registry() -> Result<Registry> {
    let mut registry = Registry::new();
    registry
        .register_struct::<RunConfig>("hint.train.Run")?
        .register_struct::<TrainConfig>("hint.train.TrainConfig")?
        .register_struct::<EvalConfig>("hint.train.EvalConfig")?
        .register_struct::<T5Config>("hint.model.T5Config")?
        .register_struct::<HyperConfig>("hint.model.HyperConfig")?
        .register_struct::<AdafactorConfig>("hint.optim.Adafactor")?
        .register_struct::<AdamWConfig>("hint.optim.AdamW")?
        .register_struct::<ExperimentConfig>("hint.experiment.Experiment")?;
    hint_data::register(&mut registry)?;
    Ok(registry)
}

/// Parses gin files and bindings (t5x order) against [`registry`]. A configuration
/// that binds the original HINT's or t5x's configurables (its own gin files) is first
/// translated into hint's ([`crate::original_gin`]); what does not apply is logged as a
/// warning.
pub fn load_config(
    files: &[PathBuf],
    bindings: &[String],
    search_paths: &[PathBuf],
    skip_unknown: bool,
) -> Result<Config> {
    let translated = translate_original(files, bindings, search_paths);
    if let Ok(Some(translation)) = &translated {
        for warning in &translation.warnings {
            tracing::warn!("{warning}");
        }
        return Ok(ConfigBuilder::new()
            .registry(registry()?)
            .skip_unknown(skip_unknown)
            .source(TRANSLATED, translation.gin())
            .build()?);
    }
    let checked = sources(ConfigBuilder::new(), files, bindings, search_paths)
        .registry(registry()?)
        .skip_unknown(skip_unknown)
        .build();
    match (checked, translated) {
        // The original's files that fail before translation (a `%gin.REQUIRED` macro left
        // unbound): their own error says more than "unknown configurable".
        (Err(hint_config::ConfigError::UnknownConfigurable { selector, .. }), Err(original))
            if crate::original_gin::knows(&selector) =>
        {
            Err(original)
        }
        (checked, Err(TrainError::Config(_)) | Ok(_)) => Ok(checked?),
        (_, Err(untranslatable)) => Err(untranslatable),
    }
}

/// The name translated configurations carry in error locations.
const TRANSLATED: &str = "<translated from the original's gin>";

/// When the files and bindings are (or include) the original HINT's gin configuration,
/// its translation into hint's configurables; `None` for a hint configuration.
///
/// # Errors
/// A file that does not parse, a missing `%gin.REQUIRED` macro, or a binding with no
/// counterpart in hint (named, with where it was bound).
pub fn translate_original(
    files: &[PathBuf],
    bindings: &[String],
    search_paths: &[PathBuf],
) -> Result<Option<crate::original_gin::Translation>> {
    let registry = registry()?;
    let raw = sources(ConfigBuilder::new(), files, bindings, search_paths).build()?;
    if !crate::original_gin::is_original(&raw, &registry) {
        return Ok(None);
    }
    // gin resolves a partial selector (`hyper_network.HyperT5Config` in a file without
    // imports) to the registered one (`hyper_task_descriptions.modeling.hyper_network.
    // HyperT5Config`), so that a later file's binding overrides an earlier one's. Parsed
    // again with the original's selectors registered, the same happens here.
    let mut merged = registry.clone();
    let mut foreign: Vec<String> = raw
        .bindings()
        .into_iter()
        .map(|entry| entry.selector)
        .filter(|selector| {
            !selector.starts_with("gin.") && registry.lookup(selector, None).is_err()
        })
        .collect();
    foreign.sort_by_key(|selector| std::cmp::Reverse(selector.len()));
    for selector in foreign {
        if merged.lookup(&selector, None).is_err() {
            merged.insert(hint_config::Configurable {
                selector,
                params: None,
                defaults: Default::default(),
                constructor: None,
            });
        }
    }
    let canonical = sources(ConfigBuilder::new(), files, bindings, search_paths)
        .registry(merged)
        .skip_unknown(true)
        .build()?;
    crate::original_gin::translate(&canonical, &registry).map(Some)
}

fn sources(
    mut builder: ConfigBuilder,
    files: &[PathBuf],
    bindings: &[String],
    search_paths: &[PathBuf],
) -> ConfigBuilder {
    builder = builder.search_paths(search_paths.iter().cloned());
    for file in files {
        builder = builder.file(file.display().to_string());
    }
    for binding in bindings {
        builder = builder.binding(binding.clone());
    }
    builder
}

/// Everything a run is built from, read once from the configuration and checked.
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
    /// `hyper/hint.optim.AdamW` (read when `TrainConfig.optimizer = "adamw"`).
    pub hyper_adamw: AdamWConfig,
    /// `t5/hint.optim.AdamW` (read when `TrainConfig.optimizer = "adamw"`).
    pub t5_adamw: AdamWConfig,
    /// `henc/hint.optim.Adafactor` or `henc/hint.optim.AdamW`, the separate instruction
    /// encoder's group (read when `TrainConfig.instruction_encoder_group`).
    pub henc_optimizer: AdafactorConfig,
    /// See `henc_optimizer`.
    pub henc_adamw: AdamWConfig,
    /// The `hint.data.*` configurables.
    pub data: DataConfig,
    /// The device `Run.device` names, checked against what libtorch sees.
    pub device: Device,
    /// The configuration as given (the model directory's `config.gin`).
    pub config_text: String,
    /// The bindings in effect (`operative_config.gin`).
    pub operative_text: String,
}

impl RunSettings {
    /// Parses gin files and bindings and reads every configurable of a run.
    pub fn load(
        files: &[PathBuf],
        bindings: &[String],
        search_paths: &[PathBuf],
        skip_unknown: bool,
    ) -> Result<Self> {
        Self::from_config(&load_config(files, bindings, search_paths, skip_unknown)?)
    }

    /// Reads every configurable of a run from a parsed configuration.
    pub fn from_config(config: &Config) -> Result<Self> {
        for unreferenced in config.unreferenced_macros() {
            tracing::warn!("{unreferenced}");
        }
        let run: RunConfig = config.get("hint.train.Run", "")?;
        let device = hint_model::open_device(&run.device)
            .map_err(|e| invalid_binding(config, "hint.train.Run", "device", e.to_string()))?;
        run.lengths
            .validate()
            .map_err(|e| invalid_binding(config, "hint.train.Run", "lengths", e.to_string()))?;
        if !run.assignment_map.is_empty() {
            if run.initial_checkpoint.is_empty() {
                return Err(invalid_binding(
                    config,
                    "hint.train.Run",
                    "assignment_map",
                    "set, but initial_checkpoint is empty: the map says how variables read a checkpoint",
                ));
            }
            hint_model::AssignmentMap::with_naming(&run.assignment_map, run.assignment_map_naming)
                .map_err(|e| {
                    invalid_binding(config, "hint.train.Run", "assignment_map", e.to_string())
                })?;
        }
        let train: TrainConfig = config.get("hint.train.TrainConfig", "")?;
        // Only the chosen optimizer's configurable is read, so bindings of the other one
        // are reported as unread rather than silently ignored.
        let adamw = train.optimizer == OptimizerKind::AdamW;
        let adafactor = |scope: &str| -> Result<AdafactorConfig> {
            Ok(if adamw {
                AdafactorConfig::default()
            } else {
                config.get("hint.optim.Adafactor", scope)?
            })
        };
        let adamw_config = |scope: &str| -> Result<AdamWConfig> {
            Ok(if adamw {
                config.get("hint.optim.AdamW", scope)?
            } else {
                AdamWConfig::default()
            })
        };
        let henc = train.instruction_encoder_group;
        let hyper: HyperConfig = config.get("hint.model.HyperConfig", "")?;
        hyper.validate().map_err(|message| {
            invalid_binding(
                config,
                "hint.model.HyperConfig",
                "layer_embedding_method",
                message,
            )
        })?;
        if henc && hyper.share_hnet_encoder {
            tracing::warn!("hint.train.TrainConfig.instruction_encoder_group is set, but the instruction encoder is T5's (share_hnet_encoder = True): the `henc` group is empty");
        }
        let settings = Self {
            henc_optimizer: if henc && !adamw {
                config.get("hint.optim.Adafactor", "henc")?
            } else {
                AdafactorConfig::default()
            },
            henc_adamw: if henc && adamw {
                config.get("hint.optim.AdamW", "henc")?
            } else {
                AdamWConfig::default()
            },
            train,
            eval: config.get("hint.train.EvalConfig", "")?,
            t5: config.get("hint.model.T5Config", "")?,
            hyper,
            hyper_optimizer: adafactor("hyper")?,
            t5_optimizer: adafactor("t5")?,
            hyper_adamw: adamw_config("hyper")?,
            t5_adamw: adamw_config("t5")?,
            data: DataConfig::from_config(config)?,
            device,
            config_text: config.config_str(),
            operative_text: config.operative_config_str(),
            run,
        };
        // Everything a run reads is read now. An experiment's own configurable is read by
        // the experiment, not by its runs.
        for unread in config.unread_bindings() {
            if !unread.selector.starts_with("hint.experiment.") {
                tracing::warn!("{unread}");
            }
        }
        Ok(settings)
    }
}

impl RunSettings {
    /// The optimizer's groups (`hyper`: every parameter whose name contains `hyper`;
    /// `t5`: the others; with `TrainConfig.instruction_encoder_group`, `henc`: a separate
    /// instruction encoder, out of `hyper`), with the chosen update rule's settings.
    pub fn param_groups(&self) -> Vec<ParamGroup> {
        let (hyper, t5) = (self.hyper_optimizer.clone(), self.t5_optimizer.clone());
        let (hyper_adamw, t5_adamw) = (self.hyper_adamw.clone(), self.t5_adamw.clone());
        match (self.train.optimizer, self.train.instruction_encoder_group) {
            (OptimizerKind::Adafactor, false) => ParamGroup::dual(hyper, t5),
            (OptimizerKind::Adafactor, true) => {
                ParamGroup::triple(hyper, self.henc_optimizer.clone(), t5)
            }
            (OptimizerKind::AdamW, false) => ParamGroup::dual_adamw(hyper_adamw, t5_adamw),
            (OptimizerKind::AdamW, true) => {
                ParamGroup::triple_adamw(hyper_adamw, self.henc_adamw.clone(), t5_adamw)
            }
        }
    }
}

/// An invalid-setting error for `selector.param`, located where the configuration bound it.
pub(crate) fn invalid_binding(
    config: &Config,
    selector: &str,
    param: &str,
    message: impl Into<String>,
) -> TrainError {
    TrainError::InvalidSetting {
        binding: format!("{selector}.{param}"),
        at: config
            .binding("", selector, param)
            .map(|bound| bound.location.clone()),
        message: message.into(),
    }
}
