//! `HyperConfig`: which modules the hypernetwork generates, and how the instruction is
//! used. The switches carry the reference's gin names (`use_adapter`, `adapter_size`,
//! `use_prefix`, `num_prefix_tokens`, `use_lora`, `lora_ranks`, `use_fusion_in_decoder`, …).

use serde::{Deserialize, Serialize};

/// How the hypernetwork turns the encoded instruction into the vectors its generators read
/// (the reference's `layer_embedding_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerEmbedding {
    /// HINT: one learned embedding per generated component attends over the instruction
    /// (one attention layer, `hyper.hyperattn`).
    #[default]
    Component,
    /// HyperTune (Phang et al. 2022): the component embeddings go through a hyper-decoder,
    /// T5 decoder layers without self-attention that cross-attend to the instruction
    /// (`hyper.hyper_decoder`), and each generator normalises its input.
    Decoder,
    /// Hypter (Ye and Ren 2021), with `per_layer_hnet`: no component embeddings; every
    /// generator reads the mean-pooled instruction and emits all layers' values at once.
    #[serde(rename = "none")]
    Pooled,
    /// The reference's `layer` ablation: one learned embedding per slot (layer and
    /// attention block) attends over the instruction, and each generator emits all of the
    /// slot's components from that one vector.
    Layer,
    /// The reference's `concat` ablation: each generator reads the mean-pooled instruction
    /// concatenated with a learned per-slot embedding (`2·d` wide, no attention) and emits
    /// all of the slot's components.
    Concat,
}

/// The activation names `hypernet_activations` accepts (flax's names, and t5x's `linear`).
pub const GENERATOR_ACTIVATIONS: [&str; 7] =
    ["gelu", "relu", "silu", "swish", "tanh", "sigmoid", "linear"];

impl LayerEmbedding {
    /// The name gin files use (`"component"`, `"decoder"`, `"none"`, `"layer"`, `"concat"`).
    pub fn gin_name(self) -> &'static str {
        match self {
            Self::Component => "component",
            Self::Decoder => "decoder",
            Self::Pooled => "none",
            Self::Layer => "layer",
            Self::Concat => "concat",
        }
    }
}

/// HINT's switches. The default is HINT as in the paper: shared instruction encoder with
/// padding masked, adapters and prefixes, fusion in the decoder, generator dropout 0.
///
/// ```
/// use hint_model::HyperConfig;
/// let plain = HyperConfig::plain_t5();
/// assert!(!plain.has_hypernetwork() && !plain.uses_instruction());
/// let xl = HyperConfig::preset("xl").unwrap();
/// assert_eq!((xl.adapter_size, xl.num_prefix_tokens), (512, 30));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HyperConfig {
    /// Feed the instruction to the hypernetwork; without it the learned component
    /// embeddings alone drive the generators (the reference's "no hypernet input").
    pub use_instructions: bool,
    /// Generate adapters parallel to every feed-forward sublayer.
    pub use_adapter: bool,
    /// Bottleneck width `a` of the adapters.
    pub adapter_size: i64,
    /// Generate prefix keys/values for every attention block.
    pub use_prefix: bool,
    /// Prefix length `P`.
    pub num_prefix_tokens: i64,
    /// Generate LoRA deltas.
    pub use_lora: bool,
    /// LoRA ranks for `(q, k, v, o)`; `None` leaves that projection alone.
    pub lora_ranks: [Option<i64>; 4],
    /// LoRA scale numerator: the delta is multiplied by `lora_alpha / rank`.
    pub lora_alpha: f64,
    /// Generate IA3 rescaling vectors (Liu et al. 2022, placed as PEFT places them on T5):
    /// every attention block's keys and values and every feed-forward's inner activations
    /// (the input of `wo`) are multiplied elementwise by `1 + generated`, so a generator
    /// that outputs zeros leaves T5 unchanged (PEFT starts its vectors at ones). The
    /// reference's `use_ia3` (a low-rank multiplicative kernel, `ia3_ranks`) crashes there
    /// and is not this.
    pub use_ia3: bool,
    /// Generate soft prompt tokens prepended to the encoder input.
    pub use_prompt: bool,
    /// Number of prompt tokens.
    pub num_prompt_tokens: i64,
    /// The decoder cross-attends to `[encoded instruction; encoded input]`.
    pub use_fusion_in_decoder: bool,
    /// The instruction encoder is the T5 encoder itself (else a separate `hyper.hyper_encoder`).
    pub share_hnet_encoder: bool,
    /// Mask instruction padding in the instruction encoder (the reference does not; set
    /// false, with fixed-length padding, to reproduce it).
    pub hyperencoder_mask_padding: bool,
    /// Dropout inside the generator MLPs (paper-era 0.0; the reference's HEAD 0.1).
    pub generator_dropout: f64,
    /// Zero-initialise adapter up-projections, LoRA B and a prefix gate, so that an
    /// untrained HyperT5 computes exactly the plain T5 (prefixes are then attended with
    /// their own softmax and a gate that starts at 0).
    pub zero_init_generated: bool,
    /// tanh instead of GELU in the prefix generators (an ablation of the reference).
    pub use_tanh_prefix: bool,
    /// The generators' hidden activations, as t5x's `MlpBlock` reads them (the reference's
    /// `hypernet_activations`, default `["gelu"]`): one input projection per name (`wi`, or
    /// `wi_0`, `wi_1`, … for several), each through its function, multiplied elementwise —
    /// `["gelu", "linear"]` is a gated GELU. Names: `gelu` (tanh approximation, as flax),
    /// `relu`, `silu` / `swish`, `tanh`, `sigmoid`, `linear`.
    pub hypernet_activations: Vec<String>,
    /// A layer norm (T5's, one scale per generator: `hyper.<generated>_norm`) on the
    /// component vectors before each generator (the reference's `hnet_layernorm`; its
    /// HyperTune design always has it).
    pub hnet_layernorm: bool,
    /// Under fusion, a linear map of the encoded instruction before the decoder reads it,
    /// `dropout(W·h) / √d` (`hyper.instruction_embed`; the reference's `use_linear`, meant
    /// for an instruction encoder whose states do not match the decoder's).
    pub use_linear: bool,
    /// What the generators read: `component` (HINT), `decoder` (HyperTune), `none`
    /// (Hypter, with `per_layer_hnet`), or the reference's ablations `layer` and `concat`.
    pub layer_embedding_method: LayerEmbedding,
    /// Generators emit every layer's values from one input vector (the reference's
    /// `per_layer_hnet`): from the pooled instruction (`none`, Hypter's design, which
    /// needs it), or from one vector per component of a slot instead of one per row
    /// (`component`, `decoder`: HyperTune's `hypertune_embed.gin`).
    pub per_layer_hnet: bool,
}

impl Default for HyperConfig {
    fn default() -> Self {
        Self {
            use_instructions: true,
            use_adapter: true,
            adapter_size: 8,
            use_prefix: true,
            num_prefix_tokens: 7,
            use_lora: false,
            lora_ranks: [None; 4],
            lora_alpha: 1.0,
            use_ia3: false,
            use_prompt: false,
            num_prompt_tokens: 8,
            use_fusion_in_decoder: true,
            share_hnet_encoder: true,
            hyperencoder_mask_padding: true,
            generator_dropout: 0.0,
            zero_init_generated: false,
            use_tanh_prefix: false,
            hypernet_activations: vec!["gelu".into()],
            hnet_layernorm: false,
            use_linear: false,
            layer_embedding_method: LayerEmbedding::Component,
            per_layer_hnet: false,
        }
    }
}

impl HyperConfig {
    /// The adapter and prefix sizes of the reference gins (`hyper_{size}.gin`):
    /// `tiny`, `small`, `base`, `large`, `xl`, `xxl`.
    pub fn preset(size: &str) -> Option<Self> {
        let (adapter_size, num_prefix_tokens) = match size {
            "tiny" => (8, 2),
            "small" | "large" => (8, 7),
            "base" => (64, 30),
            "xl" | "xxl" => (512, 30),
            _ => return None,
        };
        Some(Self {
            adapter_size,
            num_prefix_tokens,
            ..Self::default()
        })
    }

    /// T5 alone: no generated modules, no instruction (the instruction may still be
    /// concatenated to the input by the data pipeline: the Tk-Instruct / T0 baseline).
    pub fn plain_t5() -> Self {
        Self {
            use_instructions: false,
            use_adapter: false,
            use_prefix: false,
            use_lora: false,
            use_ia3: false,
            use_prompt: false,
            use_fusion_in_decoder: false,
            ..Self::default()
        }
    }

    /// Instruction fusion in the decoder without a hypernetwork.
    pub fn fusion_only() -> Self {
        Self {
            use_instructions: true,
            use_fusion_in_decoder: true,
            ..Self::plain_t5()
        }
    }

    /// Whether any module is generated (otherwise the model has no `hyper.` parameters
    /// besides a separate instruction encoder).
    pub fn has_hypernetwork(&self) -> bool {
        self.use_adapter
            || self.use_prefix
            || self.lora_enabled()
            || self.use_ia3
            || self.use_prompt
    }

    /// Checks the switches that only work together.
    ///
    /// # Errors
    /// A message naming the switches, for the caller to attach to the binding.
    pub fn validate(&self) -> Result<(), String> {
        if self.hypernet_activations.is_empty() {
            return Err(
                "hypernet_activations needs at least one activation (default [\"gelu\"])".into(),
            );
        }
        if let Some(unknown) = self
            .hypernet_activations
            .iter()
            .find(|name| !GENERATOR_ACTIVATIONS.contains(&name.as_str()))
        {
            return Err(format!(
                "hypernet_activations: unknown activation {unknown:?} (known: {})",
                GENERATOR_ACTIVATIONS.join(", ")
            ));
        }
        let method = self.layer_embedding_method;
        if method == LayerEmbedding::Pooled && !self.per_layer_hnet {
            return Err("layer_embedding_method = \"none\" needs per_layer_hnet = True (Hypter): generators that read the pooled instruction emit every layer's values".into());
        }
        if matches!(method, LayerEmbedding::Layer | LayerEmbedding::Concat) && self.per_layer_hnet {
            return Err(format!(
                "per_layer_hnet = True does not go with layer_embedding_method = \"{}\", whose generators already read one vector per layer",
                method.gin_name()
            ));
        }
        if self.layer_embedding_method != LayerEmbedding::Component
            && self.has_hypernetwork()
            && !self.use_instructions
        {
            return Err(format!(
                "layer_embedding_method = \"{}\" reads the instruction: use_instructions must be True",
                method.gin_name()
            ));
        }
        Ok(())
    }

    /// Whether the embedding rows read the instruction through HINT's hyper-attention
    /// (`component` and `layer`, when instructions are used).
    pub fn attends_over_instruction(&self) -> bool {
        self.use_instructions
            && matches!(
                self.layer_embedding_method,
                LayerEmbedding::Component | LayerEmbedding::Layer
            )
    }

    /// Width of a generator's input vector: `d_model`, or twice it under `concat` (the
    /// pooled instruction beside the slot's embedding).
    pub fn generator_input_width(&self, d_model: i64) -> i64 {
        if self.layer_embedding_method == LayerEmbedding::Concat {
            2 * d_model
        } else {
            d_model
        }
    }

    /// Whether each generator normalises its input (`hnet_layernorm`; HyperTune always).
    pub fn normalises_generator_inputs(&self) -> bool {
        self.hnet_layernorm || self.layer_embedding_method == LayerEmbedding::Decoder
    }

    /// Whether the fused instruction goes through `hyper.instruction_embed` (`use_linear`
    /// under fusion of an encoded instruction).
    pub fn has_instruction_linear(&self) -> bool {
        self.use_linear && self.use_fusion_in_decoder && self.use_instructions
    }

    /// Whether LoRA is on with at least one rank.
    pub fn lora_enabled(&self) -> bool {
        self.use_lora && self.lora_ranks.iter().any(Option::is_some)
    }

    /// Whether the instruction is encoded at all.
    pub fn uses_instruction(&self) -> bool {
        self.use_instructions && (self.has_hypernetwork() || self.use_fusion_in_decoder)
    }
}
