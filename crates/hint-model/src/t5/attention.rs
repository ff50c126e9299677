//! `T5Attention`: unscaled multi-head attention with an additive position bias, and the
//! key/value cache of incremental decoding.

use tch::{nn, Kind, Tensor};

use super::adaptation::AttentionAdaptation;
use super::config::T5Config;
use super::layers::{cat_broadcast, fused_linear, in_kind, Linear};
use super::memory::EncoderMemory;
use super::position::bucket_grid;

/// Keys and values `[rows, H, L, d_kv]` of consecutive key positions; `rows` is the
/// batch, or 1 for keys every row shares (a per-task prefix, HINT's encoded instruction).
#[derive(Debug)]
pub struct KvPart {
    /// Keys.
    pub key: Tensor,
    /// Values.
    pub value: Tensor,
}

impl KvPart {
    fn rows(&self) -> i64 {
        self.key.size()[0]
    }

    fn len(&self) -> i64 {
        self.key.size()[2]
    }

    fn shallow_clone(&self) -> Self {
        Self {
            key: self.key.shallow_clone(),
            value: self.value.shallow_clone(),
        }
    }
}

/// Keys and values kept between decoding steps, in parts along the key axis.
#[derive(Debug, Default)]
pub struct KvCache {
    /// Self-attention: one part, a per-row joint prefix in front of every position
    /// decoded so far, with room after them for later steps. Cross-attention: the (joint)
    /// prefix and the encoder memory's segments, adjacent parts of the same kind merged;
    /// a part that every row shares stays one row, so that decoding reads it once per
    /// step rather than once per row.
    parts: Vec<KvPart>,
    /// Self-attention: a joint prefix that every row shares (one row), kept apart for the
    /// same reason.
    shared_prefix: Option<KvPart>,
    /// Self-attention: positions of the part that hold keys and values, a per-row
    /// prefix's included (the rest is room). None for a cross-attention cache, whose
    /// parts are exactly what it holds.
    filled: Option<i64>,
    /// Self-attention: a per-row joint prefix's positions at the front of the part.
    front: i64,
}

/// Positions a self-attention cache makes room for at first; it doubles when full.
const FIRST_ROOM: i64 = 16;

impl KvCache {
    /// Cached length, a self-attention's joint prefix not counted (0 when empty).
    pub fn len(&self) -> i64 {
        match self.filled {
            Some(filled) => filled - self.front,
            None => self.parts.iter().map(KvPart::len).sum(),
        }
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Keeps the rows `indices` (beam search reorders hypotheses every step); shared parts
    /// stay as they are.
    pub fn reorder(&mut self, indices: &Tensor) {
        for part in &mut self.parts {
            if part.rows() > 1 {
                part.key = part.key.index_select(0, indices);
                part.value = part.value.index_select(0, indices);
            }
        }
    }

    /// Self-attention: writes `own` (this step's keys and values `[B, H, n, d_kv]`) after
    /// the positions cached, and returns the parts to attend to: the joint prefix (read
    /// from `prefix` at the first step only) and every position so far. The part is
    /// allocated with room for later steps, a per-row prefix copied to its front, so that
    /// a step writes only its own positions: joining the cache and the step, and the
    /// prefix in front, anew at every step copies the whole cache twice a step, which
    /// over a long output costs more than attending to it.
    ///
    /// With gradients wanted every step writes into a new part instead (as joining
    /// did): the backward pass reads the parts earlier steps returned, which a write in
    /// place would change under it.
    fn append(&mut self, prefix: impl FnOnce() -> Option<KvPart>, own: KvPart) -> Vec<KvPart> {
        let new = own.len();
        let filled = match self.filled {
            Some(filled) => filled,
            None => {
                let (shared, per_row) = match prefix() {
                    Some(p) if p.rows() == 1 && own.rows() > 1 => (Some(p), None),
                    other => (None, other),
                };
                self.shared_prefix = shared;
                self.front = per_row.as_ref().map_or(0, KvPart::len);
                let room = self.front + new.max(FIRST_ROOM);
                let empty = |t: &Tensor| {
                    let size = t.size();
                    Tensor::empty([size[0], size[1], room, size[3]], (t.kind(), t.device()))
                };
                let part = KvPart {
                    key: empty(&own.key),
                    value: empty(&own.value),
                };
                if let Some(prefix) = per_row {
                    part.key.narrow(2, 0, self.front).copy_(&prefix.key);
                    part.value.narrow(2, 0, self.front).copy_(&prefix.value);
                }
                self.parts = vec![part];
                self.front
            }
        };
        let wants_grad = [
            &own.key,
            &own.value,
            &self.parts[0].key,
            &self.parts[0].value,
        ]
        .iter()
        .any(|t| t.requires_grad());
        let room = self.parts[0].len();
        if filled + new > room || wants_grad {
            let room = if wants_grad {
                filled + new
            } else {
                (2 * room).max(filled + new)
            };
            let grow = |t: &Tensor| {
                let size = t.size();
                let grown =
                    Tensor::empty([size[0], size[1], room, size[3]], (t.kind(), t.device()));
                grown.narrow(2, 0, filled).copy_(&t.narrow(2, 0, filled));
                grown
            };
            let part = &self.parts[0];
            self.parts[0] = KvPart {
                key: grow(&part.key),
                value: grow(&part.value),
            };
        }
        let part = &self.parts[0];
        part.key.narrow(2, filled, new).copy_(&own.key);
        part.value.narrow(2, filled, new).copy_(&own.value);
        self.filled = Some(filled + new);
        let so_far = KvPart {
            key: part.key.narrow(2, 0, filled + new),
            value: part.value.narrow(2, 0, filled + new),
        };
        self.shared_prefix
            .iter()
            .map(KvPart::shallow_clone)
            .chain([so_far])
            .collect()
    }
}

/// Merges adjacent parts with the same row count (one product each instead of several).
fn merge_adjacent(parts: Vec<KvPart>) -> Vec<KvPart> {
    let mut merged: Vec<KvPart> = Vec::with_capacity(parts.len());
    for part in parts {
        match merged.last_mut() {
            Some(last) if last.rows() == part.rows() => {
                last.key = Tensor::cat(&[&last.key, &part.key], 2);
                last.value = Tensor::cat(&[&last.value, &part.value], 2);
            }
            _ => merged.push(part),
        }
    }
    merged
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
    /// plus its LoRA delta, if any; keys and values then times their IA3 scale, if any.
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
            let ia3 = adaptation.and_then(|a| match i {
                1 => a.ia3_key.as_ref(),
                2 => a.ia3_value.as_ref(),
                _ => None,
            });
            if let Some(scale) = ia3 {
                *projected = &*projected * in_kind(scale, projected.kind());
            }
        }
        out
    }

    /// Cross-attention keys and values `[B, H, L, d_kv]` (contiguous) of encoder states
    /// `[B, L, d]` under `adaptation`'s LoRA: what [`Attention::forward`] projects from a
    /// memory segment, made ahead of time (see [`crate::t5::adaptation::ProjectedMemory`]).
    pub fn project_memory(
        &self,
        states: &Tensor,
        adaptation: Option<&AttentionAdaptation>,
    ) -> (Tensor, Tensor) {
        let [key, value] = self
            .project([1, 2], states, adaptation)
            .map(|t| self.split_heads(&t).contiguous());
        (key, value)
    }

    /// Softmax attention of `query [B, H, Tq, d_kv]` over the keys of `parts` in order,
    /// with the additive `bias` (in the query's dtype, one column per key).
    fn attend(&self, query: &Tensor, parts: &[KvPart], bias: &Tensor, train: bool) -> Tensor {
        let (batch, query_len) = (query.size()[0], query.size()[2]);
        let kind = query.kind();
        if query_len == 1 && batch > 1 && parts.iter().any(|p| p.rows() == 1) {
            return self.attend_shared(query, parts, bias, train);
        }
        let keys: Vec<Tensor> = parts.iter().map(|p| p.key.shallow_clone()).collect();
        let values: Vec<Tensor> = parts.iter().map(|p| p.value.shallow_clone()).collect();
        let (key, value) = (
            cat_broadcast(&keys, batch, 2),
            cat_broadcast(&values, batch, 2),
        );
        // No 1/sqrt(d_kv): T5 folds it into q's initialisation.
        let fused =
            kind == Kind::Float && !train && !query.requires_grad() && !bias.requires_grad();
        if fused {
            // Inference in f32: libtorch's fused kernel never materialises the
            // `[B, H, Tq, Tk]` scores, 2.5x faster on long batched inputs (same result to
            // ~1e-6). Training and bf16 keep the explicit form, which is as fast there (the
            // position bias needs its gradient, which the fused kernel does not give).
            Tensor::scaled_dot_product_attention(
                query,
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
        }
    }

    /// [`Attention::attend`] for one decoding step when some parts are shared by every row:
    /// a shared part is one `[H, B, L]` product per head over its single copy, where the
    /// joined keys would make every row read its own copy at every step (at 100 rows and a
    /// 256-token instruction, 12 GB over 16 steps).
    fn attend_shared(
        &self,
        query: &Tensor,
        parts: &[KvPart],
        bias: &Tensor,
        train: bool,
    ) -> Tensor {
        let size = query.size();
        let (batch, heads, query_len, d_kv) = (size[0], size[1], size[2], size[3]);
        // [B, H, Tq, x] <-> [H, B·Tq, x], the layout of a per-head product over all rows.
        let to_heads = |t: &Tensor| t.transpose(0, 1).reshape([heads, batch * query_len, -1]);
        let from_heads = |t: &Tensor| t.view([heads, batch, query_len, -1]).transpose(0, 1);
        let query_by_head = to_heads(query);
        let scores: Vec<Tensor> = parts
            .iter()
            .map(|p| {
                if p.rows() == 1 {
                    from_heads(&query_by_head.matmul(&p.key.squeeze_dim(0).transpose(-1, -2)))
                } else {
                    query.matmul(&p.key.transpose(-1, -2))
                }
            })
            .collect();
        let weights = (Tensor::cat(&scores, -1) + bias)
            .softmax(-1, query.kind())
            .dropout(self.dropout, train);
        let lens: Vec<i64> = parts.iter().map(KvPart::len).collect();
        let pieces = weights.split_with_sizes(lens.as_slice(), -1);
        let mut context = Tensor::zeros(
            [batch, heads, query_len, d_kv],
            (query.kind(), query.device()),
        );
        for (p, w) in parts.iter().zip(&pieces) {
            context += if p.rows() == 1 {
                from_heads(&to_heads(w).matmul(&p.value.squeeze_dim(0)))
            } else {
                w.matmul(&p.value)
            };
        }
        context
    }

    /// Attends from `hidden [B, Tq, d]` over the keys of `input`; `bias` (in `hidden`'s
    /// dtype, masks included, with zero columns in front for a joint prefix) broadcasts to
    /// `[B, H, Tq, P + Tk]`. Caches hold the prefix in front (a self-attention cache's
    /// length does not count it).
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
        // The joint prefix, as the first part of the keys.
        let prefix_part = || match prefix {
            Some(p) if p.gate.is_none() => Some(KvPart {
                key: in_kind(&p.key, kind),
                value: in_kind(&p.value, kind),
            }),
            _ => None,
        };
        let (query, parts) = match input {
            AttentionInput::SelfAttention(cache) => {
                let [query, key, value] = self
                    .project([0, 1, 2], hidden, adaptation)
                    .map(|t| self.split_heads(&t));
                let own = KvPart { key, value };
                let parts = match cache {
                    Some(cache) => cache.append(prefix_part, own),
                    None => prefix_part().into_iter().chain([own]).collect(),
                };
                (query, parts)
            }
            AttentionInput::Cross { memory, cache } => {
                let [query] = self.project([0], hidden, adaptation);
                let key_values = || {
                    let front = (memory.projected_front() > 0).then(|| {
                        let projected = adaptation
                            .and_then(|a| a.projected_memory.as_ref())
                            .expect("a memory with a projected front, read by a cross-attention whose adaptation holds none");
                        assert_eq!(projected.key.size()[2], memory.projected_front(), "projected front length");
                        KvPart {
                            key: in_kind(&projected.key, kind),
                            value: in_kind(&projected.value, kind),
                        }
                    });
                    let segments = memory.segments().iter().map(|segment| {
                        let [key, value] = self.project([1, 2], segment, adaptation);
                        KvPart {
                            key: self.split_heads(&key),
                            value: self.split_heads(&value),
                        }
                    });
                    merge_adjacent(
                        prefix_part()
                            .into_iter()
                            .chain(front)
                            .chain(segments)
                            .collect(),
                    )
                };
                let parts = match cache {
                    Some(cache) => {
                        if cache.is_empty() {
                            // Contiguous, because every step's `matmul` would otherwise copy
                            // the head-split (strided) keys and values anew: with long encoder
                            // memories those copies cost more than the products themselves.
                            cache.parts = key_values()
                                .into_iter()
                                .map(|part| KvPart {
                                    key: part.key.contiguous(),
                                    value: part.value.contiguous(),
                                })
                                .collect();
                        }
                        cache.parts.iter().map(KvPart::shallow_clone).collect()
                    }
                    None => key_values(),
                };
                (self.split_heads(&query), parts)
            }
        };
        let mut context = self.attend(&query, &parts, bias, train);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn part(rows: i64, len: i64) -> KvPart {
        let options = (Kind::Float, tch::Device::Cpu);
        KvPart {
            key: Tensor::randn([rows, 2, len, 3], options),
            value: Tensor::randn([rows, 2, len, 3], options),
        }
    }

    fn joined(parts: &[KvPart], rows: i64) -> KvPart {
        let keys: Vec<Tensor> = parts.iter().map(|p| p.key.shallow_clone()).collect();
        let values: Vec<Tensor> = parts.iter().map(|p| p.value.shallow_clone()).collect();
        KvPart {
            key: cat_broadcast(&keys, rows, 2),
            value: cat_broadcast(&values, rows, 2),
        }
    }

    /// Well past the first room (so the part grows twice), with a prefix shared by every
    /// row (kept as a part of its own) or one per row (copied to the front), and a
    /// reordering between steps: what the cache returns is always the prefix followed by
    /// every position appended, in the rows' current order.
    #[test]
    fn a_growing_self_attention_cache_returns_the_prefix_and_every_position() {
        for prefix_rows in [1, 3] {
            let prefix = part(prefix_rows, 2);
            let mut cache = KvCache::default();
            let mut want = joined(std::slice::from_ref(&prefix), 3);
            // A first step of several positions (a teacher-forced start), then one a step.
            let steps = std::iter::once(3).chain(std::iter::repeat_n(1, 4 * FIRST_ROOM as usize));
            for (step, new) in steps.enumerate() {
                let own = part(3, new);
                let got = cache.append(|| Some(prefix.shallow_clone()), own.shallow_clone());
                assert_eq!(got.len(), if prefix_rows == 1 { 2 } else { 1 });
                let got = joined(&got, 3);
                want = joined(&[want, own], 3);
                assert!(
                    got.key.equal(&want.key) && got.value.equal(&want.value),
                    "prefix rows {prefix_rows}, step {step}"
                );
                assert_eq!(cache.len(), want.len() - 2);
                if step == 20 {
                    let order = Tensor::from_slice(&[2i64, 0, 0]);
                    cache.reorder(&order);
                    if prefix_rows > 1 {
                        want.key = want.key.index_select(0, &order);
                        want.value = want.value.index_select(0, &order);
                    } else {
                        // The shared prefix stays; the decoded positions follow the order.
                        let reorder = |t: &Tensor| {
                            Tensor::cat(
                                &[
                                    t.narrow(2, 0, 2),
                                    t.narrow(2, 2, t.size()[2] - 2).index_select(0, &order),
                                ],
                                2,
                            )
                        };
                        want.key = reorder(&want.key);
                        want.value = reorder(&want.value);
                    }
                }
            }
            assert!(cache.parts[0].len() >= 4 * FIRST_ROOM + 3);
        }
    }

    /// With gradients wanted, no step writes into what an earlier step returned: the
    /// backward pass through the squares of every step's keys and values gives each
    /// step's own 2 × their value × the number of steps that read them (itself and every
    /// later one).
    #[test]
    fn a_cache_with_gradients_wanted_keeps_every_step_differentiable() {
        let mut cache = KvCache::default();
        let owns: Vec<KvPart> = (0..20)
            .map(|_| {
                let p = part(2, 1);
                KvPart {
                    key: p.key.set_requires_grad(true),
                    value: p.value.set_requires_grad(true),
                }
            })
            .collect();
        let mut total = Tensor::zeros([], (Kind::Float, tch::Device::Cpu));
        for own in &owns {
            let got = cache.append(|| None, own.shallow_clone());
            // Squares: their backward reads the returned keys and values themselves.
            let (key, value) = (&got[0].key, &got[0].value);
            total = total + (key * key).sum(Kind::Float) + (value * value).sum(Kind::Float);
        }
        total.backward();
        for (step, own) in owns.iter().enumerate() {
            let readers = (owns.len() - step) as f64;
            for (own, grad) in [(&own.key, own.key.grad()), (&own.value, own.value.grad())] {
                let expected = own.detach() * (2.0 * readers);
                let error = f64::try_from((grad - expected).abs().max()).unwrap();
                assert!(error < 1e-4, "step {step}: {error}");
            }
        }
    }
}
