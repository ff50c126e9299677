//! Every parameter's name and shape for a configuration, computed without building the
//! model: what a memory planner counts for models that would not fit here (T5-XXL has
//! 11B parameters). A test checks it against the variables `HyperT5::new` creates.

use crate::hyper::config::{HyperConfig, LayerEmbedding};
use crate::hyper::layout::Layout;
use crate::t5::config::{FeedForwardProj, T5Config};

/// `(name, shape)` of every parameter `HyperT5::new(vs.root(), t5, hyper)` creates, in the
/// Hugging Face names the model uses, sorted by name.
///
/// ```
/// use hint_model::{parameter_shapes, HyperConfig, T5Config};
/// let t5 = T5Config::preset("small").unwrap();
/// let shapes = parameter_shapes(&t5, &HyperConfig::plain_t5());
/// let count: i64 = shapes.iter().map(|(_, s)| s.iter().product::<i64>()).sum();
/// assert_eq!(count, 76_961_152); // T5-v1.1-small: untied embeddings, gated-GELU
/// ```
pub fn parameter_shapes(t5: &T5Config, hyper: &HyperConfig) -> Vec<(String, Vec<i64>)> {
    let (d, inner) = (t5.d_model, t5.inner_dim());
    let mut out: Vec<(String, Vec<i64>)> = vec![("shared.weight".into(), vec![t5.vocab_size, d])];
    if !t5.tie_word_embeddings {
        out.push(("lm_head.weight".into(), vec![t5.vocab_size, d]));
    }
    stack(&mut out, "encoder", t5, Stack::Encoder);
    stack(&mut out, "decoder", t5, Stack::Decoder);
    if hyper.uses_instruction() && !hyper.share_hnet_encoder {
        stack(&mut out, "hyper.hyper_encoder", t5, Stack::Encoder);
    }
    if hyper.has_instruction_linear() {
        out.push(("hyper.instruction_embed.weight".into(), vec![d, d]));
    }
    if hyper.has_hypernetwork() {
        let layout = Layout::new(t5, hyper);
        let method = hyper.layer_embedding_method;
        if layout.embedding_rows() > 0 {
            out.push((
                "hyper.component_embedding".into(),
                vec![layout.embedding_rows(), d],
            ));
        }
        if hyper.attends_over_instruction() {
            for (name, shape) in [
                ("q", [inner, d]),
                ("k", [inner, d]),
                ("v", [inner, d]),
                ("o", [d, inner]),
            ] {
                out.push((format!("hyper.hyperattn.{name}.weight"), shape.to_vec()));
            }
        }
        if hyper.use_instructions && method == LayerEmbedding::Decoder {
            stack(&mut out, "hyper.hyper_decoder", t5, Stack::HyperDecoder);
        }
        let input_width = hyper.generator_input_width(d);
        let normalised = hyper.normalises_generator_inputs();
        for kind in layout.kinds() {
            let name = kind.name();
            let projections = kind.activations(hyper).len();
            for i in 0..projections {
                let wi = if projections == 1 {
                    "wi".to_string()
                } else {
                    format!("wi_{i}")
                };
                out.push((format!("hyper.{name}.{wi}.weight"), vec![d, input_width]));
            }
            out.push((
                format!("hyper.{name}.wo.weight"),
                vec![
                    kind.output_dim(t5, hyper) * layout.emitted_per_input(kind),
                    d,
                ],
            ));
            if normalised {
                out.push((format!("hyper.{name}_norm.weight"), vec![input_width]));
            }
        }
        if hyper.use_prefix && hyper.zero_init_generated {
            out.push(("hyper.prefix_gate".into(), vec![layout.slots]));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The kinds of T5 block stacks a model holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stack {
    /// Self-attention (relative bias in block 0), feed-forward.
    Encoder,
    /// Self-attention, cross-attention, feed-forward.
    Decoder,
    /// HyperTune's hyper-decoder: cross-attention and feed-forward, as many blocks as the
    /// decoder.
    HyperDecoder,
}

fn stack(out: &mut Vec<(String, Vec<i64>)>, prefix: &str, t5: &T5Config, kind: Stack) {
    let (d, inner, ff) = (t5.d_model, t5.inner_dim(), t5.d_ff);
    let layers = if kind == Stack::Encoder {
        t5.num_layers
    } else {
        t5.decoder_layers()
    };
    for block in 0..layers {
        let layer = format!("{prefix}.block.{block}.layer");
        let mut attention = |index: usize, name: &str, relative: bool| {
            let at = format!("{layer}.{index}.{name}");
            for (projection, shape) in [
                ("q", [inner, d]),
                ("k", [inner, d]),
                ("v", [inner, d]),
                ("o", [d, inner]),
            ] {
                out.push((format!("{at}.{projection}.weight"), shape.to_vec()));
            }
            if relative {
                out.push((
                    format!("{at}.relative_attention_bias.weight"),
                    vec![t5.relative_attention_num_buckets, t5.num_heads],
                ));
            }
            out.push((format!("{layer}.{index}.layer_norm.weight"), vec![d]));
        };
        let ff_index = match kind {
            Stack::Encoder => {
                attention(0, "SelfAttention", block == 0);
                1
            }
            Stack::Decoder => {
                attention(0, "SelfAttention", block == 0);
                attention(1, "EncDecAttention", false);
                2
            }
            Stack::HyperDecoder => {
                attention(0, "EncDecAttention", false);
                1
            }
        };
        let dense = format!("{layer}.{ff_index}.DenseReluDense");
        let inputs: &[&str] = match t5.feed_forward_proj {
            FeedForwardProj::Relu => &["wi"],
            _ => &["wi_0", "wi_1"],
        };
        for wi in inputs {
            out.push((format!("{dense}.{wi}.weight"), vec![ff, d]));
        }
        out.push((format!("{dense}.wo.weight"), vec![d, ff]));
        out.push((format!("{layer}.{ff_index}.layer_norm.weight"), vec![d]));
    }
    out.push((format!("{prefix}.final_layer_norm.weight"), vec![d]));
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::VarStore;

    fn built(t5: &T5Config, hyper: &HyperConfig) -> Vec<(String, Vec<i64>)> {
        let vs = VarStore::new(tch::Device::Cpu);
        let _model = crate::HyperT5::new(vs.root(), t5, hyper);
        let mut shapes: Vec<(String, Vec<i64>)> = vs
            .variables()
            .into_iter()
            .map(|(name, t)| (name, t.size()))
            .collect();
        shapes.sort_by(|a, b| a.0.cmp(&b.0));
        shapes
    }

    #[test]
    fn the_shapes_are_those_the_model_creates() {
        let tiny = T5Config {
            vocab_size: 50,
            d_model: 16,
            d_kv: 4,
            num_heads: 3,
            d_ff: 24,
            num_layers: 2,
            num_decoder_layers: Some(3),
            ..T5Config::preset("tiny").unwrap()
        };
        let relu_tied = T5Config {
            feed_forward_proj: FeedForwardProj::Relu,
            tie_word_embeddings: true,
            ..tiny.clone()
        };
        let hypers = [
            HyperConfig::plain_t5(),
            HyperConfig::default(),
            HyperConfig {
                use_lora: true,
                lora_ranks: [Some(2), Some(1), Some(2), None],
                use_prompt: true,
                zero_init_generated: true,
                share_hnet_encoder: false,
                ..HyperConfig::default()
            },
            HyperConfig {
                use_instructions: false,
                ..HyperConfig::default()
            },
            HyperConfig {
                use_linear: true,
                hnet_layernorm: true,
                layer_embedding_method: LayerEmbedding::Concat,
                use_prompt: true,
                ..HyperConfig::default()
            },
            HyperConfig {
                layer_embedding_method: LayerEmbedding::Layer,
                use_lora: true,
                lora_ranks: [Some(2), None, None, Some(1)],
                ..HyperConfig::default()
            },
            HyperConfig {
                layer_embedding_method: LayerEmbedding::Decoder,
                per_layer_hnet: true,
                use_ia3: true,
                ..HyperConfig::default()
            },
            HyperConfig {
                layer_embedding_method: LayerEmbedding::Pooled,
                per_layer_hnet: true,
                ..HyperConfig::default()
            },
            HyperConfig {
                hypernet_activations: vec!["gelu".into(), "linear".into()],
                use_tanh_prefix: true,
                ..HyperConfig::default()
            },
        ];
        for t5 in [&tiny, &relu_tied] {
            for hyper in &hypers {
                assert_eq!(parameter_shapes(t5, hyper), built(t5, hyper), "{hyper:?}");
            }
        }
    }
}
