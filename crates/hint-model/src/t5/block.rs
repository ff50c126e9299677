//! Encoder and decoder blocks (`T5Block`): pre-norm residual sublayers.

use tch::{nn, Tensor};

use super::adaptation::{AttentionAdaptation, LayerAdaptation};
use super::attention::{Attention, AttentionInput, KvCache};
use super::config::T5Config;
use super::feed_forward::FeedForward;
use super::layers::LayerNorm;
use super::memory::EncoderMemory;

/// An attention sublayer with its pre-norm (`layer.N.{SelfAttention|EncDecAttention, layer_norm}`).
#[derive(Debug)]
pub struct AttentionLayer {
    /// The attention.
    pub attention: Attention,
    /// Its pre-norm.
    pub layer_norm: LayerNorm,
    dropout: f64,
}

impl AttentionLayer {
    pub(crate) fn new(
        p: nn::Path<'_>,
        name: &str,
        config: &T5Config,
        relative_bias: bool,
        bidirectional: bool,
    ) -> Self {
        Self {
            attention: Attention::new(&p / name, config, relative_bias, bidirectional),
            layer_norm: LayerNorm::new(
                &p / "layer_norm",
                config.d_model,
                config.layer_norm_epsilon,
                config.initializer_factor,
            ),
            dropout: config.dropout_rate,
        }
    }

    pub(crate) fn forward(
        &self,
        x: &Tensor,
        input: AttentionInput<'_>,
        bias: &Tensor,
        adaptation: Option<&AttentionAdaptation>,
        train: bool,
    ) -> Tensor {
        let normed = self.layer_norm.forward(x);
        x + self
            .attention
            .forward(&normed, input, bias, adaptation, train)
            .dropout(self.dropout, train)
    }
}

/// The feed-forward sublayer with its pre-norm (`layer.N.{DenseReluDense, layer_norm}`).
#[derive(Debug)]
pub struct FeedForwardLayer {
    /// The projections.
    pub dense: FeedForward,
    /// Its pre-norm.
    pub layer_norm: LayerNorm,
    dropout: f64,
}

impl FeedForwardLayer {
    pub(crate) fn new(p: nn::Path<'_>, config: &T5Config) -> Self {
        Self {
            dense: FeedForward::new(&p / "DenseReluDense", config),
            layer_norm: LayerNorm::new(
                &p / "layer_norm",
                config.d_model,
                config.layer_norm_epsilon,
                config.initializer_factor,
            ),
            dropout: config.dropout_rate,
        }
    }

    pub(crate) fn forward(
        &self,
        x: &Tensor,
        adaptation: Option<&LayerAdaptation>,
        train: bool,
    ) -> Tensor {
        let normed = self.layer_norm.forward(x);
        let ia3 = adaptation.and_then(|a| a.ia3_feed_forward.as_ref());
        let out = x + self
            .dense
            .forward(&normed, ia3, train)
            .dropout(self.dropout, train);
        match adaptation.and_then(|a| a.adapter.as_ref()) {
            // HINT's adapter runs parallel to the feed-forward, on the same normalised input.
            Some(adapter) => out + adapter.apply(&normed),
            None => out,
        }
    }
}

/// One block of the encoder (`layer.0` self-attention, `layer.1` feed-forward) or the
/// decoder (`layer.0` causal self-attention, `layer.1` cross-attention, `layer.2` feed-forward).
#[derive(Debug)]
pub struct Block {
    /// Self-attention.
    pub self_attention: AttentionLayer,
    /// Cross-attention (decoder only).
    pub cross_attention: Option<AttentionLayer>,
    /// Feed-forward.
    pub feed_forward: FeedForwardLayer,
}

/// The per-layer caches of incremental decoding.
#[derive(Debug, Default)]
pub struct BlockCache {
    /// Decoder self-attention keys/values so far.
    pub self_attention: KvCache,
    /// Projected encoder keys/values.
    pub cross_attention: KvCache,
}

impl Block {
    /// Creates block `p` (`…/block/{i}`); `index == 0` owns the relative-position table.
    pub fn new(p: nn::Path<'_>, config: &T5Config, index: usize, is_decoder: bool) -> Self {
        let layer = &p / "layer";
        let self_attention =
            AttentionLayer::new(&layer / 0, "SelfAttention", config, index == 0, !is_decoder);
        let (cross_attention, ff_index) = if is_decoder {
            (
                Some(AttentionLayer::new(
                    &layer / 1,
                    "EncDecAttention",
                    config,
                    false,
                    false,
                )),
                2,
            )
        } else {
            (None, 1)
        };
        Self {
            self_attention,
            cross_attention,
            feed_forward: FeedForwardLayer::new(&layer / ff_index, config),
        }
    }

    /// Runs the block. `self_bias` and `cross_bias` are additive biases (position + masks) in
    /// the compute dtype.
    pub fn forward(
        &self,
        x: &Tensor,
        self_bias: &Tensor,
        encoder: Option<(&EncoderMemory, &Tensor)>,
        cache: Option<&mut BlockCache>,
        adaptation: Option<&LayerAdaptation>,
        train: bool,
    ) -> Tensor {
        let (self_cache, cross_cache) = match cache {
            Some(c) => (Some(&mut c.self_attention), Some(&mut c.cross_attention)),
            None => (None, None),
        };
        let mut h = self.self_attention.forward(
            x,
            AttentionInput::SelfAttention(self_cache),
            self_bias,
            adaptation.map(|a| &a.self_attention),
            train,
        );
        if let (Some(cross), Some((memory, cross_bias))) = (&self.cross_attention, encoder) {
            h = cross.forward(
                &h,
                AttentionInput::Cross {
                    memory,
                    cache: cross_cache,
                },
                cross_bias,
                adaptation.map(|a| &a.cross_attention),
                train,
            );
        }
        self.feed_forward.forward(&h, adaptation, train)
    }
}
