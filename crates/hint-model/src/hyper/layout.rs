//! Where each generated tensor's component rows live: `S = L_enc + 2·L_dec` slots of `C`
//! components each (slot-major, `row = slot·C + component`), then the prompt rows; and, per
//! design ([`Reading`]), which vectors the generators read and how many rows each emits.

use crate::t5::config::T5Config;

use super::config::{HyperConfig, LayerEmbedding};

/// What one generator input vector stands for, by design (`layer_embedding_method`,
/// `per_layer_hnet`). A generator of a type with `count` components per slot reads the
/// vectors [`Layout::inputs_of`] names and emits [`Layout::emitted_per_input`] component
/// rows from each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// One vector per generated row (HINT's components, HyperTune's hyper-decoder):
    /// `S·C + T` embedding rows, one row emitted each.
    PerRow,
    /// One vector per component of a slot, emitting that component for every slot
    /// (`per_layer_hnet` over components or the hyper-decoder): `C + T` embedding rows.
    PerComponent,
    /// One vector per slot, emitting all of the slot's components (`layer`, `concat`):
    /// `S + T` embedding rows.
    PerSlot,
    /// One pooled vector emitting everything (Hypter): no embedding.
    Pooled,
}

/// A type of generated tensor; one generator MLP serves all slots of a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Generated {
    /// Adapter down-projection `[d, a]` (a components of width d, reshaped row-major).
    AdapterDown,
    /// Adapter up-projection `[a, d]`.
    AdapterUp,
    /// Adapter down bias `[a]`.
    AdapterBiasDown,
    /// Adapter up bias `[d]`.
    AdapterBiasUp,
    /// Prefix keys `[P, H, d_kv]`.
    PrefixKey,
    /// Prefix values `[P, H, d_kv]`.
    PrefixValue,
    /// LoRA A of projection `q|k|v|o` (index 0..4) `[in, r]`.
    LoraA(usize),
    /// LoRA B of projection `q|k|v|o` `[r, out]`.
    LoraB(usize),
    /// IA3 scale of the keys `[H·d_kv]` (the block's: self- or cross-attention).
    Ia3Key,
    /// IA3 scale of the values `[H·d_kv]`.
    Ia3Value,
    /// IA3 scale of the feed-forward's inner activations `[d_ff]` (the slot's layer's
    /// feed-forward; unused in decoder cross-attention slots, as adapters are).
    Ia3FeedForward,
    /// Prompt tokens `[T, d]` (not per slot).
    Prompt,
}

const PROJECTIONS: [&str; 4] = ["q", "k", "v", "o"];

impl Generated {
    /// The generator's variable-path name, as the reference's flax names
    /// (`hyper.adapter_down.wi.weight`, …).
    pub fn name(self) -> String {
        match self {
            Self::AdapterDown => "adapter_down".into(),
            Self::AdapterUp => "adapter_up".into(),
            Self::AdapterBiasDown => "adapter_bias_down".into(),
            Self::AdapterBiasUp => "adapter_bias_up".into(),
            Self::PrefixKey => "prefix_key".into(),
            Self::PrefixValue => "prefix_value".into(),
            Self::LoraA(i) => format!("lora_{}a", PROJECTIONS[i]),
            Self::LoraB(i) => format!("lora_{}b", PROJECTIONS[i]),
            Self::Ia3Key => "ia3_key".into(),
            Self::Ia3Value => "ia3_value".into(),
            Self::Ia3FeedForward => "ia3_feed_forward".into(),
            Self::Prompt => "prompt".into(),
        }
    }

    /// Width of one generated component vector.
    pub fn output_dim(self, t5: &T5Config, hyper: &HyperConfig) -> i64 {
        let (d, inner) = (t5.d_model, t5.inner_dim());
        match self {
            Self::AdapterDown | Self::AdapterUp | Self::AdapterBiasUp | Self::Prompt => d,
            Self::AdapterBiasDown => hyper.adapter_size,
            Self::PrefixKey | Self::PrefixValue | Self::Ia3Key | Self::Ia3Value => inner,
            Self::Ia3FeedForward => t5.d_ff,
            // A is [in, r]: the input of o is the concatenated heads.
            Self::LoraA(i) => {
                if i == 3 {
                    inner
                } else {
                    d
                }
            }
            Self::LoraB(i) => {
                if i == 3 {
                    d
                } else {
                    inner
                }
            }
        }
    }

    /// The hidden activations of this type's generator: `hypernet_activations`, or one
    /// `tanh` for the prefix generators under `use_tanh_prefix` (as the reference). One
    /// input projection each (`wi`, or `wi_0`, `wi_1`, … for several).
    pub fn activations(self, hyper: &HyperConfig) -> Vec<&str> {
        if hyper.use_tanh_prefix && matches!(self, Self::PrefixKey | Self::PrefixValue) {
            vec!["tanh"]
        } else {
            hyper
                .hypernet_activations
                .iter()
                .map(String::as_str)
                .collect()
        }
    }

    /// Whether an untrained generator should produce zeros in zero-init mode.
    pub fn zero_initialised(self) -> bool {
        // IA3 scales are 1 + generated: zeros are the identity.
        matches!(
            self,
            Self::AdapterUp
                | Self::AdapterBiasUp
                | Self::LoraB(_)
                | Self::Ia3Key
                | Self::Ia3Value
                | Self::Ia3FeedForward
        )
    }
}

/// One type's component range within a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComponentRange {
    /// The generated type.
    pub kind: Generated,
    /// First component index within the slot.
    pub start: i64,
    /// Number of components.
    pub count: i64,
}

/// The component layout of a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Slots `S = L_enc + 2·L_dec`.
    pub slots: i64,
    /// Components per slot `C`.
    pub per_slot: i64,
    /// The per-slot ranges, in the reference's order.
    pub ranges: Vec<ComponentRange>,
    /// Prompt rows after the `S·C` slot rows.
    pub prompt_tokens: i64,
    /// Encoder layers (slots `0..L_enc`).
    pub encoder_layers: i64,
    /// Decoder layers.
    pub decoder_layers: i64,
    /// What the generators read.
    pub reading: Reading,
}

impl Layout {
    /// The layout for a model: adapters (`2a + 2`), prefixes (`2P`), LoRA ranks, then IA3
    /// (3: keys, values, feed-forward).
    pub fn new(t5: &T5Config, hyper: &HyperConfig) -> Self {
        let mut ranges = Vec::new();
        let mut next = 0;
        let mut push = |kind, count| {
            ranges.push(ComponentRange {
                kind,
                start: next,
                count,
            });
            next += count;
        };
        if hyper.use_adapter {
            push(Generated::AdapterDown, hyper.adapter_size);
            push(Generated::AdapterUp, hyper.adapter_size);
            push(Generated::AdapterBiasDown, 1);
            push(Generated::AdapterBiasUp, 1);
        }
        if hyper.use_prefix {
            push(Generated::PrefixKey, hyper.num_prefix_tokens);
            push(Generated::PrefixValue, hyper.num_prefix_tokens);
        }
        if hyper.use_lora {
            for (i, rank) in hyper.lora_ranks.iter().enumerate() {
                if let Some(rank) = rank {
                    push(Generated::LoraA(i), *rank);
                    push(Generated::LoraB(i), *rank);
                }
            }
        }
        if hyper.use_ia3 {
            push(Generated::Ia3Key, 1);
            push(Generated::Ia3Value, 1);
            push(Generated::Ia3FeedForward, 1);
        }
        let encoder_layers = t5.num_layers;
        let decoder_layers = t5.decoder_layers();
        Self {
            slots: encoder_layers + 2 * decoder_layers,
            per_slot: next,
            ranges,
            prompt_tokens: if hyper.use_prompt {
                hyper.num_prompt_tokens
            } else {
                0
            },
            encoder_layers,
            decoder_layers,
            reading: match (hyper.layer_embedding_method, hyper.per_layer_hnet) {
                (LayerEmbedding::Pooled, _) => Reading::Pooled,
                (LayerEmbedding::Layer | LayerEmbedding::Concat, _) => Reading::PerSlot,
                (LayerEmbedding::Component | LayerEmbedding::Decoder, true) => {
                    Reading::PerComponent
                }
                (LayerEmbedding::Component | LayerEmbedding::Decoder, false) => Reading::PerRow,
            },
        }
    }

    /// Rows of the learned embedding the design reads (`0` for Hypter's, which has none):
    /// `S·C + T`, `C + T` or `S + T` ([`Reading`]).
    pub fn embedding_rows(&self) -> i64 {
        match self.reading {
            Reading::PerRow => self.rows(),
            Reading::PerComponent => self.per_slot + self.prompt_tokens,
            Reading::PerSlot => self.slots + self.prompt_tokens,
            Reading::Pooled => 0,
        }
    }

    /// The input vectors a generator of `kind` reads: rows of the embedding's output
    /// (index 0 of the single pooled vector for Hypter).
    pub fn inputs_of(&self, kind: Generated) -> Vec<i64> {
        let prompt_start = self.embedding_rows() - self.prompt_tokens;
        match (self.reading, kind) {
            (Reading::Pooled, _) => vec![0],
            (_, Generated::Prompt) => (prompt_start..prompt_start + self.prompt_tokens).collect(),
            (Reading::PerRow, _) => self.rows_of(kind),
            (Reading::PerComponent, _) => {
                let Some(range) = self.ranges.iter().find(|r| r.kind == kind) else {
                    return Vec::new();
                };
                (range.start..range.start + range.count).collect()
            }
            (Reading::PerSlot, _) => (0..self.slots).collect(),
        }
    }

    /// Component rows a generator of `kind` emits from each input vector (all of them
    /// from Hypter's one vector).
    pub fn emitted_per_input(&self, kind: Generated) -> i64 {
        match (self.reading, kind) {
            (Reading::Pooled, _) => self.rows_of(kind).len() as i64,
            (_, Generated::Prompt) | (Reading::PerRow, _) => 1,
            (Reading::PerComponent, _) => self.slots,
            (Reading::PerSlot, _) => self.count(kind),
        }
    }

    /// Rows of the component embedding: `S·C` plus the prompt rows.
    pub fn rows(&self) -> i64 {
        self.slots * self.per_slot + self.prompt_tokens
    }

    /// The slot of encoder layer `i`.
    pub fn encoder_slot(&self, layer: i64) -> i64 {
        layer
    }

    /// The slot of decoder layer `j`'s self-attention prefix and adapter.
    pub fn decoder_self_slot(&self, layer: i64) -> i64 {
        self.encoder_layers + 2 * layer
    }

    /// The slot of decoder layer `j`'s cross-attention prefix (its adapter is unused).
    pub fn decoder_cross_slot(&self, layer: i64) -> i64 {
        self.encoder_layers + 2 * layer + 1
    }

    /// The component-embedding rows of `kind` for every slot, slot-major: `S·count` rows.
    pub fn rows_of(&self, kind: Generated) -> Vec<i64> {
        if kind == Generated::Prompt {
            let start = self.slots * self.per_slot;
            return (start..start + self.prompt_tokens).collect();
        }
        let Some(range) = self.ranges.iter().find(|r| r.kind == kind) else {
            return Vec::new();
        };
        (0..self.slots)
            .flat_map(|slot| {
                let base = slot * self.per_slot + range.start;
                base..base + range.count
            })
            .collect()
    }

    /// The generated types present, in order (prompt last).
    pub fn kinds(&self) -> Vec<Generated> {
        let mut kinds: Vec<Generated> = self.ranges.iter().map(|r| r.kind).collect();
        if self.prompt_tokens > 0 {
            kinds.push(Generated::Prompt);
        }
        kinds
    }

    /// Components of `kind` per slot.
    pub fn count(&self, kind: Generated) -> i64 {
        self.ranges
            .iter()
            .find(|r| r.kind == kind)
            .map_or(0, |r| r.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `hint.md` §3: S, C and S·C of the reference sizes.
    #[test]
    fn slot_and_component_counts_match_the_reference_table() {
        for (size, s, c, rows) in [
            ("tiny", 6, 22, 132),
            ("small", 24, 32, 768),
            ("base", 36, 190, 6840),
            ("xl", 72, 1086, 78_192),
        ] {
            let layout = Layout::new(
                &T5Config::preset(size).unwrap(),
                &HyperConfig::preset(size).unwrap(),
            );
            assert_eq!(
                (layout.slots, layout.per_slot, layout.rows()),
                (s, c, rows),
                "{size}"
            );
        }
    }

    #[test]
    fn rows_are_slot_major_and_decoder_slots_interleave() {
        let layout = Layout::new(
            &T5Config::preset("tiny").unwrap(),
            &HyperConfig::preset("tiny").unwrap(),
        );
        // a = 8, P = 2: prefix keys are components 18, 19 of every slot.
        let rows = layout.rows_of(Generated::PrefixKey);
        assert_eq!(&rows[..4], &[18, 19, 22 + 18, 22 + 19]);
        assert_eq!(rows.len(), 12);
        assert_eq!(layout.decoder_self_slot(1), 4);
        assert_eq!(layout.decoder_cross_slot(1), 5);
    }
}
