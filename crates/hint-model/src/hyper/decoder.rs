//! HyperTune's hyper-decoder (`layer_embedding_method = "decoder"`): T5 decoder layers
//! without self-attention, run over the component embeddings as if they were decoder
//! inputs, cross-attending to the encoded instruction. Without self-attention each
//! component reads the instruction on its own, which is what makes it affordable for the
//! hundreds of component rows (the reference skips it for the same reason).

use tch::{nn, Tensor};

use crate::t5::attention::AttentionInput;
use crate::t5::block::{AttentionLayer, FeedForwardLayer};
use crate::t5::config::T5Config;
use crate::t5::layers::{additive_padding_mask, LayerNorm};
use crate::t5::memory::EncoderMemory;

/// The hyper-decoder's parameters, under `hyper.hyper_decoder`, named as T5's decoder
/// blocks (`block.{i}.layer.0.EncDecAttention`, `block.{i}.layer.1.DenseReluDense`) so that
/// an assignment map can start it from a T5 decoder, as the reference's HyperTune does.
#[derive(Debug)]
pub struct HyperDecoder {
    layers: Vec<(AttentionLayer, FeedForwardLayer)>,
    final_layer_norm: LayerNorm,
    dropout: f64,
    parameters: i64,
}

impl HyperDecoder {
    /// As many layers as T5's decoder.
    pub fn new(p: nn::Path<'_>, t5: &T5Config) -> Self {
        let layers = (0..t5.decoder_layers())
            .map(|i| {
                let layer = &p / "block" / i / "layer";
                (
                    AttentionLayer::new(&layer / 0, "EncDecAttention", t5, false, false),
                    FeedForwardLayer::new(&layer / 1, t5),
                )
            })
            .collect();
        Self {
            layers,
            final_layer_norm: LayerNorm::new(
                &p / "final_layer_norm",
                t5.d_model,
                t5.layer_norm_epsilon,
                t5.initializer_factor,
            ),
            dropout: t5.dropout_rate,
            parameters: hyper_decoder_parameters(t5),
        }
    }

    /// `queries [1|B, rows, d]` (the component embeddings) read the instruction
    /// (`states [B, L, d]`, `mask [B, L]`): `[B, rows, d]`.
    pub fn forward(&self, queries: &Tensor, states: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        let batch = states.size()[0];
        let size = queries.size();
        let mut x = queries
            .to_kind(states.kind())
            .expand([batch, size[1], size[2]], false);
        let bias = additive_padding_mask(mask, states.kind());
        let memory = EncoderMemory::new(states, mask);
        for (cross_attention, feed_forward) in &self.layers {
            x = cross_attention.forward(
                &x,
                AttentionInput::Cross {
                    memory: &memory,
                    cache: None,
                },
                &bias,
                None,
                train,
            );
            x = feed_forward.forward(&x, None, train);
        }
        self.final_layer_norm
            .forward(&x)
            .dropout(self.dropout, train)
    }

    /// Parameters, for the accounting.
    pub fn parameter_count(&self) -> i64 {
        self.parameters
    }
}

/// Parameters of a hyper-decoder for `t5`: per layer the cross-attention's four
/// projections, the feed-forward's and two norms; one final norm.
pub fn hyper_decoder_parameters(t5: &T5Config) -> i64 {
    let inputs = if t5.feed_forward_proj.is_gated() {
        2
    } else {
        1
    };
    let layer =
        4 * t5.d_model * t5.inner_dim() + (inputs + 1) * t5.d_model * t5.d_ff + 2 * t5.d_model;
    t5.decoder_layers() * layer + t5.d_model
}
