//! `T5Attention`: unscaled multi-head attention with an additive position bias, and the
//! key/value cache of incremental decoding.

use tch::{nn, Kind, Tensor};

use super::adaptation::AttentionAdaptation;
use super::config::T5Config;
use super::layers::{fused_linear, in_kind, Linear};
use super::memory::EncoderMemory;
use super::position::bucket_grid;

/// Keys and values kept between decoding steps, `[B, H, T, d_kv]`.
#[derive(Debug, Default)]
pub struct KvCache {
    /// Cached keys.
    pub key: Option<Tensor>,
    /// Cached values.
    pub value: Option<Tensor>,
    /// Whether the cached keys/values begin with the generated prefix (cross-attention
    /// caches hold it, so that decoding does not copy the whole encoder memory to put the
    /// prefix in front of it at every step).
    pub includes_prefix: bool,
}

impl KvCache {
    /// Cached length (0 when empty).
    pub fn len(&self) -> i64 {
        self.key.as_ref().map_or(0, |k| k.size()[2])
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.key.is_none()
    }

    /// Keeps the rows `indices` (beam search reorders hypotheses every step).
    pub fn reorder(&mut self, indices: &Tensor) {
        for t in [&mut self.key, &mut self.value].into_iter().flatten() {
            *t = t.index_select(0, indices);
        }
    }
}

/// Which key/values an attention reads, and whether they are cached.
pub enum AttentionInput<'a> {
    /// Self-attention over the query's own sequence; with a cache, new keys are appended.
    SelfAttention(Option<&'a mut KvCache>),
    /// Cross-attention over encoder states; with a cache, keys are computed once.
    Cross {
        /// The encoder states; a shared segment is projected once for the whole batch.
        memory: &'a EncoderMemory,
        /// Optional cache of the projected encoder keys/values.
        cache: Option<&'a mut KvCache>,
    },
}

/// One attention sublayer's projections (`q`, `k`, `v`, `o`), plus the relative-position
/// table when it is the first block of its stack.
#[derive(Debug)]
pub struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    relative_attention_bias: Option<Tensor>,
    num_heads: i64,
    d_kv: i64,
    bidirectional: bool,
    num_buckets: i64,
    max_distance: i64,
    dropout: f64,
}

impl Attention {
    /// Creates the projections under `p` with HF's initialisation; `has_relative_bias`
    /// for block 0 of each stack, `bidirectional` for the encoder.
    pub fn new(
        p: nn::Path<'_>,
        config: &T5Config,
        has_relative_bias: bool,
        bidirectional: bool,
    ) -> Self {
        let (d, inner, f) = (
            config.d_model,
            config.inner_dim(),
            config.initializer_factor,
        );
        let q = Linear::new(
            &p / "q",
            d,
            inner,
            f * ((d * config.d_kv) as f64).powf(-0.5),
        );
        let k = Linear::new(&p / "k", d, inner, f * (d as f64).powf(-0.5));
        let v = Linear::new(&p / "v", d, inner, f * (d as f64).powf(-0.5));
        let o = Linear::new(&p / "o", inner, d, f * (inner as f64).powf(-0.5));
        let relative_attention_bias = has_relative_bias.then(|| {
            (&p / "relative_attention_bias").var(
                "weight",
                &[config.relative_attention_num_buckets, config.num_heads],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: f * (d as f64).powf(-0.5),
                },
            )
        });
        Self {
            q,
            k,
            v,
            o,
            relative_attention_bias,
            num_heads: config.num_heads,
            d_kv: config.d_kv,
            bidirectional,
            num_buckets: config.relative_attention_num_buckets,
            max_distance: config.relative_attention_max_distance,
            dropout: config.dropout_rate,
        }
    }

    /// The relative-position bias `[1, H, query_len, key_len]` (f32) for queries starting
    /// at `offset`; zeros for attentions without a table (cross-attention, later blocks).
    pub fn position_bias(&self, query_len: i64, key_len: i64, offset: i64) -> Tensor {
        let device = self.q.weight.device();
        match &self.relative_attention_bias {
            Some(table) => {
                let buckets = bucket_grid(
                    query_len,
                    key_len,
                    offset,
                    self.bidirectional,
                    self.num_buckets,
                    self.max_distance,
                    device,
                );
                Tensor::embedding(&in_kind(table, Kind::Float), &buckets, -1, false, false)
                    .permute([2, 0, 1])
                    .unsqueeze(0)
            }
            None => Tensor::zeros(
                [1, self.num_heads, query_len, key_len],
                (Kind::Float, device),
            ),
        }
    }

    fn split_heads(&self, x: &Tensor) -> Tensor {
        let (batch, len) = (x.size()[0], x.size()[1]);
        x.view([batch, len, self.num_heads, self.d_kv])
            .transpose(1, 2)
    }

    /// Projections `which` (0–3: q, k, v, o) of the same input as one fused product, each
    /// plus its LoRA delta, if any.
    fn project<const N: usize>(
        &self,
        which: [usize; N],
        x: &Tensor,
        adaptation: Option<&AttentionAdaptation>,
    ) -> [Tensor; N] {
        let all = [&self.q, &self.k, &self.v, &self.o];
        let mut out = fused_linear(x, which.map(|i| all[i]));
        for (projected, i) in out.iter_mut().zip(which) {
            if let Some(lora) = adaptation.and_then(|a| a.lora[i].as_ref()) {
                *projected = &*projected + lora.apply(x);
            }
        }
        out
    }

    /// Attends from `hidden [B, Tq, d]` over the keys of `input`; `bias` (in `hidden`'s
    /// dtype, masks included, with zero columns in front for a joint prefix) broadcasts to
    /// `[B, H, Tq, P + Tk]`. Prefixes stay outside the cache.
    pub fn forward(
        &self,
        hidden: &Tensor,
        input: AttentionInput<'_>,
        bias: &Tensor,
        adaptation: Option<&AttentionAdaptation>,
        train: bool,
    ) -> Tensor {
        let (batch, query_len) = (hidden.size()[0], hidden.size()[1]);
        let prefix = adaptation.and_then(|a| a.prefix.as_ref());
        let kind = hidden.kind();
        let with_prefix = |key: Tensor, value: Tensor| match prefix {
            Some(p) if p.gate.is_none() => (
                Tensor::cat(
                    &[
                        in_kind(&p.key, kind).expand([batch, -1, -1, -1], false),
                        key,
                    ],
                    2,
                ),
                Tensor::cat(
                    &[
                        in_kind(&p.value, kind).expand([batch, -1, -1, -1], false),
                        value,
                    ],
                    2,
                ),
            ),
            _ => (key, value),
        };
        let (query, key, value, prefixed) = match input {
            AttentionInput::SelfAttention(cache) => {
                let [query, key, value] = self
                    .project([0, 1, 2], hidden, adaptation)
                    .map(|t| self.split_heads(&t));
                let (key, value, prefixed) = match cache {
                    Some(cache) => {
                        let (key, value) = match (&cache.key, &cache.value) {
                            (Some(k), Some(v)) => {
                                (Tensor::cat(&[k, &key], 2), Tensor::cat(&[v, &value], 2))
                            }
                            _ => (key, value),
                        };
                        cache.key = Some(key.shallow_clone());
                        cache.value = Some(value.shallow_clone());
                        (key, value, false)
                    }
                    None => (key, value, false),
                };
                (query, key, value, prefixed)
            }
            AttentionInput::Cross { memory, cache } => {
                let [query] = self.project([0], hidden, adaptation);
                let key_values = || {
                    let (keys, values): (Vec<Tensor>, Vec<Tensor>) = memory
                        .segments()
                        .iter()
                        .map(|segment| {
                            let [key, value] = self.project([1, 2], segment, adaptation);
                            (self.split_heads(&key), self.split_heads(&value))
                        })
                        .unzip();
                    (memory.join(&keys, 2), memory.join(&values, 2))
                };
                let (key, value, prefixed) = match cache {
                    Some(cache) => {
                        if cache.is_empty() {
                            // Contiguous, because every step's `matmul` would otherwise copy
                            // the head-split (strided) keys and values anew: with long encoder
                            // memories those copies cost more than the products themselves.
                            let (key, value) = key_values();
                            let (key, value) = with_prefix(key, value);
                            cache.key = Some(key.contiguous());
                            cache.value = Some(value.contiguous());
                            cache.includes_prefix = true;
                        }
                        match (&cache.key, &cache.value) {
                            (Some(k), Some(v)) => {
                                (k.shallow_clone(), v.shallow_clone(), cache.includes_prefix)
                            }
                            _ => unreachable!("cross-attention cache filled above"),
                        }
                    }
                    None => {
                        let (key, value) = key_values();
                        (key, value, false)
                    }
                };
                (self.split_heads(&query), key, value, prefixed)
            }
        };
        let (key, value) = if prefixed {
            (key, value)
        } else {
            with_prefix(key, value)
        };
        // No 1/sqrt(d_kv): T5 folds it into q's initialisation.
        let fused =
            kind == Kind::Float && !train && !query.requires_grad() && !bias.requires_grad();
        let mut context = if fused {
            // Inference in f32: libtorch's fused kernel never materialises the
            // `[B, H, Tq, Tk]` scores, 2.5x faster on long batched inputs (same result to
            // ~1e-6). Training and bf16 keep the explicit form, which is as fast there (the
            // position bias needs its gradient, which the fused kernel does not give).
            Tensor::scaled_dot_product_attention(
                &query,
                &key,
                &value,
                Some(bias),
                0.0,
                false,
                1.0,
                false,
            )
        } else {
            // The bias is in the compute dtype (t5x's default, no f32 attention logits);
            // libtorch's softmax still accumulates reduced precision in f32.
            let scores = query.matmul(&key.transpose(-1, -2)) + bias;
            let weights = scores.softmax(-1, kind).dropout(self.dropout, train);
            weights.matmul(&value)
        };
        if let Some(p) = prefix {
            if let Some(gate) = &p.gate {
                // Gated prefix: its own softmax over the P prefix keys, added with a gate
                // that starts at zero, so an untrained prefix changes nothing.
                let prefix_weights = query
                    .matmul(&in_kind(&p.key, kind).transpose(-1, -2))
                    .softmax(-1, Kind::Float)
                    .to_kind(kind);
                context += prefix_weights.matmul(&in_kind(&p.value, kind)) * in_kind(gate, kind);
            }
        }
        let context = context.transpose(1, 2).contiguous().view([
            batch,
            query_len,
            self.num_heads * self.d_kv,
        ]);
        let [output] = self.project([3], &context, adaptation);
        output
    }
}
