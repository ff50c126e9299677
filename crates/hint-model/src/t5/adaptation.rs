//! Per-example (or per-task) modifications of a T5 forward pass: attention prefixes,
//! LoRA deltas, IA3 rescaling and parallel adapters, as HINT's hypernetwork generates them.
//!
//! Every tensor has a leading batch dimension that is either the batch size (one
//! adaptation per example) or 1 (one task shared by the whole batch, broadcast).

use tch::{Kind, Tensor};

use super::layers::in_kind;

/// `x [B, T, i] @ w [B or 1, i, o]`. A weight shared by the whole batch (one task) is one
/// `[B·T, i] @ [i, o]` product instead of B small ones over a broadcast copy of `w`.
fn shared_matmul(x: &Tensor, w: &Tensor) -> Tensor {
    if w.dim() == 3 && w.size()[0] == 1 {
        x.matmul(&w.squeeze_dim(0))
    } else {
        x.matmul(w)
    }
}

/// A low-rank delta `x · A · B · scale` added to a projection's output.
#[derive(Debug)]
pub struct LoraDelta {
    /// `[B|1, in, rank]`.
    pub a: Tensor,
    /// `[B|1, rank, out]`.
    pub b: Tensor,
    /// `alpha / rank`.
    pub scale: f64,
}

impl LoraDelta {
    /// The delta for `x [B, T, in]`.
    pub fn apply(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        shared_matmul(
            &shared_matmul(x, &in_kind(&self.a, kind)),
            &in_kind(&self.b, kind),
        ) * self.scale
    }

    fn repeat_rows(&self, repeats: i64) -> Self {
        Self {
            a: repeat_rows(&self.a, repeats),
            b: repeat_rows(&self.b, repeats),
            scale: self.scale,
        }
    }
}

/// Generated key/value vectors that every query of an attention block can see.
#[derive(Debug)]
pub struct Prefix {
    /// `[B|1, H, P, d_kv]`.
    pub key: Tensor,
    /// `[B|1, H, P, d_kv]`.
    pub value: Tensor,
    /// With a gate (zero-initialised mode), the prefix is attended separately and its
    /// context added as `gate · context`, so that a zero gate leaves T5 exactly unchanged;
    /// without one, prefix keys join the keys of the block (the reference behaviour).
    pub gate: Option<Tensor>,
}

/// Cross-attention keys and values of the front of the encoder memory, projected ahead of
/// time: HINT's fused instruction is the same for every input of a task, so a server
/// projects it once per task and block instead of once per request (see
/// `HyperT5::project_instruction`). The memory then leaves those positions out of its
/// segments ([`crate::t5::memory::EncoderMemory::with_projected_front`]).
#[derive(Debug)]
pub struct ProjectedMemory {
    /// `[B|1, H, L, d_kv]`.
    pub key: Tensor,
    /// `[B|1, H, L, d_kv]`.
    pub value: Tensor,
}

/// What modifies one attention block.
#[derive(Debug, Default)]
pub struct AttentionAdaptation {
    /// Prefix keys/values.
    pub prefix: Option<Prefix>,
    /// LoRA on `q`, `k`, `v`, `o`.
    pub lora: [Option<LoraDelta>; 4],
    /// Cross-attention: the memory's front, projected ahead of time.
    pub projected_memory: Option<ProjectedMemory>,
    /// IA3: the keys are multiplied by this `[B|1, 1, H·d_kv]` (after LoRA).
    pub ia3_key: Option<Tensor>,
    /// IA3: the values are multiplied by this `[B|1, 1, H·d_kv]`.
    pub ia3_value: Option<Tensor>,
}

/// A bottleneck adapter parallel to a feed-forward sublayer:
/// `gelu_tanh(h · W_d + b_d) · W_u + b_u`.
#[derive(Debug)]
pub struct Adapter {
    /// `[B|1, d, a]`.
    pub down: Tensor,
    /// `[B|1, 1, a]`.
    pub down_bias: Tensor,
    /// `[B|1, a, d]`.
    pub up: Tensor,
    /// `[B|1, 1, d]`.
    pub up_bias: Tensor,
}

impl Adapter {
    /// The adapter's output for normalised `h [B, T, d]`.
    pub fn apply(&self, h: &Tensor) -> Tensor {
        let kind = h.kind();
        let hidden = (shared_matmul(h, &in_kind(&self.down, kind))
            + in_kind(&self.down_bias, kind))
        .gelu("tanh");
        shared_matmul(&hidden, &in_kind(&self.up, kind)) + in_kind(&self.up_bias, kind)
    }
}

/// What modifies one block.
#[derive(Debug, Default)]
pub struct LayerAdaptation {
    /// Self-attention.
    pub self_attention: AttentionAdaptation,
    /// Cross-attention (decoder blocks).
    pub cross_attention: AttentionAdaptation,
    /// The adapter of the feed-forward sublayer.
    pub adapter: Option<Adapter>,
    /// IA3: the feed-forward's inner activations (the input of `wo`) are multiplied by
    /// this `[B|1, 1, d_ff]`.
    pub ia3_feed_forward: Option<Tensor>,
}

/// What modifies one stack: a [`LayerAdaptation`] per block.
#[derive(Debug, Default)]
pub struct StackAdaptation {
    /// One per block, in order.
    pub layers: Vec<LayerAdaptation>,
}

fn repeat_rows(tensor: &Tensor, repeats: i64) -> Tensor {
    if tensor.size()[0] == 1 || repeats == 1 {
        tensor.shallow_clone()
    } else {
        tensor.repeat_interleave_self_int(repeats, 0, None)
    }
}

impl LayerAdaptation {
    /// The same structure with every tensor replaced by `f` of it, in one fixed order
    /// (self-attention, cross-attention, adapter; prefix before LoRA): what lets a
    /// rematerialised block take its adaptation as a flat list of inputs and rebuild it.
    pub fn map_tensors(&self, f: &mut dyn FnMut(&Tensor) -> Tensor) -> Self {
        Self {
            self_attention: self.self_attention.map_tensors(f),
            cross_attention: self.cross_attention.map_tensors(f),
            adapter: self.adapter.as_ref().map(|a| Adapter {
                down: f(&a.down),
                down_bias: f(&a.down_bias),
                up: f(&a.up),
                up_bias: f(&a.up_bias),
            }),
            ia3_feed_forward: self.ia3_feed_forward.as_ref().map(&mut *f),
        }
    }
}

impl AttentionAdaptation {
    fn map_tensors(&self, f: &mut dyn FnMut(&Tensor) -> Tensor) -> Self {
        Self {
            prefix: self.prefix.as_ref().map(|p| Prefix {
                key: f(&p.key),
                value: f(&p.value),
                gate: p.gate.as_ref().map(&mut *f),
            }),
            lora: std::array::from_fn(|i| {
                self.lora[i].as_ref().map(|l| LoraDelta {
                    a: f(&l.a),
                    b: f(&l.b),
                    scale: l.scale,
                })
            }),
            projected_memory: self.projected_memory.as_ref().map(|m| ProjectedMemory {
                key: f(&m.key),
                value: f(&m.value),
            }),
            ia3_key: self.ia3_key.as_ref().map(&mut *f),
            ia3_value: self.ia3_value.as_ref().map(&mut *f),
        }
    }

    /// Number of prefix positions (0 without a prefix, or with a gated prefix, which is
    /// attended separately).
    pub fn joint_prefix_len(&self) -> i64 {
        match &self.prefix {
            Some(p) if p.gate.is_none() => p.key.size()[2],
            _ => 0,
        }
    }

    fn repeat_rows(&self, repeats: i64) -> Self {
        Self {
            prefix: self.prefix.as_ref().map(|p| Prefix {
                key: repeat_rows(&p.key, repeats),
                value: repeat_rows(&p.value, repeats),
                gate: p.gate.as_ref().map(Tensor::shallow_clone),
            }),
            lora: std::array::from_fn(|i| self.lora[i].as_ref().map(|l| l.repeat_rows(repeats))),
            projected_memory: self.projected_memory.as_ref().map(|m| ProjectedMemory {
                key: repeat_rows(&m.key, repeats),
                value: repeat_rows(&m.value, repeats),
            }),
            ia3_key: self.ia3_key.as_ref().map(|t| repeat_rows(t, repeats)),
            ia3_value: self.ia3_value.as_ref().map(|t| repeat_rows(t, repeats)),
        }
    }
}

impl StackAdaptation {
    /// Repeats every per-example row `repeats` times (beam search expands each input
    /// into beams); per-task tensors (batch 1) broadcast and are left alone.
    pub fn repeat_rows(&self, repeats: i64) -> Self {
        Self {
            layers: self
                .layers
                .iter()
                .map(|layer| LayerAdaptation {
                    self_attention: layer.self_attention.repeat_rows(repeats),
                    cross_attention: layer.cross_attention.repeat_rows(repeats),
                    adapter: layer.adapter.as_ref().map(|a| Adapter {
                        down: repeat_rows(&a.down, repeats),
                        down_bias: repeat_rows(&a.down_bias, repeats),
                        up: repeat_rows(&a.up, repeats),
                        up_bias: repeat_rows(&a.up_bias, repeats),
                    }),
                    ia3_feed_forward: layer
                        .ia3_feed_forward
                        .as_ref()
                        .map(|t| repeat_rows(t, repeats)),
                })
                .collect(),
        }
    }

    /// The joint prefix length of self- and cross-attention (the same in every layer).
    pub fn prefix_lens(&self) -> (i64, i64) {
        self.layers.first().map_or((0, 0), |l| {
            (
                l.self_attention.joint_prefix_len(),
                l.cross_attention.joint_prefix_len(),
            )
        })
    }
}

/// Prepends `prefix_len` zero columns to an additive attention bias `[.., Tq, Tk]`:
/// prefix positions carry no position bias and no mask.
pub fn extend_bias_for_prefix(bias: &Tensor, prefix_len: i64) -> Tensor {
    if prefix_len == 0 {
        return bias.shallow_clone();
    }
    let mut shape = bias.size();
    let last = shape.len() - 1;
    shape[last] = prefix_len;
    let zeros = Tensor::zeros(shape.as_slice(), (Kind::Float, bias.device()));
    Tensor::cat(&[zeros, bias.shallow_clone()], -1)
}
