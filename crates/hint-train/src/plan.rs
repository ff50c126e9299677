//! Whether a run fits before it runs (`hint plan`): the bytes of parameters, gradients
//! and Adafactor's (factored) state, counted exactly from the configuration without
//! building the model, and the activations a training step keeps per example, from a
//! model of what this implementation's forward pass saves for its backward pass.
//!
//! The activation model is a sum of per-example terms, each a count of elements this
//! implementation materialises (hidden states `T·d`, feed-forward `T·d_ff`, attention
//! scores `H·T_q·T_k`, the logits `T·V`, the hypernetwork's generated tensors, …) times a
//! number of bytes per element. The counts follow the forward pass; the bytes per element
//! were fitted once to measured first-step peaks on this machine (`benches/memory_fit.py`
//! refits them) and hold for other sizes because every term is a tensor shape of the
//! model. `benches/memory_validate.sh` checks predictions against measured peaks.

use std::collections::BTreeMap;

use hint_data::InstructionMode;
use hint_model::hyper::layout::Layout;
use hint_model::{parameter_shapes, RematPolicy};
use hint_optim::group_of_each;
use serde::Serialize;

use crate::error::Result;
use crate::settings::RunSettings;
use crate::trainer::{owners_by_size, ComputeDtype};

/// Elements of what a training forward pass keeps, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ActivationTerms {
    /// Hidden states: Σ over transformer blocks of `T·d_model`.
    pub hidden: f64,
    /// Feed-forward activations: Σ over blocks of `T·d_ff`.
    pub feed_forward: f64,
    /// Attention scores: Σ over attention layers of `H·T_query·T_key` (prefixes included).
    pub attention: f64,
    /// Per-head projections: Σ over attention layers of `(T_query + 2·T_key)·H·d_kv`.
    pub projections: f64,
    /// The logits: `T_targets·vocab`.
    pub logits: f64,
    /// The generated adapters, prefixes and LoRA, one copy per example.
    pub generated: f64,
    /// The hypernetwork's own activations (its generators' hidden rows, its attention
    /// over the instruction).
    pub hypernetwork: f64,
}

impl ActivationTerms {
    fn dot(&self, c: &ActivationTerms) -> f64 {
        self.hidden * c.hidden
            + self.feed_forward * c.feed_forward
            + self.attention * c.attention
            + self.projections * c.projections
            + self.logits * c.logits
            + self.generated * c.generated
            + self.hypernetwork * c.hypernetwork
    }

    fn scaled(&self, by: f64) -> ActivationTerms {
        ActivationTerms {
            hidden: self.hidden * by,
            feed_forward: self.feed_forward * by,
            attention: self.attention * by,
            projections: self.projections * by,
            logits: self.logits * by,
            generated: self.generated * by,
            hypernetwork: self.hypernetwork * by,
        }
    }

    fn add(&mut self, other: &ActivationTerms) {
        self.hidden += other.hidden;
        self.feed_forward += other.feed_forward;
        self.attention += other.attention;
        self.projections += other.projections;
        self.logits += other.logits;
        self.generated += other.generated;
        self.hypernetwork += other.hypernetwork;
    }
}

/// Bytes per element of each term.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ActivationBytes {
    /// Bytes per element kept without rematerialisation.
    pub kept: ActivationTerms,
    /// With `remat_policy = full`: bytes per element of each block's input (kept for the
    /// recomputation).
    pub block_input: f64,
    /// With `remat_policy = full`: bytes per element of a stack's attention biases.
    pub bias: f64,
    /// With `remat_policy = full`: the largest block's recomputation at the step's peak,
    /// as a multiple of its kept bytes (its gradients come on top).
    pub recomputed: f64,
}

/// As [`activation_bytes`], for the fused CPU kernels (`benches/memory_fit.py` with them
/// on, the default): about a fifth less per hidden and feed-forward element in f32, half
/// as much per hidden element in bf16.
fn fused_activation_bytes(compute: ComputeDtype, dropout: bool) -> ActivationBytes {
    let (kept, block_input, bias, recomputed) = match (compute, dropout) {
        // Fitted: no remat -7%..+1%, remat full -11%..+34% over 18 configurations.
        (ComputeDtype::Float32, false) => {
            ([10.56, 12.16, 3.94, 7.38, 15.33, 6.18], 3.94, 3.62, 1.308)
        }
        // Fitted: no remat -9%..+1%, remat full -12%..+26% over 18 configurations.
        (ComputeDtype::Float32, true) => {
            ([13.82, 15.09, 12.04, 10.07, 16.5, 7.03], 5.29, 1.86, 1.205)
        }
        // Fitted: no remat -10%..+4%, remat full -13%..+73% over 18 configurations.
        (ComputeDtype::Bfloat16, false) => {
            ([2.26, 5.0, 2.18, 4.75, 15.17, 3.62], 2.46, 1.31, 1.255)
        }
        // Fitted: no remat -11%..+2%, remat full -11%..+81% over 18 configurations.
        (ComputeDtype::Bfloat16, true) => ([5.94, 6.9, 6.12, 5.58, 15.65, 3.78], 2.77, 0.61, 1.111),
    };
    let [hidden, feed_forward, attention, projections, logits, hypernetwork] = kept;
    ActivationBytes {
        kept: ActivationTerms {
            hidden,
            feed_forward,
            attention,
            projections,
            logits,
            generated: 0.0,
            hypernetwork,
        },
        block_input,
        bias,
        recomputed,
    }
}

/// Which implementation of T5's element-wise layers a step runs, which decides what its
/// forward pass keeps: the fused CPU kernels (`hint_model::fused_kernels`) keep only the
/// RMS norm's input and the gated product, libtorch's operators also an f32 copy of each
/// norm's input, its rounded normalised values and the activation's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kernels {
    /// The fused kernels: CPU, f32 or bf16, unless `HINT_FUSED_KERNELS=0`.
    Fused,
    /// libtorch's operators: CUDA, or the fused kernels turned off.
    Composed,
}

impl Kernels {
    /// What a step on `device` runs in this process.
    pub fn on(device: tch::Device) -> Kernels {
        if device == tch::Device::Cpu && hint_model::fused_kernels() {
            Kernels::Fused
        } else {
            Kernels::Composed
        }
    }
}

/// The fitted bytes per element for f32 or bf16 activations, without or with dropout
/// (dropout keeps a mask and often a second copy of what it drops from), for either
/// implementation of the element-wise layers, measured as the bytes CPU tensors held in
/// first steps of fresh processes (`benches/memory_fit.py`, whose output for each set is
/// quoted beside it; the composed sets with `HINT_FUSED_KERNELS=0`). The elements are the
/// model's tensor shapes, so the fit carries to other sizes and, for the composed sets, to
/// CUDA, whose allocator counts the same tensors (rounded up to its 512-byte blocks).
pub fn activation_bytes(compute: ComputeDtype, dropout: bool, kernels: Kernels) -> ActivationBytes {
    if kernels == Kernels::Fused {
        return fused_activation_bytes(compute, dropout);
    }
    match (compute, dropout) {
        // Fitted: no remat -12%..+2%, remat full -10%..+27% over 18 configurations.
        (ComputeDtype::Float32, false) => ActivationBytes {
            kept: ActivationTerms {
                hidden: 13.32,
                feed_forward: 15.69,
                attention: 3.77,
                projections: 9.71,
                logits: 16.23,
                generated: 0.0,
                hypernetwork: 5.63,
            },
            block_input: 5.4,
            bias: 2.99,
            recomputed: 1.254,
        },
        // Fitted: no remat -11%..+1%, remat full -15%..+27% over 18 configurations.
        (ComputeDtype::Float32, true) => ActivationBytes {
            kept: ActivationTerms {
                hidden: 16.61,
                feed_forward: 18.59,
                attention: 11.86,
                projections: 12.43,
                logits: 17.13,
                generated: 0.0,
                hypernetwork: 6.5,
            },
            block_input: 6.69,
            bias: 1.81,
            recomputed: 1.171,
        },
        // Fitted: no remat -15%..+4%, remat full -13%..+96% over 18 configurations.
        (ComputeDtype::Bfloat16, false) => ActivationBytes {
            kept: ActivationTerms {
                hidden: 5.03,
                feed_forward: 6.49,
                attention: 1.9,
                projections: 7.19,
                logits: 15.86,
                generated: 0.0,
                hypernetwork: 3.24,
            },
            block_input: 3.69,
            bias: 0.88,
            recomputed: 1.187,
        },
        // Fitted: no remat -13%..+2%, remat full -14%..+101% over 18 configurations.
        (ComputeDtype::Bfloat16, true) => ActivationBytes {
            kept: ActivationTerms {
                hidden: 8.46,
                feed_forward: 8.48,
                attention: 5.89,
                projections: 7.97,
                logits: 16.38,
                generated: 0.0,
                hypernetwork: 3.36,
            },
            block_input: 3.92,
            bias: 0.51,
            recomputed: 1.109,
        },
    }
}

/// One transformer block's terms: `t` queries over `keys` keys.
fn block_terms(t5: &hint_model::T5Config, t: f64, keys: &[f64]) -> ActivationTerms {
    let (d, ff, heads) = (t5.d_model as f64, t5.d_ff as f64, t5.num_heads as f64);
    let inner = t5.inner_dim() as f64;
    ActivationTerms {
        hidden: t * d,
        feed_forward: t * ff,
        attention: keys.iter().map(|k| heads * t * k).sum(),
        projections: keys.iter().map(|k| (t + 2.0 * k) * inner).sum(),
        ..ActivationTerms::default()
    }
}

/// Elements of one block's weight products (`remat_policy = minimal` keeps them): q for
/// the `t` queries and k, v for the keys each attention projects itself (`keys`: not a
/// generated prefix's), its output projection, and the feed-forward's input and output
/// projections.
fn block_products(t5: &hint_model::T5Config, t: f64, keys: &[f64]) -> f64 {
    let (d, ff, inner) = (t5.d_model as f64, t5.d_ff as f64, t5.inner_dim() as f64);
    let inputs = if t5.feed_forward_proj.is_gated() {
        2.0
    } else {
        1.0
    };
    let attention: f64 = keys.iter().map(|k| (t + 2.0 * k) * inner + t * d).sum();
    attention + t * (inputs * ff + d)
}

/// A stack of transformer blocks in a step.
#[derive(Debug, Clone, Serialize)]
pub struct StackTerms {
    /// `encoder`, `instruction encoder` or `decoder`.
    pub name: String,
    /// One block's terms, for one row.
    pub block: ActivationTerms,
    /// Blocks.
    pub blocks: i64,
    /// Elements of the stack's attention biases (position and masks), for one row.
    pub biases: f64,
    /// Elements of one block's weight products, for one row.
    pub products: f64,
    /// Whether the stack runs once per distinct instruction rather than per example.
    pub per_instruction: bool,
}

impl StackTerms {
    /// The stack's rows in a step of `examples` rows with `instructions` distinct
    /// instructions.
    fn rows(&self, examples: f64, instructions: f64) -> f64 {
        if self.per_instruction {
            instructions
        } else {
            examples
        }
    }
}

/// The terms of a run's training step: per example, and per distinct instruction (the
/// instruction encoder and the hypernetwork run once per distinct instruction in a batch).
#[derive(Debug, Clone, Serialize)]
pub struct StepTerms {
    /// The stacks.
    pub stacks: Vec<StackTerms>,
    /// Outside the blocks, per example: the logits, the generated tensors.
    pub per_example: ActivationTerms,
    /// Outside the blocks, per distinct instruction: the hypernetwork.
    pub per_instruction: ActivationTerms,
}

impl StepTerms {
    /// Every kept element of a step of `examples` rows with `instructions` distinct
    /// instructions.
    pub fn total(&self, examples: f64, instructions: f64) -> ActivationTerms {
        let mut total = self.per_example.scaled(examples);
        total.add(&self.per_instruction.scaled(instructions));
        for stack in &self.stacks {
            let rows = stack.rows(examples, instructions);
            total.add(&stack.block.scaled(rows * stack.blocks as f64));
        }
        total
    }

    /// Bytes a step of `examples` rows with `instructions` distinct instructions keeps
    /// without rematerialisation.
    pub fn bytes(&self, coefficients: &ActivationBytes, examples: f64, instructions: f64) -> f64 {
        self.total(examples, instructions).dot(&coefficients.kept)
    }

    /// What a step keeps with `remat_policy = full`, in parts: each block's input and
    /// each stack's biases and what lies outside the blocks (the logits aside); the
    /// largest block's activations, which the backward pass recomputes one block at a
    /// time; and the logits with their gradient, rematerialised a chunk of positions at a
    /// time. See [`RematBytes::peak`].
    pub fn remat_bytes(
        &self,
        coefficients: &ActivationBytes,
        examples: f64,
        instructions: f64,
    ) -> RematBytes {
        let kept = &coefficients.kept;
        let rows = |stack: &StackTerms| stack.rows(examples, instructions);
        let inputs: f64 = self
            .stacks
            .iter()
            .map(|s| {
                rows(s)
                    * (s.block.hidden * s.blocks as f64 * coefficients.block_input
                        + s.biases * coefficients.bias)
            })
            .sum();
        let largest = self
            .stacks
            .iter()
            .map(|s| rows(s) * s.block.dot(kept))
            .fold(0.0, f64::max);
        let logits = self.per_example.logits * kept.logits * examples;
        RematBytes {
            kept: inputs + self.per_example.dot(kept) * examples - logits
                + self.per_instruction.dot(kept) * instructions,
            recomputed_block: largest * coefficients.recomputed,
            logits,
            logit_chunk: hint_model::REMAT_LOSS_CHUNK_LOGITS as f64 * kept.logits,
        }
    }

    /// Bytes a step keeps with `remat_policy = minimal`, per example: what `full` keeps,
    /// every block's weight products (`element_bytes` each, the compute dtype's), the
    /// logits whole (the loss is not rematerialised: they are a product too), and the
    /// largest block's recomputation less its products, which it takes back rather than
    /// recomputes. Linear in the examples, so one example's share.
    pub fn minimal_bytes(
        &self,
        coefficients: &ActivationBytes,
        element_bytes: f64,
        instructions_per_example: f64,
    ) -> f64 {
        let full = self.remat_bytes(coefficients, 1.0, instructions_per_example);
        let rows = |s: &StackTerms| s.rows(1.0, instructions_per_example);
        let products: f64 = self
            .stacks
            .iter()
            .map(|s| rows(s) * s.products * s.blocks as f64 * element_bytes)
            .sum();
        let recomputed = self
            .stacks
            .iter()
            .map(|s| {
                rows(s) * (s.block.dot(&coefficients.kept) - s.products * element_bytes).max(0.0)
            })
            .fold(0.0, f64::max)
            * coefficients.recomputed;
        full.kept + recomputed + full.logits + products
    }
}

/// The parts of a rematerialised step's activations ([`StepTerms::remat_bytes`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RematBytes {
    /// Kept through the step: block inputs, biases, what is outside the blocks.
    pub kept: f64,
    /// The largest block, recomputed.
    pub recomputed_block: f64,
    /// Every logit of the step with its gradient, were they whole.
    pub logits: f64,
    /// At most this many bytes of logits exist at once (one chunk).
    pub logit_chunk: f64,
}

impl RematBytes {
    /// The peak: what is kept, the recomputed block and a chunk of logits (counted
    /// together, which is at most what there is: one may be gone when the other comes).
    pub fn peak(&self) -> f64 {
        self.kept + self.recomputed_block + self.logits.min(self.logit_chunk)
    }

    /// The same parts for `by` times the examples and instructions.
    pub fn scaled(&self, by: f64) -> RematBytes {
        RematBytes {
            kept: self.kept * by,
            recomputed_block: self.recomputed_block * by,
            logits: self.logits * by,
            logit_chunk: self.logit_chunk,
        }
    }
}

/// The terms of `settings`' training step.
pub fn step_terms(settings: &RunSettings) -> StepTerms {
    let (t5, hyper) = (&settings.t5, &settings.hyper);
    let lengths = settings.run.lengths;
    let concat = settings.run.instruction_mode == InstructionMode::Concat;
    let prompt = if hyper.use_prompt && hyper.has_hypernetwork() {
        hyper.num_prompt_tokens
    } else {
        0
    };
    let inputs =
        (lengths.inputs + if concat { lengths.hyper_inputs } else { 0 } + prompt as usize) as f64;
    let instruction = if hyper.uses_instruction() && !concat {
        lengths.hyper_inputs as f64
    } else {
        0.0
    };
    let targets = lengths.targets as f64;
    let prefix = if hyper.use_prefix && hyper.has_hypernetwork() {
        hyper.num_prefix_tokens as f64
    } else {
        0.0
    };
    let memory = inputs
        + if hyper.use_fusion_in_decoder && hyper.use_instructions {
            instruction
        } else {
            0.0
        };
    let heads = t5.num_heads as f64;
    let mut stacks = vec![StackTerms {
        name: "encoder".into(),
        block: block_terms(t5, inputs, &[inputs + prefix]),
        blocks: t5.num_layers,
        biases: heads * inputs * (inputs + prefix),
        products: block_products(t5, inputs, &[inputs]),
        per_instruction: false,
    }];
    if instruction > 0.0 {
        stacks.push(StackTerms {
            name: "instruction encoder".into(),
            block: block_terms(t5, instruction, &[instruction]),
            blocks: t5.num_layers,
            biases: heads * instruction * instruction,
            products: block_products(t5, instruction, &[instruction]),
            per_instruction: true,
        });
    }
    stacks.push(StackTerms {
        name: "decoder".into(),
        block: block_terms(t5, targets, &[targets + prefix, memory + prefix]),
        blocks: t5.decoder_layers(),
        biases: heads * targets * (targets + prefix) + heads * targets * (memory + prefix),
        products: block_products(t5, targets, &[targets, memory]),
        per_instruction: false,
    });
    let (generated, hypernetwork) = if hyper.has_hypernetwork() {
        let layout = Layout::new(t5, hyper);
        let d = t5.d_model as f64;
        let generated: f64 = layout
            .kinds()
            .iter()
            .map(|kind| layout.rows_of(*kind).len() as f64 * kind.output_dim(t5, hyper) as f64)
            .sum();
        let hidden = layout.rows() as f64 * (2.0 * d + heads * instruction);
        (generated, hidden + generated)
    } else {
        (0.0, 0.0)
    };
    StepTerms {
        stacks,
        per_example: ActivationTerms {
            logits: targets * t5.vocab_size as f64,
            generated,
            ..ActivationTerms::default()
        },
        per_instruction: ActivationTerms {
            hypernetwork,
            ..ActivationTerms::default()
        },
    }
}

/// What a run's training step holds, on the rank that holds the most.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryPlan {
    /// Parameters of the model.
    pub parameters: i64,
    /// Of them, trainable (not in a frozen group).
    pub trainable_parameters: i64,
    /// Bytes of the parameters (`param_dtype`).
    pub parameter_bytes: u64,
    /// Bytes of the gradients (trainable parameters, `param_dtype`).
    pub gradient_bytes: u64,
    /// Bytes of Adafactor's state on the most loaded rank (f32; factored where it
    /// factors).
    pub optimizer_state_bytes: u64,
    /// Bytes of Adafactor's working memory during its update: an f32 buffer as large as
    /// the largest trainable parameter (and, for bf16 parameters, f32 copies of it and of
    /// its gradient). The activations are gone by then: a step's peak is the larger of
    /// the two.
    pub optimizer_scratch_bytes: u64,
    /// The gradient the backward pass computes first, for the output layer (the largest
    /// trainable parameter), while every activation is still there: a temporary beside
    /// its buffer where the gradients are held ([`MemoryPlan::gradients_held`]), else the
    /// first gradient itself.
    pub accumulation_bytes: u64,
    /// Whether the gradients are held through the forward pass: on several ranks (they
    /// are views of the reducer's buckets) or with several microbatches (the later ones
    /// add into the earlier ones'). One process with one pass drops them before each step
    /// (PyTorch's `set_to_none`), and they then grow as the activations are freed.
    pub gradients_held: bool,
    /// Activation bytes per example without rematerialisation.
    pub activation_bytes_per_example: u64,
    /// Without rematerialisation, when the compute dtype is not the parameters' (bf16 on
    /// f32 masters): the weights cast for the products, which the products keep for the
    /// backward pass, so the whole step holds a second copy of every weight but the untied
    /// input embedding (whose rows are cast after the lookup). Rematerialised blocks cast
    /// their weights again when they are recomputed, one block at a time.
    pub weight_copy_bytes: u64,
    /// With `remat_policy = full`: the cost of one more example once the step is large
    /// (what is kept, and the recomputed block's share).
    pub remat_activation_bytes_per_example: u64,
    /// With `remat_policy = full`: the parts of one example's activations.
    pub remat: RematBytes,
    /// With `remat_policy = minimal`: activation bytes per example.
    pub minimal_activation_bytes_per_example: u64,
    /// The step's peak at the configured microbatch, without rematerialisation.
    pub peak_bytes_without_remat: u64,
    /// The same with `remat_policy = full`.
    pub peak_bytes_with_remat: u64,
    /// The same with `remat_policy = minimal`.
    pub peak_bytes_with_minimal_remat: u64,
    /// Distinct instructions per example assumed (1: every example brings its own, the
    /// most the hypernetwork and the instruction encoder can cost).
    pub instructions_per_example: f64,
    /// Examples per rank at the configured global batch.
    pub batch_per_rank: usize,
    /// Examples per rank in one forward and backward pass: the rank's share split into
    /// `TrainConfig.microbatches` (activations are those of one microbatch).
    pub microbatch_per_rank: usize,
    /// Ranks.
    pub world_size: usize,
    /// Whether the optimizer state is sharded over the ranks.
    pub sharded: bool,
    /// The configured policy.
    pub remat_policy: RematPolicy,
    /// The element-wise kernels the activation bytes were counted for.
    pub kernels: Kernels,
    /// The per-example terms the activation bytes come from.
    pub terms: StepTerms,
}

impl MemoryPlan {
    /// What a step holds throughout: parameters, optimizer state, and the gradients where
    /// they are held ([`MemoryPlan::gradients_held`]).
    pub fn fixed_bytes(&self) -> u64 {
        let gradients = if self.gradients_held {
            self.gradient_bytes
        } else {
            0
        };
        self.parameter_bytes + gradients + self.optimizer_state_bytes
    }

    /// Activation bytes per example under `policy` (with `full`, the cost of one more
    /// example in a large step).
    pub fn activation_bytes(&self, policy: RematPolicy) -> u64 {
        match policy {
            RematPolicy::None => self.activation_bytes_per_example,
            RematPolicy::Full => self.remat_activation_bytes_per_example,
            RematPolicy::Minimal => self.minimal_activation_bytes_per_example,
        }
    }

    /// The step's peak at `batch` examples per rank in one pass (a microbatch) under
    /// `policy`.
    pub fn peak_bytes(&self, batch: usize, policy: RematPolicy) -> u64 {
        let activations = match policy {
            RematPolicy::None => {
                batch as u64 * self.activation_bytes_per_example + self.weight_copy_bytes
            }
            RematPolicy::Full => self.remat.scaled(batch as f64).peak() as u64,
            RematPolicy::Minimal => batch as u64 * self.minimal_activation_bytes_per_example,
        };
        // The gradients there at the activations' peak. Held ones are there from the
        // start, and the first one made (the output layer's) is a temporary beside its
        // buffer. Dropped ones grow as the backward pass frees the activations: the first
        // one is there with all of them; with `full`, which keeps so few that the step
        // peaks late in its backward pass, nearly every one is.
        let gradients = if self.gradients_held {
            self.gradient_bytes + self.accumulation_bytes
        } else if policy == RematPolicy::Full {
            self.gradient_bytes
        } else {
            self.accumulation_bytes
        };
        // The optimizer's update comes once the activations are gone, with every gradient.
        let update = self.optimizer_scratch_bytes + self.gradient_bytes;
        self.parameter_bytes + self.optimizer_state_bytes + (gradients + activations).max(update)
    }

    /// The largest (micro)batch per rank whose step fits in `memory` bytes (0: not even
    /// one example, or the model alone does not fit).
    pub fn largest_batch(&self, memory: u64, policy: RematPolicy) -> usize {
        if self.peak_bytes(1, policy) > memory {
            return 0;
        }
        // The peak grows with the batch: the largest that fits, by bisection.
        let (mut fits, mut fails) = (1usize, 2usize);
        while self.peak_bytes(fails, policy) <= memory {
            fits = fails;
            fails *= 2;
        }
        while fails - fits > 1 {
            let middle = fits + (fails - fits) / 2;
            if self.peak_bytes(middle, policy) <= memory {
                fits = middle;
            } else {
                fails = middle;
            }
        }
        fits
    }
}

/// Plans `settings`' training step on each of `world_size` ranks, with
/// `instructions_per_example` distinct instructions per example (1.0 for the most), for a
/// step that runs `kernels` (`Kernels::on` the run's device).
pub fn plan(
    settings: &RunSettings,
    world_size: usize,
    instructions_per_example: f64,
    kernels: Kernels,
) -> Result<MemoryPlan> {
    let world_size = world_size.max(1);
    let shapes = parameter_shapes(&settings.t5, &settings.hyper);
    let groups = settings.param_groups();
    let names: Vec<String> = shapes.iter().map(|(n, _)| n.clone()).collect();
    let group_of = group_of_each(&names, &groups)?;
    let param_bytes = settings.train.param_dtype.element_bytes();
    let mut parameters = 0i64;
    let mut trainable = 0i64;
    let mut largest_trainable = 0i64;
    let mut state: BTreeMap<String, i64> = BTreeMap::new();
    for ((name, shape), group) in shapes.iter().zip(&group_of) {
        let numel: i64 = shape.iter().product();
        parameters += numel;
        if !groups[*group].frozen {
            trainable += numel;
            largest_trainable = largest_trainable.max(numel);
            state.insert(name.clone(), groups[*group].state_elements(shape));
        }
    }
    let sharded = settings.train.shard_optimizer && world_size > 1;
    let optimizer_state = if sharded {
        let sizes: Vec<(String, usize)> = shapes
            .iter()
            .map(|(n, s)| (n.clone(), s.iter().product::<i64>() as usize))
            .collect();
        let owners = owners_by_size(sizes, world_size);
        let mut per_rank = vec![0i64; world_size];
        for (name, elements) in &state {
            per_rank[owners.get(name).copied().unwrap_or(0)] += elements;
        }
        per_rank.into_iter().max().unwrap_or(0)
    } else {
        state.values().sum()
    };
    let terms = step_terms(settings);
    let coefficients = activation_bytes(
        settings.train.compute_dtype,
        settings.t5.dropout_rate > 0.0,
        kernels,
    );
    let remat = terms.remat_bytes(&coefficients, 1.0, instructions_per_example);
    let mut plan = MemoryPlan {
        parameters,
        trainable_parameters: trainable,
        parameter_bytes: (parameters * param_bytes) as u64,
        gradient_bytes: (trainable * param_bytes) as u64,
        optimizer_state_bytes: (optimizer_state * 4) as u64,
        optimizer_scratch_bytes: (largest_trainable
            * match settings.train.param_dtype {
                ComputeDtype::Float32 => 4,
                ComputeDtype::Bfloat16 => 12,
            }) as u64,
        accumulation_bytes: (largest_trainable * param_bytes) as u64,
        activation_bytes_per_example: terms.bytes(&coefficients, 1.0, instructions_per_example)
            as u64,
        weight_copy_bytes: if settings.train.compute_dtype == settings.train.param_dtype {
            0
        } else {
            let untied_embedding = if settings.t5.tie_word_embeddings {
                0
            } else {
                settings.t5.vocab_size * settings.t5.d_model
            };
            ((parameters - untied_embedding) * settings.train.compute_dtype.element_bytes()) as u64
        },
        remat_activation_bytes_per_example: (remat.kept + remat.recomputed_block) as u64,
        remat,
        minimal_activation_bytes_per_example: terms.minimal_bytes(
            &coefficients,
            settings.train.compute_dtype.element_bytes() as f64,
            instructions_per_example,
        ) as u64,
        instructions_per_example,
        batch_per_rank: settings.run.batch_size.div_ceil(world_size),
        microbatch_per_rank: settings
            .run
            .batch_size
            .div_ceil(world_size)
            .div_ceil(settings.train.microbatches.max(1)),
        gradients_held: world_size > 1 || settings.train.microbatches > 1,
        world_size,
        sharded,
        remat_policy: settings.train.remat_policy,
        kernels,
        terms,
        peak_bytes_without_remat: 0,
        peak_bytes_with_remat: 0,
        peak_bytes_with_minimal_remat: 0,
    };
    plan.peak_bytes_without_remat = plan.peak_bytes(plan.microbatch_per_rank, RematPolicy::None);
    plan.peak_bytes_with_remat = plan.peak_bytes(plan.microbatch_per_rank, RematPolicy::Full);
    plan.peak_bytes_with_minimal_remat =
        plan.peak_bytes(plan.microbatch_per_rank, RematPolicy::Minimal);
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(bindings: &[&str]) -> RunSettings {
        let mut all = vec![
            "hint.train.Run.lengths = (3, 2, 2)",
            "hint.train.Run.batch_size = 4",
            "hint.model.T5Config.vocab_size = 10",
            "hint.model.T5Config.d_model = 4",
            "hint.model.T5Config.d_kv = 2",
            "hint.model.T5Config.num_heads = 2",
            "hint.model.T5Config.d_ff = 8",
            "hint.model.T5Config.num_layers = 1",
            "hint.model.T5Config.num_decoder_layers = 1",
            "hint.model.T5Config.relative_attention_num_buckets = 32",
            "hint.model.T5Config.feed_forward_proj = 'gated-gelu'",
            "hint.model.T5Config.tie_word_embeddings = False",
            "hint.model.T5Config.dropout_rate = 0.0",
            "hint.model.HyperConfig.use_instructions = False",
            "hint.model.HyperConfig.use_adapter = False",
            "hint.model.HyperConfig.use_prefix = False",
            "hint.model.HyperConfig.use_fusion_in_decoder = False",
        ];
        all.extend(bindings);
        let bindings: Vec<String> = all.iter().map(|b| b.to_string()).collect();
        RunSettings::load(&[], &bindings, &[], false).unwrap()
    }

    /// Counted by hand: embeddings 2 × 10·4; encoder block q, k, v, o 4 × 4·4, relative
    /// bias 32·2, two norms 4 each, gated feed-forward 2 × 8·4 + 4·8, final norm 4 (236);
    /// decoder block the same plus cross-attention 4 × 4·4 and a third norm (304).
    #[test]
    fn a_tiny_configuration_counted_by_hand() {
        let plan = plan(&tiny(&[]), 1, 1.0, Kernels::Fused).unwrap();
        assert_eq!(plan.parameters, 80 + 236 + 304);
        assert_eq!(plan.trainable_parameters, plan.parameters);
        assert_eq!(plan.parameter_bytes, 620 * 4);
        assert_eq!(plan.gradient_bytes, 620 * 4);
        // No dimension reaches min_dim_size_to_factor (128): every second moment is whole.
        assert_eq!(plan.optimizer_state_bytes, 620 * 4);
        // Per example: encoder T=3 (hidden 3·4, feed-forward 3·8, scores 2·3·3,
        // projections (3 + 2·3)·4); decoder T=2 over memory 3 (hidden 2·4, feed-forward
        // 2·8, scores 2·2·2 + 2·2·3, projections (2 + 2·2)·4 + (2 + 2·3)·4); logits 2·10.
        let total = plan.terms.total(1.0, 1.0);
        assert_eq!(
            total,
            ActivationTerms {
                hidden: 12.0 + 8.0,
                feed_forward: 24.0 + 16.0,
                attention: 18.0 + 20.0,
                projections: 36.0 + 56.0,
                logits: 20.0,
                generated: 0.0,
                hypernetwork: 0.0,
            }
        );
        let bytes = activation_bytes(ComputeDtype::Float32, false, plan.kernels);
        assert_eq!(
            plan.activation_bytes_per_example,
            total.dot(&bytes.kept) as u64
        );
        // The step's peak at the configured batch, and the largest batch in a memory.
        // The optimizer's working buffer: the largest parameter, the relative bias (64).
        assert_eq!(plan.optimizer_scratch_bytes, 64 * 4);
        // One process, one pass: the gradients are dropped before the step, so what is
        // held throughout is the parameters and the optimizer state; the first gradient
        // (the largest parameter's, 64) comes while every activation is there, and the
        // update holds every gradient and the scratch buffer once the activations are gone.
        assert!(!plan.gradients_held);
        let fixed = 2 * 620 * 4;
        assert_eq!(plan.fixed_bytes(), fixed);
        assert_eq!(plan.accumulation_bytes, 64 * 4);
        let accumulation = plan.accumulation_bytes;
        let update = (64 + 620) * 4;
        assert_eq!(
            plan.peak_bytes(4, RematPolicy::None),
            fixed + (4 * plan.activation_bytes_per_example + accumulation).max(update)
        );
        assert_eq!(
            plan.peak_bytes(0, RematPolicy::None),
            fixed + update,
            "the update's peak"
        );
        let memory = fixed + 10 * plan.activation_bytes_per_example + accumulation + 1;
        assert_eq!(plan.largest_batch(memory, RematPolicy::None), 10);
        assert_eq!(plan.largest_batch(fixed - 1, RematPolicy::None), 0);
        // Two microbatches: the second adds into the first's gradients, held throughout,
        // and the first gradient is a temporary beside its buffer.
        let held = super::plan(
            &tiny(&["hint.train.TrainConfig.microbatches = 2"]),
            1,
            1.0,
            Kernels::Fused,
        )
        .unwrap();
        assert!(held.gradients_held);
        assert_eq!(held.fixed_bytes(), 3 * 620 * 4);
        assert_eq!(
            held.peak_bytes(2, RematPolicy::None),
            3 * 620 * 4 + 2 * held.activation_bytes_per_example + accumulation
        );
        // `minimal` keeps each block's weight products. Encoder block, T=3: q, k, v
        // 3·3·4, o 3·4, wi_0 and wi_1 2·3·8, wo 3·4 (108); decoder block, T=2: self
        // q, k, v 3·2·4, o 2·4, cross q 2·4 and k, v over the memory 2·3·4, o 2·4, wi_0
        // and wi_1 2·2·8, wo 2·4 (112).
        let products: Vec<f64> = plan.terms.stacks.iter().map(|s| s.products).collect();
        assert_eq!(products, [108.0, 112.0]);
        let full = plan.terms.remat_bytes(&bytes, 1.0, 1.0);
        let largest_rest = plan
            .terms
            .stacks
            .iter()
            .map(|s| s.block.dot(&bytes.kept) - s.products * 4.0)
            .fold(0.0, f64::max);
        assert_eq!(
            plan.minimal_activation_bytes_per_example,
            (full.kept + largest_rest * bytes.recomputed + full.logits + (108.0 + 112.0) * 4.0)
                as u64
        );
        assert_eq!(
            plan.peak_bytes(4, RematPolicy::Minimal),
            fixed + (4 * plan.minimal_activation_bytes_per_example + accumulation).max(update)
        );
        // `full` keeps so little that its step peaks late in the backward pass, with nearly
        // every gradient there: they count even though they were dropped.
        assert_eq!(
            plan.peak_bytes(4, RematPolicy::Full),
            fixed + (620 * 4 + full.scaled(4.0).peak() as u64).max(update)
        );
    }

    #[test]
    fn bf16_parameters_halve_parameters_and_gradients_and_sharding_divides_the_state() {
        let f32_plan = plan(&tiny(&[]), 2, 1.0, Kernels::Fused).unwrap();
        let bf16 = plan(
            &tiny(&["hint.train.TrainConfig.param_dtype = 'bfloat16'"]),
            2,
            1.0,
            Kernels::Fused,
        )
        .unwrap();
        assert_eq!(bf16.parameter_bytes * 2, f32_plan.parameter_bytes);
        assert_eq!(bf16.gradient_bytes * 2, f32_plan.gradient_bytes);
        assert_eq!(bf16.optimizer_state_bytes, f32_plan.optimizer_state_bytes);
        // Computing in another dtype than the parameters': without rematerialisation the
        // products keep a cast copy of every weight but the untied input embedding (10·4).
        assert_eq!(f32_plan.weight_copy_bytes, 0);
        assert_eq!(bf16.weight_copy_bytes, (620 - 40) * 4);
        let mixed = plan(
            &tiny(&["hint.train.TrainConfig.compute_dtype = 'bfloat16'"]),
            1,
            1.0,
            Kernels::Fused,
        )
        .unwrap();
        assert_eq!(mixed.weight_copy_bytes, (620 - 40) * 2);
        assert_eq!(
            mixed.peak_bytes(3, RematPolicy::None),
            mixed.fixed_bytes()
                + (3 * mixed.activation_bytes_per_example
                    + mixed.weight_copy_bytes
                    + mixed.accumulation_bytes)
                    .max(mixed.optimizer_scratch_bytes + mixed.gradient_bytes)
        );
        let sharded = plan(
            &tiny(&["hint.train.TrainConfig.shard_optimizer = True"]),
            2,
            1.0,
            Kernels::Fused,
        )
        .unwrap();
        assert!(sharded.sharded);
        assert!(sharded.optimizer_state_bytes < f32_plan.optimizer_state_bytes);
        assert!(sharded.optimizer_state_bytes * 2 >= f32_plan.optimizer_state_bytes);
        assert_eq!(f32_plan.batch_per_rank, 2);
    }

    #[test]
    fn rematerialisation_keeps_less_than_everything() {
        let plan = plan(
            &tiny(&["hint.model.T5Config.num_layers = 4"]),
            1,
            1.0,
            Kernels::Fused,
        )
        .unwrap();
        assert!(plan.remat_activation_bytes_per_example < plan.activation_bytes_per_example);
        // `minimal` lies between: it keeps the products `full` recomputes.
        assert!(plan.minimal_activation_bytes_per_example < plan.activation_bytes_per_example);
        assert!(
            plan.minimal_activation_bytes_per_example > plan.remat_activation_bytes_per_example
        );
    }
}
