//! The original HINT's gin files (`allenai/hyper-task-descriptions`, on t5x) read as a
//! hint configuration.
//!
//! A user of the original passes the files they have: `hint train
//! --gin_search_paths=… --gin_file=gins/hyper_base.gin --gin_file=gins/instruction_embed.gin
//! --gin_file=gins/ni_train.gin --gin.MODEL_DIR=…`. [`load_config`](crate::load_config)
//! notices bindings of the original's or t5x's configurables (names hint's registry does
//! not know but [`TABLE`] does), and [`translate`] rewrites every binding into hint's
//! configurables through that one table, which the README prints as well. Nothing is
//! dropped silently: a binding with no counterpart is an error naming it and where it was
//! bound, unless it is bound to the value hint's design equals (`float32_attention_logits = False`); a
//! binding that cannot change a run here (partitioning on one device, loggers) is
//! reported as a warning. Bindings of hint's own configurables pass through unchanged, so
//! `--gin.hint.data.SuperNI.path=…` can be added to the original's files.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use hint_config::{BindingEntry, Config, Location, Registry, Value};

use crate::error::{Result, TrainError};

/// What becomes of one of the original's bindings.
#[derive(Clone, Copy)]
pub enum Becomes {
    /// hint's binding (`selector.param`) of the same value.
    Same(&'static str),
    /// hint's binding(s), described by the text; the value converted.
    Converted(&'static str, Convert),
    /// A reference (or its absence) the translation reads through: what it names is
    /// translated from its own bindings.
    Followed,
    /// Reported as a warning, not applied: it cannot change a run here.
    Warned(&'static str),
    /// Accepted when bound to this value (gin text), which hint's design equals; any
    /// other value is an error with the reason.
    OnlyDefault(&'static str, &'static str),
    /// Always an error, with the reason and what to use instead.
    Unsupported(&'static str),
}

/// Translates one binding's value into hint's, or says why it cannot.
pub type Convert = fn(&Value, &mut Translation) -> std::result::Result<(), String>;

/// One row of the translation table.
#[derive(Clone, Copy)]
pub struct Row {
    /// `Configurable.param` as the original binds it (the configurable's last name; any
    /// module path before it is accepted); `*` matches every parameter.
    pub original: &'static str,
    /// The scopes the row applies to (`""` is unscoped); empty: every scope.
    pub scopes: &'static [&'static str],
    /// What hint makes of it.
    pub becomes: Becomes,
}

const fn row(original: &'static str, becomes: Becomes) -> Row {
    Row {
        original,
        scopes: &[],
        becomes,
    }
}

const fn scoped(original: &'static str, scopes: &'static [&'static str], becomes: Becomes) -> Row {
    Row {
        original,
        scopes,
        becomes,
    }
}

use Becomes::{Converted, Followed, OnlyDefault, Same, Unsupported, Warned};

const GROUPS: &[&str] = &["", "hyper", "roberta", "t5"];
const HYPER_GROUP_WHY: &str = "hint's optimizer groups are `hyper` (parameters whose name contains `hyper`) and `t5` (the others); other groups have no counterpart";
/// At the original's commit its separate encoder is `hyper/hyper_encoder`: `.*/hyper/e.*`
/// (the `roberta` group, from the RoBERTa-encoder era) matches nothing, and `hyper`'s
/// `.*/hyper/[^e].*` takes the whole hypernetwork.
const ROBERTA_EMPTY: &str = "the `roberta` group (`.*/hyper/e.*`) matches no variable of the original's model at fd86a43, whose separate encoder is `hyper/hyper_encoder` (the `hyper` group takes it); its settings apply to nothing";
const ONE_DEVICE: &str = "partitioning across devices: hint runs data-parallel (one model per device), so model partitioning does not change a run";
const LOGGING: &str =
    "logging and summaries: hint writes metrics.jsonl, TensorBoard events and operative_config.gin";

/// The original's and t5x's configurables and what each becomes in hint, first match
/// wins. `README.md` ("Running the original's gin files") prints the same table.
pub const TABLE: &[Row] = &[
    // ---- hyper_network.HyperT5Config (t5x's T5Config plus HINT's switches)
    row("HyperT5Config.vocab_size", Same("hint.model.T5Config.vocab_size")),
    row("HyperT5Config.dtype", Converted("hint.train.TrainConfig.compute_dtype", dtype)),
    row("HyperT5Config.emb_dim", Same("hint.model.T5Config.d_model")),
    row("HyperT5Config.num_heads", Same("hint.model.T5Config.num_heads")),
    row("HyperT5Config.num_encoder_layers", Same("hint.model.T5Config.num_layers")),
    row("HyperT5Config.num_decoder_layers", Same("hint.model.T5Config.num_decoder_layers")),
    row("HyperT5Config.head_dim", Same("hint.model.T5Config.d_kv")),
    row("HyperT5Config.mlp_dim", Same("hint.model.T5Config.d_ff")),
    row("HyperT5Config.mlp_activations", Converted("hint.model.T5Config.feed_forward_proj (('gelu', 'linear') is gated-gelu, ('silu', 'linear') gated-silu, ('relu',) relu)", mlp_activations)),
    row("HyperT5Config.dropout_rate", Same("hint.model.T5Config.dropout_rate")),
    row("HyperT5Config.logits_via_embedding", Same("hint.model.T5Config.tie_word_embeddings")),
    row("HyperT5Config.float32_attention_logits", OnlyDefault("False", "hint has no switch for f32 attention logits in bf16 runs")),
    row("HyperT5Config.use_instructions", Same("hint.model.HyperConfig.use_instructions")),
    row("HyperT5Config.use_adapter", Same("hint.model.HyperConfig.use_adapter")),
    row("HyperT5Config.adapter_size", Same("hint.model.HyperConfig.adapter_size")),
    row("HyperT5Config.use_prompt", Same("hint.model.HyperConfig.use_prompt")),
    row("HyperT5Config.num_prompt_tokens", Same("hint.model.HyperConfig.num_prompt_tokens")),
    row("HyperT5Config.use_prefix", Same("hint.model.HyperConfig.use_prefix")),
    row("HyperT5Config.num_prefix_tokens", Same("hint.model.HyperConfig.num_prefix_tokens")),
    row("HyperT5Config.use_lora", Same("hint.model.HyperConfig.use_lora")),
    row("HyperT5Config.lora_ranks", Same("hint.model.HyperConfig.lora_ranks")),
    row("HyperT5Config.use_ia3", Same("hint.model.HyperConfig.use_ia3")),
    row("HyperT5Config.ia3_ranks", OnlyDefault("(None, None, None, None)", "hint's IA3 is PEFT's (vectors on keys, values and the feed-forward's inner activations); the original's low-rank IA3 kernels crash there and are not ported")),
    row("HyperT5Config.use_fusion_in_decoder", Same("hint.model.HyperConfig.use_fusion_in_decoder")),
    row("HyperT5Config.share_hnet_encoder", Same("hint.model.HyperConfig.share_hnet_encoder")),
    row("HyperT5Config.use_tanh_prefix", Same("hint.model.HyperConfig.use_tanh_prefix")),
    row("HyperT5Config.hyperencoder_model", Unsupported("hint's separate instruction encoder (share_hnet_encoder = False) has the T5's own shape and starts from the checkpoint's encoder through hint.train.Run.assignment_map (configs/optim/separate_henc.gin); no other model is loaded")),
    row("HyperT5Config.layer_embedding_method", Converted("hint.model.HyperConfig.layer_embedding_method: 'component' (HINT), 'decoder' (HyperTune), 'none' (Hypter, with per_layer_hnet), 'layer', 'concat'; 'decoder_test' (which the original rejects too) is not built", layer_embedding_method)),
    row("HyperT5Config.use_linear", Same("hint.model.HyperConfig.use_linear")),
    row("HyperT5Config.per_layer_hnet", Same("hint.model.HyperConfig.per_layer_hnet")),
    row("HyperT5Config.hypernet_activations", Same("hint.model.HyperConfig.hypernet_activations")),
    row("HyperT5Config.hnet_layernorm", Same("hint.model.HyperConfig.hnet_layernorm")),
    row("HyperTransformer.config", Followed),
    // ---- the model (hyper_transformer.HyperEncoderDecoder[Contrastive]Model)
    row("HyperEncoderDecoderContrastiveModel.module", Converted("hint.train.TrainConfig.contrastive_metric = True (the original logs the cosine metric and, as there, does not train on it)", contrastive_model)),
    row("HyperEncoderDecoderModel.module", Followed),
    row("*Model.input_vocabulary", Followed),
    row("*Model.output_vocabulary", Followed),
    row("*Model.optimizer_def", Followed),
    row("*Model.z_loss", Converted("hint.train.TrainConfig.loss.z_loss", z_loss)),
    row("*Model.label_smoothing", Converted("hint.train.TrainConfig.loss.label_smoothing", label_smoothing)),
    row("*Model.loss_normalizing_factor", Converted("hint.train.TrainConfig.loss.normalization (None: Sum, a number: Constant, 'NUM_REAL_TARGET_TOKENS')", loss_normalizing_factor)),
    row("SentencePieceVocabulary.sentencepiece_model_file", Warned("hint reads the vocabulary from hint.data.Vocabulary.tokenizer_file (a tokenizer.json); bind it to the same vocabulary (T5's is ../shared/data/t5-tokenizer/tokenizer.json)")),
    row("SentencePieceVocabulary.extra_ids", OnlyDefault("0", "extra ids come from the tokenizer.json")),
    row("HuggingfaceVocabulary.model_name", Warned("hint reads the vocabulary from hint.data.Vocabulary.tokenizer_file (a tokenizer.json); bind it to the same vocabulary")),
    // ---- optimizers
    scoped("Adafactor.learning_rate", GROUPS, Converted("<scope>/hint.optim.Adafactor.learning_rate for the original's learning_rate_adafactor.Adafactor; t5x's adafactor.Adafactor ignores it (the trainer's schedule overrides it), so it is warned about", group_learning_rate)),
    scoped("Adafactor.decay_rate", GROUPS, Same("hint.optim.Adafactor.decay_rate")),
    scoped("Adafactor.step_offset", GROUPS, Warned("the offset cancels the step t5x restores with a T5 checkpoint (1.1M for the LM-adapted T5s); hint starts a Hugging Face checkpoint at step 0 with fresh optimizer state, so no offset is applied")),
    scoped("Adafactor.multiply_by_parameter_scale", GROUPS, Same("hint.optim.Adafactor.multiply_by_parameter_scale")),
    scoped("Adafactor.clipping_threshold", GROUPS, Same("hint.optim.Adafactor.clipping_threshold")),
    scoped("Adafactor.beta1", GROUPS, Same("hint.optim.Adafactor.beta1")),
    scoped("Adafactor.factored", GROUPS, Same("hint.optim.Adafactor.factored")),
    scoped("Adafactor.min_dim_size_to_factor", GROUPS, Same("hint.optim.Adafactor.min_dim_size_to_factor")),
    scoped("Adafactor.epsilon1", GROUPS, Same("hint.optim.Adafactor.epsilon1")),
    scoped("Adafactor.epsilon2", GROUPS, Same("hint.optim.Adafactor.epsilon2")),
    scoped("Adafactor.weight_decay_rate", GROUPS, Same("hint.optim.Adafactor.weight_decay_rate")),
    scoped("Adafactor.weight_decay_rate_lr_exponent", GROUPS, Same("hint.optim.Adafactor.weight_decay_rate_lr_exponent")),
    scoped("Adafactor.global_norm_clip_threshold", GROUPS, Same("hint.optim.Adafactor.global_norm_clip_threshold")),
    scoped("Adafactor.max_parameter_scale", GROUPS, Same("hint.optim.Adafactor.max_parameter_scale")),
    scoped("Adafactor.skip_nan_updates", GROUPS, Same("hint.optim.Adafactor.skip_nan_updates")),
    scoped("Adafactor.logical_factor_rules", GROUPS, Warned("hint factors every matrix's second moment over its two largest dimensions, as t5x's standard rules do for T5's kernels")),
    row("MultiOptimizer.traversals_and_optimizers", Converted("the groups `hyper` and `t5` (a group the original leaves out is frozen: learning_rate = 0; `roberta` is empty at the original's commit, warned)", multi_optimizer)),
    scoped("ModelParamTraversal.filter_fn", &["hyper", "roberta", "t5"], Followed),
    scoped("match_any.regexes", &["hyper", "roberta"], Converted("checked: `hyper` is the parameters whose name contains `hyper` (`.*hyper.*`, `.*/hyper.*` or `.*/hyper/[^e].*`); `roberta` (`.*/hyper/e.*`) matches nothing at the original's commit and is warned about", hyper_regexes)),
    scoped("inverse_match_any.regexes", &["t5"], Converted("checked: the `t5` group is every other parameter", hyper_regexes)),
    row("adam.*", Unsupported("optax groups: hint's AdamW groups are hint.optim.AdamW in the scopes hyper and t5 with hint.train.TrainConfig.optimizer = 'adamw' (configs/optim/adamw_dual.gin); the original's three groups have no two-group counterpart")),
    row("multi_transform.*", Unsupported("optax groups: see configs/optim/adamw_dual.gin")),
    row("match_any_optax_trip.*", Unsupported("optax groups: see configs/optim/adamw_dual.gin")),
    row("create_learning_rate_scheduler.factors", Converted("the groups' hint.optim.Adafactor.learning_rate_schedule (learning_rate when only 'constant'), unless a group sets its own learning_rate", schedule_field)),
    row("create_learning_rate_scheduler.base_learning_rate", Converted("learning_rate_schedule.base_learning_rate", schedule_field)),
    row("create_learning_rate_scheduler.warmup_steps", Converted("learning_rate_schedule.warmup_steps", schedule_field)),
    row("create_learning_rate_scheduler.decay_factor", Converted("learning_rate_schedule.decay_factor", schedule_field)),
    row("create_learning_rate_scheduler.steps_per_decay", Converted("learning_rate_schedule.steps_per_decay", schedule_field)),
    row("create_learning_rate_scheduler.steps_per_cycle", Converted("learning_rate_schedule.steps_per_cycle", schedule_field)),
    row("create_learning_rate_scheduler.step_offset", OnlyDefault("0", "hint's schedules count from the run's first step")),
    // ---- the trainer and the train / evaluate scripts
    row("Trainer.num_microbatches", Converted("hint.train.TrainConfig.microbatches (None: 1)", microbatches)),
    row("Trainer.learning_rate_fn", Followed),
    row("Trainer.weight_metrics_computer", Warned("per-parameter weight metrics are not logged")),
    row("train.model", Followed),
    row("train.model_dir", Same("hint.train.Run.model_dir")),
    row("train.train_dataset_cfg", Followed),
    row("train.train_eval_dataset_cfg", Converted("warned when set: hint evaluates by inference (infer_eval), not by teacher-forced loss", train_eval_dataset)),
    row("train.infer_eval_dataset_cfg", Converted("hint.train.Run.eval_sets = [('infer_eval', mixture, split)] (None: [])", infer_eval_dataset)),
    row("train.checkpoint_cfg", Followed),
    row("train.partitioner", Followed),
    row("train.trainer_cls", Followed),
    row("train.total_steps", Converted("hint.train.TrainConfig.steps (unless relative_steps is set)", total_steps)),
    row("train.relative_steps", Converted("hint.train.TrainConfig.steps", relative_steps)),
    row("train.eval_period", Same("hint.train.TrainConfig.eval_every")),
    row("train.eval_steps", Warned("the number of teacher-forced evaluation batches; hint evaluates by inference")),
    row("train.stats_period", Warned(LOGGING)),
    row("train.random_seed", Converted("hint.train.TrainConfig.seed (None: hint's default 0)", random_seed)),
    row("train.use_hardware_rng", Warned("a TPU random-number generator")),
    row("train.summarize_config_fn", Warned(LOGGING)),
    row("train.inference_evaluator_cls", Followed),
    row("train.gc_period", Warned("Python garbage collection")),
    row("evaluate.model", Followed),
    row("evaluate.dataset_cfg", Converted("hint.train.Run.eval_sets = [('eval', mixture, split)] and hint.train.TrainConfig.steps = 0 (evaluate the restored model)", evaluate_dataset)),
    row("evaluate.partitioner", Followed),
    row("evaluate.restore_checkpoint_cfg", Followed),
    row("evaluate.output_dir", Same("hint.train.Run.model_dir")),
    row("evaluate.inference_evaluator_cls", Followed),
    // ---- datasets (t5x's utils.DatasetConfig in the train script's scopes)
    scoped("DatasetConfig.mixture_or_task_name", &["train"], Same("hint.train.Run.mixture")),
    scoped("DatasetConfig.task_feature_lengths", &["train", ""], Converted("hint.train.Run.lengths = (inputs, hyper_inputs, targets)", feature_lengths)),
    scoped("DatasetConfig.batch_size", &["train"], Same("hint.train.Run.batch_size")),
    scoped("DatasetConfig.use_cached", &["train"], Same("hint.train.Run.use_cached")),
    scoped("DatasetConfig.pack", &["train"], Converted("warned when True: hint does not pack examples (the original turns packing off for the hypernetwork in gins/t0.gin)", pack)),
    scoped("DatasetConfig.split", &["train"], OnlyDefault("'train'", "hint trains on a mixture's train split")),
    scoped("DatasetConfig.mixture_or_task_name", &["train_eval", "infer_eval", ""], Converted("read into hint.train.Run.eval_sets when that dataset is evaluated", dataset_field)),
    scoped("DatasetConfig.split", &["train_eval", "infer_eval", ""], Converted("read into hint.train.Run.eval_sets when that dataset is evaluated", dataset_field)),
    scoped("DatasetConfig.batch_size", &["infer_eval", ""], Same("hint.train.EvalConfig.batch_size")),
    scoped("DatasetConfig.*", &["train", "train_eval", "infer_eval", ""], Warned("shuffling, seeds, Python modules and packing ops of t5x's data pipeline: hint shuffles the train split by hint.train.TrainConfig.seed and evaluates in order")),
    // ---- checkpoints
    row("CheckpointConfig.restore", Followed),
    row("CheckpointConfig.save", Followed),
    row("SaveCheckpointConfig.period", Same("hint.train.TrainConfig.checkpoint_every")),
    row("SaveCheckpointConfig.keep", Converted("hint.train.TrainConfig.keep_checkpoints (None: all)", keep_checkpoints)),
    row("SaveCheckpointConfig.dtype", OnlyDefault("'float32'", "hint saves parameters in their training dtype (hint.train.TrainConfig.param_dtype)")),
    row("SaveCheckpointConfig.save_dataset", Warned("hint always saves the data iterator's position with a checkpoint (resume is exact)")),
    row("RestoreCheckpointConfig.path", Converted("hint.train.Run.initial_checkpoint (a Hugging Face T5 directory; [] or None: from scratch)", restore_path)),
    row("RestoreCheckpointConfig.assignment_map", Converted("hint.train.Run.assignment_map with assignment_map_naming = 't5x' (the rules read t5x's names of hint's variables and of the checkpoint's tensors; rules about optimizer state are warned about and dropped)", assignment_map)),
    row("RestoreCheckpointConfig.fallback_to_scratch", Converted("hint.train.Run.fallback_to_scratch (with an assignment map)", fallback_to_scratch)),
    row("RestoreCheckpointConfig.mode", Warned("hint restores the directory Run.initial_checkpoint names")),
    row("RestoreCheckpointConfig.dtype", Warned("the restored tensors take the run's parameter dtype (hint.train.TrainConfig.param_dtype)")),
    row("RestoreCheckpointConfig.strict", Warned("with an assignment map hint fails on a missing or mis-shaped tensor unless fallback_to_scratch; without one it restores the T5 part strictly and starts the hypernetwork fresh (an evaluation gets the identity map, so every variable is restored)")),
    // ---- evaluation and devices
    row("Evaluator.num_examples", Converted("hint.train.Run.eval_examples_per_task (None: 0, all)", eval_examples)),
    row("Evaluator.logger_cls", Warned(LOGGING)),
    row("Evaluator.use_memory_cache", Warned("hint keeps evaluation sets in memory")),
    row("JSONLogger.write_n_results", Warned(LOGGING)),
    row("PjitPartitioner.num_partitions", Warned(ONE_DEVICE)),
    row("PjitPartitioner.model_parallel_submesh", Warned(ONE_DEVICE)),
    row("PjitPartitioner.logical_axis_rules", Warned(ONE_DEVICE)),
];

/// The original's defaults where hint's differ, applied before the bindings when the
/// configuration names the original's model: `HyperT5Config` (HINT's switches over t5x's
/// `T5Config`) and t5x's `EncoderDecoderModel` loss. hint keeps its own
/// `hyperencoder_mask_padding = True` (hint's configs use it too; the original attends to
/// instruction padding).
// Generator dropout stays hint's (paper-era) 0.0: the original's HEAD has 0.1 inside its
// generator MLPs, but hint's own configs and the paper's runs use 0.
const MODEL_DEFAULTS: &[(&str, &str)] = &[
    ("hint.model.HyperConfig.use_instructions", "True"),
    ("hint.model.HyperConfig.use_adapter", "True"),
    ("hint.model.HyperConfig.adapter_size", "64"),
    ("hint.model.HyperConfig.use_prompt", "False"),
    ("hint.model.HyperConfig.num_prompt_tokens", "100"),
    ("hint.model.HyperConfig.use_prefix", "True"),
    ("hint.model.HyperConfig.num_prefix_tokens", "30"),
    ("hint.model.HyperConfig.use_lora", "False"),
    ("hint.model.HyperConfig.use_ia3", "False"),
    ("hint.model.HyperConfig.use_fusion_in_decoder", "False"),
    ("hint.model.HyperConfig.share_hnet_encoder", "False"),
    ("hint.model.HyperConfig.use_tanh_prefix", "False"),
    ("hint.model.T5Config.dropout_rate", "0.1"),
    ("hint.model.T5Config.feed_forward_proj", "'relu'"),
    ("hint.model.T5Config.tie_word_embeddings", "False"),
    ("hint.train.TrainConfig.compute_dtype", "'float32'"),
];

/// A binding of the original reported as a warning.
#[derive(Debug, Clone, PartialEq)]
pub struct Warning {
    /// `scope/Configurable.param` as bound.
    pub binding: String,
    /// Where it was bound.
    pub at: Option<Location>,
    /// Why it does not apply here.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(at) = &self.at {
            write!(f, "{at}: ")?;
        }
        write!(f, "{} is not applied: {}", self.binding, self.message)
    }
}

/// The original's configuration as hint bindings.
#[derive(Debug, Default)]
pub struct Translation {
    /// `scope/selector.param` → (value as gin text, where the original bound it).
    bindings: BTreeMap<String, (String, String)>,
    /// The fields of `TrainConfig.loss`.
    loss: BTreeMap<&'static str, String>,
    /// The trainer's schedule fields (`create_learning_rate_scheduler`).
    schedule: BTreeMap<String, Value>,
    /// Groups that set their own learning rate.
    own_learning_rate: BTreeSet<String>,
    /// The groups MultiOptimizer trains (None: one optimizer for everything).
    trained_groups: Option<BTreeSet<String>>,
    /// The module path of the binding being translated (`t5x.adafactor.Adafactor`).
    selector: String,
    /// Bindings of hint's own configurables, applied after everything translated so that
    /// they win (t5x's last-binding-wins: they are the user's additions).
    passthrough: Vec<(String, String, String)>,
    /// The infer_eval dataset is evaluated (`train.infer_eval_dataset_cfg` not None).
    infer_eval: Option<bool>,
    /// The train_eval dataset is evaluated.
    train_eval: bool,
    /// The evaluate script's dataset is evaluated.
    evaluate: bool,
    /// `(scope, param)` of every DatasetConfig binding.
    datasets: BTreeMap<(String, String), Value>,
    /// An initial checkpoint is restored.
    restores: bool,
    relative_steps: bool,
    /// The binding being translated (for [`Translation::set`]).
    current: String,
    /// Scope of the binding being translated.
    scope: String,
    /// Parameter of the binding being translated.
    param: String,
    /// What was reported rather than applied.
    pub warnings: Vec<Warning>,
}

impl Translation {
    fn set(&mut self, target: &str, value: impl fmt::Display) {
        self.bindings.insert(
            target.to_string(),
            (value.to_string(), self.current.clone()),
        );
    }

    fn set_in_scope(&mut self, target: &str, value: impl fmt::Display) {
        if self.scope == "roberta" {
            self.warn(ROBERTA_EMPTY);
            return;
        }
        let key = if self.scope.is_empty() {
            target.to_string()
        } else {
            format!("{}/{target}", self.scope)
        };
        self.set(&key, value);
    }

    fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(Warning {
            binding: self.current.clone(),
            at: None,
            message: message.into(),
        });
    }

    /// The translated configuration as gin text, each binding commented with the
    /// original binding it comes from.
    pub fn gin(&self) -> String {
        let mut out = String::from(
            "# Translated from the original HINT's gin configuration (hint_train::original_gin).\n",
        );
        for (target, (value, origin)) in &self.bindings {
            out.push_str(&format!("{target} = {value}  # {origin}\n"));
        }
        out
    }

    fn finish(mut self) -> Result<Self> {
        // The model's switches that only work together, named where the original bound them.
        let bound = |target: &str| self.bindings.get(target).cloned();
        if let Some((per_layer, origin)) = bound("hint.model.HyperConfig.per_layer_hnet") {
            let method = bound("hint.model.HyperConfig.layer_embedding_method");
            let per_slot = method
                .as_ref()
                .is_some_and(|(m, _)| m == "'layer'" || m == "'concat'");
            if per_layer == "True" && per_slot {
                return Err(TrainError::invalid(
                    origin,
                    format!(
                        "per_layer_hnet = True does not go with layer_embedding_method = {}, whose generators already read one vector per layer",
                        method.map_or_else(String::new, |(m, _)| m)
                    ),
                ));
            }
        }
        if !self.loss.is_empty() {
            let fields: Vec<String> = self
                .loss
                .iter()
                .map(|(k, v)| format!("'{k}': {v}"))
                .collect();
            self.current = "the model's loss settings".into();
            self.set(
                "hint.train.TrainConfig.loss",
                format!("{{{}}}", fields.join(", ")),
            );
        }
        let groups = ["hyper", "t5"];
        if let Some(trained) = self.trained_groups.clone() {
            for &group in &groups {
                if !trained.contains(group) {
                    self.current = "MultiOptimizer.traversals_and_optimizers".into();
                    self.set(
                        &format!("{group}/hint.optim.Adafactor.learning_rate"),
                        "0.0",
                    );
                    self.own_learning_rate.insert(group.into());
                }
            }
        }
        if !self.schedule.is_empty() {
            self.current = "create_learning_rate_scheduler".into();
            let only_constant = self
                .schedule
                .get("factors")
                // t5x's default factors are 'constant * linear_warmup * rsqrt_decay'.
                .is_some_and(|f| matches!(f, Value::Str(s) if s.trim() == "constant"));
            let base = self
                .schedule
                .get("base_learning_rate")
                .cloned()
                .unwrap_or(Value::Float(0.5));
            for &group in &groups {
                if self.own_learning_rate.contains(group) {
                    continue;
                }
                if only_constant {
                    self.set(
                        &format!("{group}/hint.optim.Adafactor.learning_rate"),
                        &base,
                    );
                } else {
                    let fields: Vec<String> = self
                        .schedule
                        .iter()
                        .map(|(k, v)| format!("'{k}': {v}"))
                        .collect();
                    self.set(
                        &format!("{group}/hint.optim.Adafactor.learning_rate_schedule"),
                        format!("{{{}}}", fields.join(", ")),
                    );
                }
            }
        }
        let restores = self.restores
            || self.passthrough.iter().any(|(target, value, _)| {
                target.ends_with("Run.initial_checkpoint") && value != "''" && value != "\"\""
            });
        if restores && self.evaluate && !self.bindings.contains_key("hint.train.Run.assignment_map")
        {
            // t5x's evaluation restores every variable (assignment_map None, strict): so
            // must this one, rather than score a fresh hypernetwork.
            self.current = "RestoreCheckpointConfig.assignment_map (None, evaluate)".into();
            self.set("hint.train.Run.assignment_map", "[('(.*)', '$1')]");
        }
        if !restores {
            // t5x applies the map and the fallback only when it restores a checkpoint.
            for field in [
                "assignment_map",
                "assignment_map_naming",
                "fallback_to_scratch",
            ] {
                if let Some((_, origin)) = self.bindings.remove(&format!("hint.train.Run.{field}"))
                {
                    self.current = origin;
                    self.warn("no checkpoint is restored (RestoreCheckpointConfig.path is empty), so it does not apply");
                }
            }
        }
        let mut eval_sets = Vec::new();
        for (label, scope, wanted) in [
            ("infer_eval", "infer_eval", self.infer_eval.unwrap_or(false)),
            ("eval", "", self.evaluate),
        ] {
            if !wanted {
                continue;
            }
            let field = |param: &str| match self.datasets.get(&(scope.to_string(), param.into())) {
                Some(Value::Str(s)) => Some(s.clone()),
                _ => None,
            };
            if let Some(mixture) = field("mixture_or_task_name") {
                let split = field("split").unwrap_or_else(|| "validation".into());
                eval_sets.push(format!(
                    "({}, {}, {})",
                    Value::Str(label.into()),
                    Value::Str(mixture),
                    Value::Str(split)
                ));
            }
        }
        if self.infer_eval.is_some() || self.evaluate {
            self.current = "the train or evaluate script's datasets".into();
            self.set(
                "hint.train.Run.eval_sets",
                format!("[{}]", eval_sets.join(", ")),
            );
        }
        if self.train_eval {
            self.current = "train.train_eval_dataset_cfg".into();
            self.warn("hint evaluates by inference (infer_eval); the teacher-forced loss evaluation is not run");
        }
        if restores && !self.relative_steps && !self.evaluate {
            self.current = "train.total_steps".into();
            self.warn("t5x counts TRAIN_STEPS from the start of pre-training, including the restored checkpoint's steps; hint starts a Hugging Face checkpoint at step 0 and trains TRAIN_STEPS steps (bind TRAIN_STEPS_RELATIVE or hint.train.TrainConfig.steps to the fine-tuning steps)");
        }
        for (target, value, origin) in std::mem::take(&mut self.passthrough) {
            self.bindings.insert(target, (value, origin));
        }
        Ok(self)
    }
}

/// Whether `config` binds configurables of the original or of t5x: names `registry`
/// (hint's) does not know and [`TABLE`] does.
pub fn is_original(config: &Config, registry: &Registry) -> bool {
    config.bindings().iter().any(|entry| {
        !entry.selector.starts_with("gin.")
            && registry.lookup(&entry.selector, None).is_err()
            && find_row(entry).is_some()
    })
}

/// Translates every binding of `config` (parsed without a registry) into hint's
/// configurables through [`TABLE`]; bindings `registry` knows pass through.
///
/// # Errors
/// [`TrainError::InvalidSetting`] naming the first binding that has no counterpart (or an
/// unsupported value), with where it was bound.
pub fn translate(config: &Config, registry: &Registry) -> Result<Translation> {
    let mut out = Translation::default();
    let entries = config.resolved_bindings()?;
    if entries
        .iter()
        .any(|entry| configurable(&entry.selector) == "HyperT5Config")
    {
        out.current = "the original's default (hyper_network.HyperT5Config)".into();
        for (target, value) in MODEL_DEFAULTS {
            out.set(target, value);
        }
    }
    if entries
        .iter()
        .any(|entry| configurable(&entry.selector).ends_with("Model"))
    {
        // t5x's EncoderDecoderModel: no z-loss, no smoothing, the plain sum.
        for (field, value) in [
            ("z_loss", "0.0"),
            ("label_smoothing", "0.0"),
            ("normalization", "'Sum'"),
        ] {
            out.loss.insert(field, value.into());
        }
    }
    for entry in entries {
        let at = config
            .binding(&entry.scope, &entry.selector, &entry.param)
            .map(|bound| bound.location.clone());
        let name = binding_name(&entry);
        out.current = match &at {
            Some(at) => format!("{name} ({at})"),
            None => name.clone(),
        };
        out.scope = entry.scope.clone();
        out.param = entry.param.clone();
        out.selector = entry.selector.clone();
        let error = |message: String| TrainError::InvalidSetting {
            binding: name.clone(),
            at: at.clone(),
            message,
        };
        if entry.selector.starts_with("gin.") {
            continue;
        }
        if let Ok(known) = registry.lookup(&entry.selector, None) {
            // The complete selector, so that it replaces a translated binding of the field.
            let target = if entry.scope.is_empty() {
                format!("{}.{}", known.selector, entry.param)
            } else {
                format!("{}/{}.{}", entry.scope, known.selector, entry.param)
            };
            let value = entry.value.to_string();
            out.passthrough.push((target, value, out.current.clone()));
            continue;
        }
        let Some(row) = find_row(&entry) else {
            return Err(error(
                "has no counterpart in hint (see the translation table, README: \"Running the original's gin files\")".into(),
            ));
        };
        if configurable(&entry.selector) == "DatasetConfig" {
            out.datasets.insert(
                (entry.scope.clone(), entry.param.clone()),
                entry.value.clone(),
            );
        }
        match row.becomes {
            // Only the optimizer's rows keep their scope (the groups `hyper` and `t5`).
            Same(target) if target.starts_with("hint.optim.") => {
                out.set_in_scope(target, &entry.value)
            }
            Same(target) => out.set(target, &entry.value),
            Converted(_, convert) => convert(&entry.value, &mut out).map_err(error)?,
            Followed => {}
            Warned(why) => {
                let warning = Warning {
                    binding: name.clone(),
                    at: at.clone(),
                    message: why.into(),
                };
                out.warnings.push(warning);
            }
            OnlyDefault(default, why) => {
                let default = hint_config::parse_value(default)
                    .expect("the table's defaults are valid gin values");
                if !same_value(&entry.value, &default) {
                    return Err(error(format!("{} is not supported: {why}", entry.value)));
                }
            }
            Unsupported(why) => return Err(error(format!("is not supported: {why}"))),
        }
    }
    out.finish()
}

/// Whether `selector` names a configurable of the original or t5x that [`TABLE`] maps.
pub fn knows(selector: &str) -> bool {
    let name = configurable(selector);
    TABLE.iter().any(|row| row.names(name))
}

impl Row {
    /// Whether the row is about the configurable called `name` (its last name part).
    fn names(&self, name: &str) -> bool {
        let (configurable, _) = self.original.split_once('.').expect("Configurable.param");
        match configurable.strip_prefix('*') {
            Some(suffix) => name.ends_with(suffix),
            None => name == configurable,
        }
    }

    fn param(&self) -> &'static str {
        self.original.split_once('.').expect("Configurable.param").1
    }
}

fn binding_name(entry: &BindingEntry) -> String {
    if entry.scope.is_empty() {
        format!("{}.{}", entry.selector, entry.param)
    } else {
        format!("{}/{}.{}", entry.scope, entry.selector, entry.param)
    }
}

/// The configurable's own name: the last dot-separated part of the selector.
fn configurable(selector: &str) -> &str {
    selector.rsplit('.').next().unwrap_or(selector)
}

fn find_row(entry: &BindingEntry) -> Option<&'static Row> {
    let name = configurable(&entry.selector);
    TABLE.iter().find(|row| {
        row.names(name)
            && (row.param() == "*" || row.param() == entry.param)
            && (row.scopes.is_empty() || row.scopes.contains(&entry.scope.as_str()))
    })
}

/// gin values compare as Python's `==` would for the table's defaults: a tuple equals a
/// list of the same items, an int equals the same float.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Tuple(x) | Value::List(x), Value::Tuple(y) | Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b))
        }
        (Value::Int(i), Value::Float(f)) | (Value::Float(f), Value::Int(i)) => *i as f64 == *f,
        _ => a == b,
    }
}

fn str_of(value: &Value) -> std::result::Result<&str, String> {
    match value {
        Value::Str(s) => Ok(s),
        other => Err(format!("expected a string, found {other}")),
    }
}

fn dtype(value: &Value, out: &mut Translation) -> std::result::Result<(), String> {
    choice(
        value,
        out,
        "hint.train.TrainConfig.compute_dtype",
        &["bfloat16", "float32"],
        "hint computes in float32 or bfloat16",
    )
}

/// A string among `allowed`, bound to `target` as it is.
fn choice(
    value: &Value,
    out: &mut Translation,
    target: &str,
    allowed: &[&str],
    why: &str,
) -> std::result::Result<(), String> {
    let chosen = str_of(value)?;
    if !allowed.contains(&chosen) {
        return Err(format!("'{chosen}': {why}"));
    }
    out.set(target, Value::Str(chosen.into()));
    Ok(())
}

/// `None` (bound to `target` as `none`, or left to hint's default) or an integer of at least
/// `min`.
fn count_or_none(
    value: &Value,
    out: &mut Translation,
    target: &str,
    none: Option<i64>,
    min: i64,
) -> std::result::Result<(), String> {
    match value {
        Value::None => {
            if let Some(none) = none {
                out.set(target, none);
            }
        }
        Value::Int(n) if *n >= min => out.set(target, n),
        other => {
            return Err(format!(
                "expected None or an integer of at least {min}, found {other}"
            ))
        }
    }
    Ok(())
}

fn mlp_activations(value: &Value, out: &mut Translation) -> std::result::Result<(), String> {
    let names: Vec<&str> = match value {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(str_of)
            .collect::<std::result::Result<_, _>>()?,
        other => {
            return Err(format!(
                "expected a tuple of activation names, found {other}"
            ))
        }
    };
    let proj = match names.as_slice() {
        ["gelu", "linear"] => "gated-gelu",
        ["silu" | "swish", "linear"] => "gated-silu",
        ["relu"] => "relu",
        _ => {
            return Err(format!(
                "{value}: hint's T5 feed-forward is ('gelu', 'linear'), ('silu', 'linear') or ('relu',)"
            ))
        }
    };
    out.set(
        "hint.model.T5Config.feed_forward_proj",
        Value::Str(proj.into()),
    );
    Ok(())
}

fn layer_embedding_method(value: &Value, out: &mut Translation) -> std::result::Result<(), String> {
    choice(
        value,
        out,
        "hint.model.HyperConfig.layer_embedding_method",
        &["component", "decoder", "none", "layer", "concat"],
        "not a design of the original's working code: 'component' (HINT), 'decoder' (HyperTune), 'none' (Hypter), 'layer' and 'concat' (ablations); 'decoder_test' is rejected by the original too",
    )
}

fn contrastive_model(_: &Value, out: &mut Translation) -> std::result::Result<(), String> {
    out.set("hint.train.TrainConfig.contrastive_metric", "True");
    Ok(())
}

fn number(value: &Value) -> std::result::Result<String, String> {
    match value {
        Value::Int(i) => Ok(format!("{}", *i as f64)),
        Value::Float(_) => Ok(value.to_string()),
        other => Err(format!("expected a number, found {other}")),
    }
}

fn z_loss(value: &Value, out: &mut Translation) -> std::result::Result<(), String> {
    out.loss.insert("z_loss", number(value)?);
    Ok(())
}

fn label_smoothing(value: &Value, out: &mut Translation) -> std::result::Result<(), String> {
    out.loss.insert("label_smoothing", number(value)?);
    Ok(())
}

fn loss_normalizing_factor(
    value: &Value,
    out: &mut Translation,
) -> std::result::Result<(), String> {
    let normalization = match value {
        Value::None => "'Sum'".to_string(),
        Value::Int(_) | Value::Float(_) => format!("{{'Constant': {}}}", number(value)?),
        Value::Str(s) if s == "NUM_REAL_TARGET_TOKENS" => "'NumRealTargetTokens'".into(),
        other => {
            return Err(format!(
                "{other}: hint normalises the summed loss by nothing, a constant or the number of real target tokens"
            ))
        }
    };
    out.loss.insert("normalization", normalization);
    Ok(())
}

fn group_learning_rate(value: &Value, out: &mut Translation) -> std::result::Result<(), String> {
    // t5x's MultiOptimizer hands every group the trainer's learning rate; only the
    // original's learning_rate_adafactor keeps its own (why the original wrote it).
    if !out.selector.ends_with("learning_rate_adafactor.Adafactor") {
        out.warn("t5x's adafactor.Adafactor takes the trainer's learning rate (create_learning_rate_scheduler) and ignores its own");
        return Ok(());
    }
    out.set_in_scope("hint.optim.Adafactor.learning_rate", number(value)?);
    if out.scope == "roberta" {
        return Ok(());
    }
    let groups: Vec<String> = if out.scope.is_empty() {
        ["hyper", "t5"].map(String::from).to_vec()
    } else {
        vec![out.scope.clone()]
    };
    out.own_learning_rate.extend(groups);
    Ok(())
}

fn multi_optimizer(value: &Value, out: &mut Translation) -> std::result::Result<(), String> {
    let (Value::Tuple(pairs) | Value::List(pairs)) = value else {
        return Err(format!(
            "expected ((traversal, optimizer), …), found {value}"
        ));
    };
    let mut trained = BTreeSet::new();
    for pair in pairs {
        let (Value::Tuple(items) | Value::List(items)) = pair else {
            return Err(format!(
                "expected a (traversal, optimizer) pair, found {pair}"
            ));
        };
        let [Value::Ref(traversal), Value::Ref(optimizer)] = items.as_slice() else {
            return Err(format!(
                "expected a (traversal, optimizer) pair, found {pair}"
            ));
        };
        if configurable(&optimizer.selector) != "Adafactor" {
            return Err(format!(
                "{}: hint's two-group optimizer translates Adafactor groups (for AdamW see configs/optim/adamw_dual.gin)",
                optimizer.selector
            ));
        }
        let scope = &traversal.scope;
        if scope != &optimizer.scope || !["hyper", "roberta", "t5"].contains(&scope.as_str()) {
            return Err(format!("group `{scope}`: {HYPER_GROUP_WHY}"));
        }
        if scope == "roberta" {
            out.warn(ROBERTA_EMPTY);
        } else {
            trained.insert(scope.clone());
        }
    }
    out.trained_groups = Some(trained);
    Ok(())
}

fn hyper_regexes(value: &Value, out: &mut Translation) -> std::result::Result<(), String> {
    let regexes: Vec<&str> = match value {
        Value::List(items) | Value::Tuple(items) => items
            .iter()
            .map(|item| match item {
                Value::Str(s) => Some(s.as_str()),
                _ => None,
            })
            .collect::<Option<_>>()
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let all =
        |accepted: &[&str]| !regexes.is_empty() && regexes.iter().all(|r| accepted.contains(r));
    let whole_hypernetwork = [".*hyper.*", ".*/hyper.*"];
    match out.scope.as_str() {
        "hyper" | "t5" if all(&whole_hypernetwork) => Ok(()),
        // At the original's commit this is the whole hypernetwork (see ROBERTA_EMPTY).
        "hyper" if all(&[".*/hyper/[^e].*"]) => Ok(()),
        "roberta" if all(&[".*/hyper/e.*"]) => {
            out.warn(ROBERTA_EMPTY);
            Ok(())
        }
        _ => Err(format!("{value}: {HYPER_GROUP_WHY}")),
    }
}

fn schedule_field(value: &Value, out: &mut Translation) -> std::result::Result<(), String> {
    if !out.scope.is_empty() {
        return Err(format!(
            "a schedule in scope `{}` belongs to an optax group: see configs/optim/adamw_dual.gin",
            out.scope
        ));
    }
    out.schedule.insert(out.param.clone(), value.clone());
    Ok(())
}

/// Recorded for [`Translation::finish`] with every DatasetConfig binding.
fn dataset_field(_: &Value, _: &mut Translation) -> std::result::Result<(), String> {
    Ok(())
}

fn microbatches(value: &Value, out: &mut Translation) -> std::result::Result<(), String> {
    count_or_none(
        value,
        out,
        "hint.train.TrainConfig.microbatches",
        Some(1),
        1,
    )
}

fn train_eval_dataset(value: &Value, out: &mut Translation) -> std::result::Result<(), String> {
    out.train_eval = !matches!(value, Value::None);
    Ok(())
}

fn infer_eval_dataset(value: &Value, out: &mut Translation) -> std::result::Result<(), String> {
    out.infer_eval = Some(!matches!(value, Value::None));
    Ok(())
}

fn evaluate_dataset(value: &Value, out: &mut Translation) -> std::result::Result<(), String> {
    if !matches!(value, Value::None) {
        out.evaluate = true;
        out.set("hint.train.TrainConfig.steps", 0);
    }
    Ok(())
}

fn total_steps(value: &Value, out: &mut Translation) -> std::result::Result<(), String> {
    if out.relative_steps {
        return Ok(());
    }
    count_or_none(value, out, "hint.train.TrainConfig.steps", None, 0)
}

fn relative_steps(value: &Value, out: &mut Translation) -> std::result::Result<(), String> {
    out.relative_steps = !matches!(value, Value::None);
    count_or_none(value, out, "hint.train.TrainConfig.steps", None, 0)
}

fn random_seed(value: &Value, out: &mut Translation) -> std::result::Result<(), String> {
    count_or_none(value, out, "hint.train.TrainConfig.seed", None, i64::MIN)
}

fn feature_lengths(value: &Value, out: &mut Translation) -> std::result::Result<(), String> {
    let Value::Dict(items) = value else {
        return Err(format!(
            "expected {{'inputs': …, 'hyper_inputs': …, 'targets': …}}, found {value}"
        ));
    };
    let length = |key: &str| {
        items.iter().find_map(|(k, v)| match (k, v) {
            (Value::Str(k), Value::Int(n)) if k == key => Some(*n),
            _ => None,
        })
    };
    let (Some(inputs), Some(targets)) = (length("inputs"), length("targets")) else {
        return Err(format!("{value}: needs 'inputs' and 'targets' lengths"));
    };
    // Without a hypernetwork input (a concatenation run) the instruction length is moot;
    // the input length keeps every length valid.
    let hyper_inputs = length("hyper_inputs").unwrap_or(inputs);
    out.set(
        "hint.train.Run.lengths",
        format!("({inputs}, {hyper_inputs}, {targets})"),
    );
    Ok(())
}

fn pack(value: &Value, out: &mut Translation) -> std::result::Result<(), String> {
    if matches!(value, Value::Bool(true)) {
        out.warn("hint does not pack examples (the original turns packing off for the hypernetwork in gins/t0.gin)");
    }
    Ok(())
}

fn keep_checkpoints(value: &Value, out: &mut Translation) -> std::result::Result<(), String> {
    // "Keep all": more checkpoints than any run writes.
    count_or_none(
        value,
        out,
        "hint.train.TrainConfig.keep_checkpoints",
        Some(1_000_000),
        1,
    )
}

fn restore_path(value: &Value, out: &mut Translation) -> std::result::Result<(), String> {
    match value {
        Value::None => {}
        Value::List(items) | Value::Tuple(items) if items.is_empty() => {}
        Value::Str(path) => {
            out.restores = true;
            out.set(
                "hint.train.Run.initial_checkpoint",
                Value::Str(path.clone()),
            );
        }
        other => return Err(format!("expected a checkpoint directory, found {other}")),
    }
    Ok(())
}

/// The original's maps are written over t5x's flattened names
/// (`target/encoder/layers_0/…`); hint applies them to its variables and the checkpoint's
/// tensors spelled the same way (`Run.assignment_map_naming = "t5x"`). Rules about
/// optimizer state (`param_states`) have nothing to match: Hugging Face checkpoints carry
/// none and hint's optimizer starts fresh.
fn assignment_map(value: &Value, out: &mut Translation) -> std::result::Result<(), String> {
    let rules = match value {
        // t5x: restore every variable from the checkpoint, by its own name.
        Value::None => {
            out.set("hint.train.Run.assignment_map", "[('(.*)', '$1')]");
            return Ok(());
        }
        Value::Tuple(rules) | Value::List(rules) => rules,
        other => {
            return Err(format!(
                "expected ((pattern, replacement), …), found {other}"
            ))
        }
    };
    let mut kept = Vec::new();
    for rule in rules {
        let (Value::Tuple(pair) | Value::List(pair)) = rule else {
            return Err(format!(
                "expected a (pattern, replacement) pair, found {rule}"
            ));
        };
        match pair.as_slice() {
            [Value::Str(pattern), _] if pattern.contains("param_states") => {
                out.warn(format!(
                    "rule ({pattern:?}, …) is about restored optimizer state; a Hugging Face checkpoint has none and hint's optimizer starts fresh"
                ));
            }
            [Value::Str(_), Value::None | Value::Str(_)] => kept.push(rule.to_string()),
            _ => {
                return Err(format!(
                    "expected a (pattern, replacement or None) pair, found {rule}"
                ))
            }
        }
    }
    if !kept.is_empty() {
        out.set(
            "hint.train.Run.assignment_map",
            format!("[{}]", kept.join(", ")),
        );
        out.set("hint.train.Run.assignment_map_naming", "'t5x'");
    }
    Ok(())
}

fn fallback_to_scratch(value: &Value, out: &mut Translation) -> std::result::Result<(), String> {
    match value {
        Value::Bool(b) => out.set(
            "hint.train.Run.fallback_to_scratch",
            if *b { "True" } else { "False" },
        ),
        other => return Err(format!("expected True or False, found {other}")),
    }
    Ok(())
}

fn eval_examples(value: &Value, out: &mut Translation) -> std::result::Result<(), String> {
    count_or_none(
        value,
        out,
        "hint.train.Run.eval_examples_per_task",
        Some(0),
        0,
    )
}

/// The translation table as the README prints it (one row per line, `|`-separated).
pub fn table_markdown() -> String {
    let mut out = String::from("| the original's binding | scopes | in hint |\n|---|---|---|\n");
    for row in TABLE {
        let scopes = if row.scopes.is_empty() {
            "any".to_string()
        } else {
            row.scopes
                .iter()
                .map(|s| if s.is_empty() { "(none)" } else { s })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let becomes = match row.becomes {
            Same(target) => format!("`{target}`"),
            Converted(what, _) => what.to_string(),
            Followed => "read through (what it names is translated)".into(),
            Warned(why) => format!("warning: {why}"),
            OnlyDefault(default, why) => format!("only `{default}`, else an error: {why}"),
            Unsupported(why) => format!("error: {why}"),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            row.original,
            scopes,
            becomes.replace('|', "\\|")
        ));
    }
    out
}
