//! Analytic forward FLOPs of HINT and of the concatenation baseline (`hint.md` §16), and
//! parameter counts. A FLOP is one multiply or one add: a matrix product of `[m, k]` by
//! `[k, n]` costs `2·m·k·n`. Norms, softmax, activations and biases are left out (they are
//! linear in the sequence length and small next to the products); IA3's rescaling, being
//! all that module costs, is counted (one multiply per element).

use serde::Serialize;

use crate::t5::config::T5Config;

use super::config::{HyperConfig, LayerEmbedding};
use super::decoder::hyper_decoder_parameters;
use super::layout::Layout;

/// Lengths of one inference workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Workload {
    /// Instruction tokens `L_I`.
    pub instruction_len: i64,
    /// Input tokens per instance `L_x`.
    pub input_len: i64,
    /// Generated tokens per instance `L_y` (decoding with a key/value cache).
    pub output_len: i64,
    /// Instances per task `N` over which the per-task cost is shared.
    pub instances_per_task: i64,
}

/// Forward FLOPs of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FlopsReport {
    /// HINT, once per task: instruction encoder, hyper-attention, generators, and under
    /// fusion the cross-attention keys/values of the encoded instruction.
    pub hint_per_task: f64,
    /// HINT, per instance: encoder over the input, decoder (cross-attending the
    /// instruction too under fusion).
    pub hint_per_instance: f64,
    /// HINT per instance with the per-task part shared by `N` instances.
    pub hint_amortised: f64,
    /// The baseline that concatenates the instruction to every input.
    pub concat_per_instance: f64,
    /// Parameters of the hypernetwork (the shared encoder not counted).
    pub hypernetwork_parameters: i64,
}

fn matmul(m: i64, k: i64, n: i64) -> f64 {
    2.0 * m as f64 * k as f64 * n as f64
}

/// Per-token cost of a feed-forward sublayer, with the adapter when present.
fn feed_forward(c: &T5Config, adapter: i64, tokens: i64) -> f64 {
    let inputs = if c.feed_forward_proj.is_gated() { 2 } else { 1 };
    inputs as f64 * matmul(tokens, c.d_model, c.d_ff)
        + matmul(tokens, c.d_ff, c.d_model)
        + 2.0 * matmul(tokens, c.d_model, adapter)
}

/// LoRA cost on `tokens` rows for projection `i` (q, k, v, o).
fn lora(c: &T5Config, h: &HyperConfig, i: usize, tokens: i64) -> f64 {
    match (h.use_lora, h.lora_ranks[i]) {
        (true, Some(r)) => {
            let (input, output) = if i == 3 {
                (c.inner_dim(), c.d_model)
            } else {
                (c.d_model, c.inner_dim())
            };
            matmul(tokens, input, r) + matmul(tokens, r, output)
        }
        _ => 0.0,
    }
}

/// IA3's rescaling on `tokens` rows of a layer: keys and values (`attention`), and the
/// feed-forward's inner activations (`feed_forward`).
fn ia3(c: &T5Config, h: &HyperConfig, tokens: i64, attention: bool, feed_forward: bool) -> f64 {
    if !h.use_ia3 {
        return 0.0;
    }
    let width =
        if attention { 2 * c.inner_dim() } else { 0 } + if feed_forward { c.d_ff } else { 0 };
    (tokens * width) as f64
}

/// The encoder over `tokens` tokens; `adapted` adds the generated modules.
fn encoder(c: &T5Config, h: &HyperConfig, tokens: i64, adapted: bool) -> f64 {
    let inner = c.inner_dim();
    let (prefix, adapter) = if adapted {
        (
            if h.use_prefix { h.num_prefix_tokens } else { 0 },
            if h.use_adapter { h.adapter_size } else { 0 },
        )
    } else {
        (0, 0)
    };
    let lora_cost: f64 = if adapted {
        (0..4).map(|i| lora(c, h, i, tokens)).sum::<f64>() + ia3(c, h, tokens, true, true)
    } else {
        0.0
    };
    let per_layer = 4.0 * matmul(tokens, c.d_model, inner)
        + 2.0 * matmul(tokens, inner, tokens + prefix)
        + feed_forward(c, adapter, tokens)
        + lora_cost;
    c.num_layers as f64 * per_layer
}

/// Cached decoding of `steps` tokens against `memory` encoder positions, of which
/// `projected` have their cross-attention keys/values projected per sequence (the others,
/// HINT's fused instruction, once per task: [`cross_key_values`]).
fn decoder(
    c: &T5Config,
    h: &HyperConfig,
    memory: i64,
    projected: i64,
    steps: i64,
    adapted: bool,
) -> f64 {
    let (d, inner) = (c.d_model, c.inner_dim());
    let (prefix, adapter) = if adapted {
        (
            if h.use_prefix { h.num_prefix_tokens } else { 0 },
            if h.use_adapter { h.adapter_size } else { 0 },
        )
    } else {
        (0, 0)
    };
    let mut per_layer = 0.0;
    for t in 1..=steps {
        per_layer += 4.0 * matmul(1, d, inner) // self q, k, v, o
            + 2.0 * matmul(1, inner, t + prefix) // self scores and context
            + 2.0 * matmul(1, d, inner) // cross q, o
            + 2.0 * matmul(1, inner, memory + prefix) // cross scores and context
            + feed_forward(c, adapter, 1);
        if adapted {
            per_layer += (0..4).map(|i| lora(c, h, i, 1)).sum::<f64>()
                + lora(c, h, 0, 1)
                + lora(c, h, 3, 1)
                + ia3(c, h, 1, true, true);
        }
    }
    c.decoder_layers() as f64 * per_layer
        + cross_key_values(c, h, projected, adapted)
        + steps as f64 * matmul(1, d, c.vocab_size)
}

/// Cross-attention keys and values of `tokens` encoder positions in every decoder layer,
/// projected once and cached.
fn cross_key_values(c: &T5Config, h: &HyperConfig, tokens: i64, adapted: bool) -> f64 {
    let mut per_layer = 2.0 * matmul(tokens, c.d_model, c.inner_dim());
    if adapted {
        per_layer += lora(c, h, 1, tokens) + lora(c, h, 2, tokens) + ia3(c, h, tokens, true, false);
    }
    c.decoder_layers() as f64 * per_layer
}

/// Parameters of one encoder stack (blocks and final norm, without the shared embedding).
pub fn encoder_parameters(c: &T5Config) -> i64 {
    let inputs = if c.feed_forward_proj.is_gated() { 2 } else { 1 };
    let block = 4 * c.d_model * c.inner_dim() + (inputs + 1) * c.d_model * c.d_ff + 2 * c.d_model;
    c.num_layers * block + c.relative_attention_num_buckets * c.num_heads + c.d_model
}

/// Parameters of the hypernetwork for a configuration (component embedding,
/// hyper-attention, generators and their norms, prefix gate, the fused instruction's
/// linear map), without a separate instruction encoder.
pub fn hypernetwork_parameters(c: &T5Config, h: &HyperConfig) -> i64 {
    let instruction_linear = if h.has_instruction_linear() {
        c.d_model * c.d_model
    } else {
        0
    };
    if !h.has_hypernetwork() {
        return instruction_linear;
    }
    let layout = Layout::new(c, h);
    let d = c.d_model;
    let method = h.layer_embedding_method;
    let reader = if h.attends_over_instruction() {
        4 * d * c.inner_dim()
    } else if h.use_instructions && method == LayerEmbedding::Decoder {
        hyper_decoder_parameters(c)
    } else {
        0
    };
    let input_width = h.generator_input_width(d);
    let norm = if h.normalises_generator_inputs() {
        input_width
    } else {
        0
    };
    let generators: i64 = layout
        .kinds()
        .iter()
        .map(|kind| {
            let out = kind.output_dim(c, h) * layout.emitted_per_input(*kind);
            kind.activations(h).len() as i64 * input_width * d + d * out + norm
        })
        .sum();
    let gate = if h.use_prefix && h.zero_init_generated {
        layout.slots
    } else {
        0
    };
    let embeddings = layout.embedding_rows() * d;
    embeddings + reader + generators + gate + instruction_linear
}

/// HINT's and the concatenation baseline's forward FLOPs for a workload.
///
/// ```
/// use hint_model::{flops::{inference_flops, Workload}, HyperConfig, T5Config};
/// let t5 = T5Config::preset("small").unwrap();
/// let hint = HyperConfig::preset("small").unwrap();
/// let w = Workload { instruction_len: 256, input_len: 64, output_len: 16, instances_per_task: 100 };
/// let report = inference_flops(&t5, &hint, &w);
/// assert!(report.concat_per_instance > 2.0 * report.hint_amortised);
/// ```
pub fn inference_flops(c: &T5Config, h: &HyperConfig, w: &Workload) -> FlopsReport {
    let d = c.d_model;
    let inner = c.inner_dim();
    let layout = Layout::new(c, h);
    let mut per_task = 0.0;
    if h.uses_instruction() {
        per_task += encoder(c, h, w.instruction_len, false);
    }
    if h.has_hypernetwork() {
        let rows = layout.embedding_rows();
        // One cross-attention of the embedding rows over the instruction.
        let attention = matmul(rows, d, inner) // queries
            + 2.0 * matmul(w.instruction_len, d, inner) // keys, values
            + 2.0 * matmul(rows, inner, w.instruction_len) // scores, context
            + matmul(rows, inner, d); // output
        per_task += match (h.use_instructions, h.layer_embedding_method) {
            (true, LayerEmbedding::Component | LayerEmbedding::Layer) => attention,
            // Each hyper-decoder layer: that cross-attention and a feed-forward.
            (true, LayerEmbedding::Decoder) => {
                c.decoder_layers() as f64 * (attention + feed_forward(c, 0, rows))
            }
            // Mean pooling (Hypter, concat) is a sum per instruction token: negligible.
            _ => 0.0,
        };
        let input_width = h.generator_input_width(d);
        per_task += layout
            .kinds()
            .iter()
            .map(|kind| {
                // Each input vector through wi, then all the rows it emits through wo.
                let n = layout.inputs_of(*kind).len() as i64;
                let out = layout.emitted_per_input(*kind) * kind.output_dim(c, h);
                kind.activations(h).len() as f64 * matmul(n, input_width, d) + matmul(n, d, out)
            })
            .sum::<f64>();
    }
    let prompt = if h.use_prompt { h.num_prompt_tokens } else { 0 };
    let fused = if h.use_fusion_in_decoder && h.use_instructions {
        w.instruction_len
    } else {
        0
    };
    if h.has_instruction_linear() {
        per_task += matmul(fused, d, d);
    }
    let adapted = h.has_hypernetwork();
    // The fused instruction is one memory segment shared by the task's instances: its
    // cross-attention keys/values are projected once per task.
    per_task += cross_key_values(c, h, fused, adapted);
    let per_instance = encoder(c, h, w.input_len + prompt, adapted)
        + decoder(
            c,
            h,
            w.input_len + prompt + fused,
            w.input_len + prompt,
            w.output_len,
            adapted,
        );
    let plain = HyperConfig::plain_t5();
    let concat_len = w.instruction_len + w.input_len;
    let concat = encoder(c, &plain, concat_len, false)
        + decoder(c, &plain, concat_len, concat_len, w.output_len, false);
    FlopsReport {
        hint_per_task: per_task,
        hint_per_instance: per_instance,
        hint_amortised: per_instance + per_task / w.instances_per_task.max(1) as f64,
        concat_per_instance: concat,
        hypernetwork_parameters: hypernetwork_parameters(c, h),
    }
}
