//! The hypernetwork: learned component embeddings attend over the encoded instruction,
//! and one generator MLP per tensor type turns the component vectors into adapters,
//! prefixes, LoRA factors and prompt tokens.

use std::collections::{BTreeMap, HashMap};

use tch::{nn, Kind, Tensor};

use crate::t5::adaptation::{
    Adapter, AttentionAdaptation, LayerAdaptation, LoraDelta, Prefix, StackAdaptation,
};
use crate::t5::config::T5Config;
use crate::t5::layers::{in_kind, mask_value, LayerNorm, Linear};

use super::config::{HyperConfig, LayerEmbedding};
use super::decoder::HyperDecoder;
use super::layout::{Generated, Layout, Reading};

/// A variable of shape `[out, in]` drawn from t5x's `variance_scaling(1.0, 'fan_in',
/// 'truncated_normal')`: a normal truncated at two standard deviations, rescaled so that
/// the variance is `1/fan_in`.
pub(crate) fn truncated_normal_linear(p: nn::Path<'_>, fan_in: i64, fan_out: i64) -> Linear {
    let weight = p.var("weight", &[fan_out, fan_in], nn::Init::Const(0.0));
    tch::no_grad(|| {
        let mut draw = Tensor::randn([fan_out, fan_in], (Kind::Float, weight.device()));
        loop {
            let outside = draw.abs().gt(2.0);
            if !bool::try_from(outside.any()).unwrap_or(false) {
                break;
            }
            draw = draw.where_self(&outside.logical_not(), &draw.randn_like());
        }
        // 0.8796… is the standard deviation of a unit normal truncated to [-2, 2].
        let std = (1.0 / fan_in as f64).sqrt() / 0.879_625_661_034_239_8;
        let mut weight = weight.shallow_clone();
        weight.copy_(&(draw * std).to_kind(weight.kind()));
    });
    Linear::from_weight(weight)
}

/// A generator's hidden activation (`hypernet_activations`; names as flax's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Activation {
    /// GELU, tanh approximation (flax's `nn.gelu` default).
    Gelu,
    Relu,
    Silu,
    Tanh,
    Sigmoid,
    /// The identity (t5x's `linear`).
    Linear,
}

impl Activation {
    /// `None` for a name [`HyperConfig::validate`] refuses.
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "gelu" => Self::Gelu,
            "relu" => Self::Relu,
            "silu" | "swish" => Self::Silu,
            "tanh" => Self::Tanh,
            "sigmoid" => Self::Sigmoid,
            "linear" => Self::Linear,
            _ => return None,
        })
    }

    fn apply(self, x: Tensor) -> Tensor {
        match self {
            Self::Gelu => x.gelu("tanh"),
            Self::Relu => x.relu(),
            Self::Silu => x.silu(),
            Self::Tanh => x.tanh(),
            Self::Sigmoid => x.sigmoid(),
            Self::Linear => x,
        }
    }
}

/// One generator MLP, t5x's `MlpBlock` without biases: `wo(dropout(Π act_i(wi_i(z))))`,
/// then divided by √(input width); with `hnet_layernorm`, `z` is normalised first.
#[derive(Debug)]
struct Generator {
    norm: Option<LayerNorm>,
    /// One input projection per activation (`wi`, or `wi_0`, `wi_1`, … for several).
    wi: Vec<(Linear, Activation)>,
    wo: Linear,
    /// Width of one generated component row (`wo` emits several rows per input under the
    /// per-component, per-slot and pooled designs).
    width: i64,
}

impl Generator {
    fn forward(&self, z: &Tensor, dropout: f64, train: bool, scale: f64) -> Tensor {
        let z = match &self.norm {
            Some(norm) => norm.forward(z),
            None => z.shallow_clone(),
        };
        let hidden = self
            .wi
            .iter()
            .map(|(wi, activation)| activation.apply(wi.forward(&z)))
            .reduce(|product, factor| product * factor)
            .expect("a generator has at least one input projection");
        self.wo.forward(&hidden.dropout(dropout, train)) * scale
    }
}

/// The hypernetwork's parameters, all under `hyper.`.
#[derive(Debug)]
pub struct Hypernetwork {
    layout: Layout,
    /// One learned vector per generator input row ([`Layout::embedding_rows`]; none for
    /// Hypter's pooled design).
    component_embedding: Option<Tensor>,
    /// The hyper-attention of the embedding rows over the instruction (HINT, `layer`).
    attention: Option<[Linear; 4]>,
    /// HyperTune's hyper-decoder in its place.
    decoder: Option<HyperDecoder>,
    /// How the embedding meets the instruction.
    method: LayerEmbedding,
    /// Width of a generator input: `d`, or `2·d` for `concat`.
    input_width: i64,
    device: tch::Device,
    /// In a fixed order: generator dropout draws from the random generator in turn, so
    /// the order decides the masks (a HashMap's differs from process to process).
    generators: BTreeMap<Generated, Generator>,
    prefix_gate: Option<Tensor>,
    /// The input rows each generator reads ([`Layout::inputs_of`]).
    row_index: HashMap<Generated, Tensor>,
    num_heads: i64,
    d_kv: i64,
    d_model: i64,
    attention_dropout: f64,
    generator_dropout: f64,
    lora_alpha: f64,
    lora_ranks: [Option<i64>; 4],
}

/// The generated component outputs of a batch of instructions, per type:
/// `[B, S, count, out]` (prompt: `[B, T, d]`).
pub type GeneratedTensors = HashMap<Generated, Tensor>;

/// The mean of the instruction's states over its real tokens, `[B, 1, d]` (padding rows of
/// `states` are zero).
fn mean_pool(states: &Tensor, mask: &Tensor) -> Tensor {
    let count = mask.sum_dim_intlist(1, true, states.kind()).clamp_min(1.0);
    states.sum_dim_intlist(1, true, states.kind()) / count.unsqueeze(-1)
}

impl Hypernetwork {
    /// Creates the parameters under `p` (the `hyper` path).
    pub fn new(p: nn::Path<'_>, t5: &T5Config, hyper: &HyperConfig) -> Self {
        let layout = Layout::new(t5, hyper);
        let (d, inner, hd) = (t5.d_model, t5.inner_dim(), t5.d_kv);
        let method = hyper.layer_embedding_method;
        let component_embedding = (layout.embedding_rows() > 0).then(|| {
            p.var(
                "component_embedding",
                &[layout.embedding_rows(), d],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: (1.0 / d as f64).sqrt(),
                },
            )
        });
        let decoder = (hyper.use_instructions && method == LayerEmbedding::Decoder)
            .then(|| HyperDecoder::new(&p / "hyper_decoder", t5));
        let attention = hyper.attends_over_instruction().then(|| {
            let attn = &p / "hyperattn";
            let normal = |name: &str, fan_in: i64, fan_out: i64, std: f64| {
                Linear::new(&attn / name, fan_in, fan_out, std)
            };
            [
                // 1/sqrt(head dim) lives in the query's initialisation, as in t5x.
                normal("q", d, inner, (1.0 / (d * hd) as f64).sqrt()),
                normal("k", d, inner, (1.0 / d as f64).sqrt()),
                normal("v", d, inner, (1.0 / d as f64).sqrt()),
                normal("o", inner, d, (1.0 / inner as f64).sqrt()),
            ]
        });
        // The reference's generators infer their input width (wider under `concat`).
        let input_width = hyper.generator_input_width(d);
        let mut generators = BTreeMap::new();
        let mut row_index = HashMap::new();
        for kind in layout.kinds() {
            let g = &p / kind.name();
            let width = kind.output_dim(t5, hyper);
            let out = width * layout.emitted_per_input(kind);
            let names = kind.activations(hyper);
            let wi = names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let path = if names.len() == 1 {
                        &g / "wi"
                    } else {
                        &g / format!("wi_{i}")
                    };
                    // HyperConfig::validate refuses unknown names; GELU stands in regardless.
                    let activation = Activation::from_name(name).unwrap_or(Activation::Gelu);
                    (truncated_normal_linear(path, input_width, d), activation)
                })
                .collect();
            let wo = if hyper.zero_init_generated && kind.zero_initialised() {
                Linear::new(&g / "wo", d, out, 0.0)
            } else {
                truncated_normal_linear(&g / "wo", d, out)
            };
            let norm = hyper.normalises_generator_inputs().then(|| {
                LayerNorm::new(
                    &p / format!("{}_norm", kind.name()),
                    input_width,
                    t5.layer_norm_epsilon,
                    1.0,
                )
            });
            generators.insert(
                kind,
                Generator {
                    norm,
                    wi,
                    wo,
                    width,
                },
            );
            row_index.insert(
                kind,
                Tensor::from_slice(&layout.inputs_of(kind)).to_device(p.device()),
            );
        }
        let prefix_gate = (hyper.use_prefix && hyper.zero_init_generated)
            .then(|| p.var("prefix_gate", &[layout.slots], nn::Init::Const(0.0)));
        Self {
            layout,
            component_embedding,
            attention,
            decoder,
            method,
            input_width,
            device: p.device(),
            generators,
            prefix_gate,
            row_index,
            num_heads: t5.num_heads,
            d_kv: hd,
            d_model: d,
            attention_dropout: t5.dropout_rate,
            generator_dropout: hyper.generator_dropout,
            lora_alpha: hyper.lora_alpha,
            lora_ranks: hyper.lora_ranks,
        }
    }

    /// The slot layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The generators' input vectors `[B, rows, width]` ([`Layout::embedding_rows`] rows):
    /// the learned embedding attending over the instruction (`states [B, L, d]`,
    /// `mask [B, L]`) — through the hyper-decoder for HyperTune —, the mean-pooled
    /// instruction beside each embedding row (`concat`, `2·d` wide), or the embedding alone
    /// `[1, rows, d]` when the model does not read instructions. Hypter's pooled design
    /// gives the mean of the instruction's states `[B, 1, d]` (zeros without an
    /// instruction, which [`HyperConfig::validate`] refuses).
    pub fn components(&self, instruction: Option<(&Tensor, &Tensor)>, train: bool) -> Tensor {
        let pooled = || match instruction {
            Some((states, mask)) => mean_pool(states, mask),
            None => Tensor::zeros([1, 1, self.d_model], (Kind::Float, self.device)),
        };
        let Some(embedding) = &self.component_embedding else {
            return pooled();
        };
        let queries = embedding.unsqueeze(0);
        let rows = queries.size()[1];
        if self.method == LayerEmbedding::Concat {
            let pooled = pooled();
            let batch = pooled.size()[0];
            let shape = [batch, rows, self.d_model];
            return Tensor::cat(
                &[
                    pooled.expand(shape, false),
                    in_kind(&queries, pooled.kind()).expand(shape, false),
                ],
                2,
            );
        }
        if let (Some(decoder), Some((states, mask))) = (&self.decoder, instruction) {
            return decoder.forward(&queries, states, mask, train);
        }
        let (Some([q, k, v, o]), Some((states, mask))) = (&self.attention, instruction) else {
            return queries;
        };
        let kind = states.kind();
        let (batch, len) = (states.size()[0], states.size()[1]);
        let heads =
            |x: Tensor, n: i64, t: i64| x.view([n, t, self.num_heads, self.d_kv]).transpose(1, 2);
        let query = heads(q.forward(&in_kind(&queries, kind)), 1, rows);
        let key = heads(k.forward(states), batch, len);
        let value = heads(v.forward(states), batch, len);
        let bias: Tensor =
            (1.0 - mask.to_kind(Kind::Float).view([batch, 1, 1, len])) * mask_value(kind);
        let weights = (query.matmul(&key.transpose(-1, -2)).to_kind(Kind::Float) + bias)
            .softmax(-1, Kind::Float)
            .to_kind(kind)
            .dropout(self.attention_dropout, train);
        let context = weights.matmul(&value).transpose(1, 2).contiguous().view([
            batch,
            rows,
            self.num_heads * self.d_kv,
        ]);
        o.forward(&context)
    }

    /// Runs every generator on its input rows: `[B, S, count, out]` per type (prompt:
    /// `[B, T, d]`).
    pub fn generate(&self, components: &Tensor, train: bool) -> GeneratedTensors {
        // The reference divides by the square root of the generator input's width.
        let scale = (self.input_width as f64).powf(-0.5);
        let batch = components.size()[0];
        let layout = &self.layout;
        self.generators
            .iter()
            .map(|(kind, generator)| {
                let inputs = components.index_select(1, &self.row_index[kind]);
                let out = generator.forward(&inputs, self.generator_dropout, train, scale);
                let width = generator.width;
                let shaped = if *kind == Generated::Prompt {
                    out.view([batch, layout.prompt_tokens, width])
                } else if layout.reading == Reading::PerComponent {
                    // Each component's vector emitted that component for every slot.
                    out.view([batch, layout.count(*kind), layout.slots, width])
                        .transpose(1, 2)
                        .contiguous()
                } else {
                    out.view([batch, layout.slots, layout.count(*kind), width])
                };
                (*kind, shaped)
            })
            .collect()
    }

    /// Turns generated tensors into per-stack adaptations (slot `i` for encoder layer `i`;
    /// `L_enc + 2j` and `L_enc + 2j + 1` for decoder layer `j`).
    pub fn adaptations(&self, generated: &GeneratedTensors) -> (StackAdaptation, StackAdaptation) {
        let layout = &self.layout;
        let encoder = (0..layout.encoder_layers)
            .map(|i| LayerAdaptation {
                self_attention: self.attention_adaptation(generated, layout.encoder_slot(i)),
                cross_attention: AttentionAdaptation::default(),
                adapter: self.adapter(generated, layout.encoder_slot(i)),
                ia3_feed_forward: Self::ia3(
                    generated,
                    Generated::Ia3FeedForward,
                    layout.encoder_slot(i),
                ),
            })
            .collect();
        let decoder = (0..layout.decoder_layers)
            .map(|j| LayerAdaptation {
                self_attention: self.attention_adaptation(generated, layout.decoder_self_slot(j)),
                cross_attention: self.attention_adaptation(generated, layout.decoder_cross_slot(j)),
                adapter: self.adapter(generated, layout.decoder_self_slot(j)),
                ia3_feed_forward: Self::ia3(
                    generated,
                    Generated::Ia3FeedForward,
                    layout.decoder_self_slot(j),
                ),
            })
            .collect();
        (
            StackAdaptation { layers: encoder },
            StackAdaptation { layers: decoder },
        )
    }

    fn slot(generated: &GeneratedTensors, kind: Generated, slot: i64) -> Option<Tensor> {
        generated.get(&kind).map(|t| t.select(1, slot))
    }

    /// An IA3 scale `[B, 1, width]`: one plus the slot's generated vector, so that zeros
    /// are the identity.
    fn ia3(generated: &GeneratedTensors, kind: Generated, slot: i64) -> Option<Tensor> {
        Self::slot(generated, kind, slot).map(|t| t + 1.0)
    }

    fn adapter(&self, generated: &GeneratedTensors, slot: i64) -> Option<Adapter> {
        let down = Self::slot(generated, Generated::AdapterDown, slot)?;
        let (batch, a) = (down.size()[0], down.size()[1]);
        Some(Adapter {
            // The [a, d] block of component outputs is read row-major as [d, a] — a
            // reshape, not a transpose, to stay weight-compatible with the reference.
            down: down.reshape([batch, self.d_model, a]),
            up: Self::slot(generated, Generated::AdapterUp, slot)?,
            down_bias: Self::slot(generated, Generated::AdapterBiasDown, slot)?,
            up_bias: Self::slot(generated, Generated::AdapterBiasUp, slot)?,
        })
    }

    fn attention_adaptation(&self, generated: &GeneratedTensors, slot: i64) -> AttentionAdaptation {
        let head_space = |t: Tensor| {
            let (batch, p) = (t.size()[0], t.size()[1]);
            t.view([batch, p, self.num_heads, self.d_kv])
                .transpose(1, 2)
        };
        let prefix = match (
            Self::slot(generated, Generated::PrefixKey, slot),
            Self::slot(generated, Generated::PrefixValue, slot),
        ) {
            (Some(key), Some(value)) => Some(Prefix {
                key: head_space(key),
                value: head_space(value),
                gate: self.prefix_gate.as_ref().map(|g| g.narrow(0, slot, 1)),
            }),
            _ => None,
        };
        let lora = std::array::from_fn(|i| {
            let rank = self.lora_ranks[i]?;
            let a = Self::slot(generated, Generated::LoraA(i), slot)?;
            let b = Self::slot(generated, Generated::LoraB(i), slot)?;
            let (batch, r, width) = (a.size()[0], a.size()[1], a.size()[2]);
            Some(LoraDelta {
                // As for adapters: r component vectors of width `in`, read as [in, r].
                a: a.reshape([batch, width, r]),
                b,
                scale: self.lora_alpha / rank as f64,
            })
        });
        AttentionAdaptation {
            prefix,
            lora,
            projected_memory: None,
            ia3_key: Self::ia3(generated, Generated::Ia3Key, slot),
            ia3_value: Self::ia3(generated, Generated::Ia3Value, slot),
        }
    }

    /// Number of scalar parameters (component embedding, hyper-attention, generators,
    /// prefix gate).
    pub fn parameter_count(&self) -> i64 {
        let mut count = self
            .component_embedding
            .as_ref()
            .map_or(0, |e| e.numel() as i64);
        count += self
            .decoder
            .as_ref()
            .map_or(0, HyperDecoder::parameter_count);
        if let Some(attention) = &self.attention {
            count += attention
                .iter()
                .map(|l| l.weight.numel() as i64)
                .sum::<i64>();
        }
        count += self
            .generators
            .values()
            .map(|g| {
                let norm = g.norm.as_ref().map_or(0, |n| n.weight.numel());
                let wi: usize = g.wi.iter().map(|(wi, _)| wi.weight.numel()).sum();
                (wi + g.wo.weight.numel() + norm) as i64
            })
            .sum::<i64>();
        count + self.prefix_gate.as_ref().map_or(0, |g| g.numel() as i64)
    }
}
