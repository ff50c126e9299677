//! The encoder and decoder stacks (`T5Stack`): blocks, the shared position bias, the
//! final norm.

use std::sync::Arc;

use tch::{nn, Kind, Tensor};

use super::adaptation::{extend_bias_for_prefix, LayerAdaptation, StackAdaptation};
use super::block::{Block, BlockCache};
use super::config::T5Config;
use super::layers::{additive_padding_mask, in_kind, mask_value, LayerNorm};
use super::memory::EncoderMemory;
use crate::remat::{rematerialise_with, RematPolicy};

/// The caches of every decoder block, for incremental decoding.
#[derive(Debug, Default)]
pub struct DecoderCache {
    /// One per decoder block.
    pub blocks: Vec<BlockCache>,
}

impl DecoderCache {
    /// Decoder positions already processed.
    pub fn len(&self) -> i64 {
        self.blocks.first().map_or(0, |b| b.self_attention.len())
    }

    /// Whether no step has run yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps the rows `indices` of every cache (beam reordering).
    pub fn reorder(&mut self, indices: &Tensor) {
        for block in &mut self.blocks {
            block.self_attention.reorder(indices);
            block.cross_attention.reorder(indices);
        }
    }
}

/// An encoder or decoder stack.
#[derive(Debug)]
pub struct Stack {
    /// The blocks; block 0 owns the relative-position table. Shared, so that a
    /// rematerialised block's recomputation can hold it.
    pub blocks: Vec<Arc<Block>>,
    /// `final_layer_norm`.
    pub final_layer_norm: LayerNorm,
    is_decoder: bool,
    dropout: f64,
    remat: RematPolicy,
}

impl Stack {
    /// Creates `p/block/{i}` and `p/final_layer_norm`.
    pub fn new(p: nn::Path<'_>, config: &T5Config, is_decoder: bool) -> Self {
        let layers = if is_decoder {
            config.decoder_layers()
        } else {
            config.num_layers
        };
        // An Arc, not an Rc, although a block is not Sync: autograd may drop a
        // rematerialised block's recomputation (which holds a clone) on its own device
        // thread, so the count must be atomic (see `remat::Remat`).
        #[allow(clippy::arc_with_non_send_sync)]
        let blocks = (0..layers as usize)
            .map(|i| Arc::new(Block::new(&p / "block" / i, config, i, is_decoder)))
            .collect();
        Self {
            blocks,
            final_layer_norm: LayerNorm::new(
                &p / "final_layer_norm",
                config.d_model,
                config.layer_norm_epsilon,
                config.initializer_factor,
            ),
            is_decoder,
            dropout: config.dropout_rate,
            remat: RematPolicy::None,
        }
    }

    /// Which activations training keeps ([`RematPolicy`]); inference never rematerialises.
    pub fn set_remat_policy(&mut self, policy: RematPolicy) {
        self.remat = policy;
    }

    /// The policy in force.
    pub fn remat_policy(&self) -> RematPolicy {
        self.remat
    }

    /// The self-attention bias of every block: block 0's position bias plus the masks.
    /// `offset` is the number of cached decoder positions.
    fn self_bias(
        &self,
        batch: i64,
        len: i64,
        offset: i64,
        mask: Option<&Tensor>,
        kind: Kind,
    ) -> Tensor {
        let key_len = offset + len;
        let position = self.blocks[0]
            .self_attention
            .attention
            .position_bias(len, key_len, offset);
        let device = position.device();
        let padding = match mask {
            Some(mask) => mask.to_kind(Kind::Float).view([batch, 1, 1, key_len]),
            None => Tensor::ones([batch, 1, 1, key_len], (Kind::Float, device)),
        };
        let keep = if self.is_decoder {
            let query = Tensor::arange_start(offset, key_len, (Kind::Int64, device)).unsqueeze(1);
            let key = Tensor::arange(key_len, (Kind::Int64, device)).unsqueeze(0);
            padding * key.le_tensor(&query).to_kind(Kind::Float)
        } else {
            padding
        };
        // Masks combine multiplicatively first, so that a position masked twice gets the
        // mask value once (as in HF), never −inf.
        position + (1.0 - keep) * mask_value(kind)
    }

    /// Runs the stack on embedded inputs `[B, T, d]`. `mask` is the `[B, T_key]` padding
    /// mask of this stack's own keys (for a cached decoder: all keys so far). `encoder`
    /// gives the encoder states with their mask (decoder only). `adaptation`
    /// carries generated prefixes, LoRA and adapters (one entry per block).
    pub fn forward(
        &self,
        embeddings: &Tensor,
        mask: Option<&Tensor>,
        encoder: Option<&EncoderMemory>,
        mut cache: Option<&mut DecoderCache>,
        adaptation: Option<&StackAdaptation>,
        train: bool,
    ) -> Tensor {
        let (batch, len) = (embeddings.size()[0], embeddings.size()[1]);
        let kind = embeddings.kind();
        if let Some(cache) = cache.as_deref_mut() {
            cache
                .blocks
                .resize_with(self.blocks.len(), BlockCache::default);
        }
        let offset = cache.as_deref().map_or(0, DecoderCache::len);
        let (self_prefix, cross_prefix) = adaptation.map_or((0, 0), StackAdaptation::prefix_lens);
        // Biases are built in f32 and rounded to the compute dtype once per stack: in bf16,
        // attention logits and their bias add in bf16, as in t5x and transformers.
        let self_bias = in_kind(
            &extend_bias_for_prefix(&self.self_bias(batch, len, offset, mask, kind), self_prefix),
            kind,
        );
        let encoder = encoder.map(|memory| {
            let mask = additive_padding_mask(memory.mask(), kind);
            (
                memory,
                in_kind(&extend_bias_for_prefix(&mask, cross_prefix), kind),
            )
        });
        let mut h = embeddings.dropout(self.dropout, train);
        let remat = self.remat != RematPolicy::None && train && cache.is_none();
        for (i, block) in self.blocks.iter().enumerate() {
            let layer = adaptation.and_then(|a| a.layers.get(i));
            let encoder = encoder.as_ref().map(|(s, b)| (*s, b));
            h = if remat {
                rematerialised_block(self.remat, block, &h, &self_bias, encoder, layer)
            } else {
                let block_cache = cache.as_deref_mut().map(|c| &mut c.blocks[i]);
                block.forward(&h, &self_bias, encoder, block_cache, layer, train)
            };
        }
        self.final_layer_norm
            .forward(&h)
            .dropout(self.dropout, train)
    }
}

/// A training forward pass of `block` whose activations the backward pass recomputes.
/// Everything the block reads that may need a gradient (its input, the position bias,
/// the encoder's states, the generated adaptation) goes in as an input of the
/// rematerialised function, flat, and is rebuilt inside it; the block's own weights are
/// leaves, read through the shared block.
fn rematerialised_block(
    policy: RematPolicy,
    block: &Arc<Block>,
    x: &Tensor,
    self_bias: &Tensor,
    encoder: Option<(&EncoderMemory, &Tensor)>,
    adaptation: Option<&LayerAdaptation>,
) -> Tensor {
    let mut inputs = vec![x.shallow_clone(), self_bias.shallow_clone()];
    let segments = encoder.map_or(0, |(memory, _)| memory.segments().len());
    let projected_front = encoder.map_or(0, |(memory, _)| memory.projected_front());
    if let Some((memory, cross_bias)) = encoder {
        inputs.extend(memory.segments().iter().map(Tensor::shallow_clone));
        inputs.push(memory.mask().shallow_clone());
        inputs.push(cross_bias.shallow_clone());
    }
    // The adaptation's structure, with its tensors taken out (in `map_tensors`' order).
    let template = adaptation.map(|layer| {
        layer.map_tensors(&mut |t| {
            inputs.push(t.shallow_clone());
            Tensor::new()
        })
    });
    let block = Arc::clone(block);
    let function = move |inputs: &[Tensor]| {
        let (x, self_bias) = (&inputs[0], &inputs[1]);
        let mut rest = inputs[2..].iter();
        let encoder = (segments > 0).then(|| {
            let parts: Vec<Tensor> = rest
                .by_ref()
                .take(segments)
                .map(Tensor::shallow_clone)
                .collect();
            let mask = rest.next().expect("the memory's mask").shallow_clone();
            let cross_bias = rest.next().expect("the cross bias").shallow_clone();
            (
                EncoderMemory::with_projected_front(projected_front, parts, mask),
                cross_bias,
            )
        });
        let adaptation = template.as_ref().map(|t| {
            t.map_tensors(&mut |_| rest.next().expect("an adaptation tensor").shallow_clone())
        });
        vec![block.forward(
            x,
            self_bias,
            encoder.as_ref().map(|(m, b)| (m, b)),
            None,
            adaptation.as_ref(),
            true,
        )]
    };
    rematerialise_with(policy, &inputs, function).remove(0)
}
