//! `HyperT5`: T5 plus the hypernetwork, with "encode once, run many": `adapt` turns
//! instructions into a [`TaskAdaptation`] that forward, generation and scoring reuse for
//! any number of inputs.

use tch::{nn, Kind, Tensor};

use crate::t5::adaptation::StackAdaptation;
use crate::t5::config::T5Config;
use crate::t5::generation::{generate_adapted, Generated, GenerationConfig};
use crate::t5::layers::Linear;
use crate::t5::memory::EncoderMemory;
use crate::t5::model::T5;
use crate::t5::stack::Stack;
use crate::ModelError;

use super::config::HyperConfig;
use super::hypernet::Hypernetwork;

/// Everything a task's instruction contributes, computed once: the generated modules of
/// both stacks, the encoded instruction (for fusion in the decoder) and prompt tokens.
/// Rows are one per instruction; a single row serves a whole batch of that task.
#[derive(Debug)]
pub struct TaskAdaptation {
    /// Generated modules of the encoder.
    pub encoder: StackAdaptation,
    /// Generated modules of the decoder.
    pub decoder: StackAdaptation,
    /// The encoded instruction `[R, L_I, d]` and its mask `[R, L_I]` (fusion only).
    pub instruction: Option<(Tensor, Tensor)>,
    /// Generated prompt tokens `[R, T, d]`.
    pub prompt: Option<Tensor>,
    /// Number of rows `R`.
    pub rows: i64,
}

/// A HINT model. Parameters: the T5's Hugging Face names, and everything the
/// hypernetwork owns under `hyper.`.
#[derive(Debug)]
pub struct HyperT5 {
    /// The underlying model.
    pub t5: T5,
    /// The hypernetwork, when any module is generated.
    pub hypernetwork: Option<Hypernetwork>,
    /// The switches.
    pub config: HyperConfig,
    separate_encoder: Option<Stack>,
    /// `use_linear`: maps the fused instruction (`hyper.instruction_embed`).
    instruction_linear: Option<Linear>,
}

impl HyperT5 {
    /// Creates T5 at the root of `p` and the hypernetwork under `p/hyper`.
    pub fn new(p: nn::Path<'_>, t5: &T5Config, config: &HyperConfig) -> Self {
        let model = T5::new(p.clone(), t5);
        let hyper = &p / "hyper";
        let hypernetwork = config
            .has_hypernetwork()
            .then(|| Hypernetwork::new(hyper.clone(), t5, config));
        let separate_encoder = (config.uses_instruction() && !config.share_hnet_encoder)
            .then(|| Stack::new(&hyper / "hyper_encoder", t5, false));
        let instruction_linear = config.has_instruction_linear().then(|| {
            super::hypernet::truncated_normal_linear(
                &hyper / "instruction_embed",
                t5.d_model,
                t5.d_model,
            )
        });
        Self {
            t5: model,
            hypernetwork,
            config: config.clone(),
            separate_encoder,
            instruction_linear,
        }
    }

    /// Rematerialises every transformer block in training forward passes: T5's encoder
    /// and decoder, and the instruction encoder (see [`T5::set_remat_policy`]).
    pub fn set_remat_policy(&mut self, policy: crate::RematPolicy) {
        self.t5.set_remat_policy(policy);
        if let Some(encoder) = &mut self.separate_encoder {
            encoder.set_remat_policy(policy);
        }
    }

    /// Encodes instructions `[B, L_I]` with the generated modules off: the shared T5
    /// encoder (or the separate one). Returns states with padding rows zeroed, and the mask.
    pub fn encode_instruction(&self, hyper_ids: &Tensor, train: bool) -> (Tensor, Tensor) {
        let mask = hyper_ids
            .ne(self.t5.config.pad_token_id)
            .to_kind(Kind::Int64);
        let attention_mask = if self.config.hyperencoder_mask_padding {
            mask.shallow_clone()
        } else {
            // The reference lets instruction tokens attend to padding.
            mask.ones_like()
        };
        let embedded = self.t5.embed(hyper_ids);
        let states = match &self.separate_encoder {
            Some(stack) => stack.forward(&embedded, Some(&attention_mask), None, None, None, train),
            None => self
                .t5
                .encode_embedded(&embedded, Some(&attention_mask), None, train),
        };
        let zeroed = states * mask.unsqueeze(-1).to_kind(self.t5.compute_kind());
        (zeroed, mask)
    }

    /// Runs the hypernetwork once per row of `hyper_ids [R, L_I]`.
    pub fn adapt(&self, hyper_ids: &Tensor, train: bool) -> TaskAdaptation {
        let rows = hyper_ids.size()[0];
        let instruction = self
            .config
            .uses_instruction()
            .then(|| self.encode_instruction(hyper_ids, train));
        let (encoder, decoder, prompt) = match &self.hypernetwork {
            Some(hypernetwork) => {
                let components = hypernetwork.components(
                    instruction
                        .as_ref()
                        .map(|(s, m)| (s, m))
                        .filter(|_| self.config.use_instructions),
                    train,
                );
                let generated = hypernetwork.generate(&components, train);
                let (encoder, decoder) = hypernetwork.adaptations(&generated);
                let prompt = generated
                    .get(&super::layout::Generated::Prompt)
                    .map(Tensor::shallow_clone);
                (encoder, decoder, prompt)
            }
            None => (StackAdaptation::default(), StackAdaptation::default(), None),
        };
        let instruction = instruction
            .filter(|_| self.config.use_fusion_in_decoder)
            .map(|(states, mask)| match &self.instruction_linear {
                // As the reference: dropout(W·h) / √d. Padding rows stay zero (no bias).
                Some(linear) => {
                    let mapped = linear
                        .forward(&states)
                        .dropout(self.t5.config.dropout_rate, train);
                    (mapped * (self.t5.config.d_model as f64).powf(-0.5), mask)
                }
                None => (states, mask),
            });
        TaskAdaptation {
            encoder,
            decoder,
            instruction,
            prompt,
            rows,
        }
    }

    /// The adaptation for a batch whose rows may repeat instructions: the hypernetwork runs
    /// once per *distinct* instruction and the results are gathered back to the rows.
    pub fn adapt_deduplicated(&self, hyper_ids: &Tensor, train: bool) -> TaskAdaptation {
        let (unique, inverse, _) = hyper_ids.unique_dim(0, true, true, false);
        let adaptation = self.adapt(&unique, train);
        adaptation.select_rows(&inverse)
    }

    /// Projects a fused instruction's cross-attention keys and values for every decoder
    /// block into `adaptation` (`decoder.layers[i].cross_attention.projected_memory`), so
    /// that [`HyperT5::encode`] leaves the instruction out of the memory and no request
    /// projects it again: for a served task, whose inputs all share one instruction, this
    /// saves `2 · layers · L_I · d · inner` multiply-adds per input. Costs
    /// `2 · layers · L_I · inner` numbers per task. Does nothing without fusion, or when
    /// already done.
    pub fn project_instruction(&self, adaptation: &mut TaskAdaptation) {
        let Some((states, _)) = &adaptation.instruction else {
            return;
        };
        if adaptation.has_projected_instruction() {
            return;
        }
        let states = states.to_kind(self.t5.compute_kind());
        let blocks = &self.t5.decoder.blocks;
        adaptation
            .decoder
            .layers
            .resize_with(blocks.len(), Default::default);
        for (block, layer) in blocks.iter().zip(&mut adaptation.decoder.layers) {
            let cross = &block
                .cross_attention
                .as_ref()
                .expect("decoder blocks cross-attend")
                .attention;
            let (key, value) = cross.project_memory(&states, Some(&layer.cross_attention));
            layer.cross_attention.projected_memory =
                Some(crate::t5::adaptation::ProjectedMemory { key, value });
        }
    }

    /// Encodes `input_ids [B, T]` under an adaptation and returns the memory the decoder
    /// attends to: under fusion, the encoded instruction in front as a segment of its own
    /// (one row per task), so that its cross-attention keys and values are projected once
    /// per task rather than once per example.
    pub fn encode(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        adaptation: &TaskAdaptation,
        train: bool,
    ) -> EncoderMemory {
        let batch = input_ids.size()[0];
        let mut embedded = self.t5.embed(input_ids);
        let mut mask = attention_mask.shallow_clone();
        if let Some(prompt) = &adaptation.prompt {
            let prompt = prompt
                .to_kind(embedded.kind())
                .expand([batch, -1, -1], false);
            let prompt_mask = Tensor::ones([batch, prompt.size()[1]], (Kind::Int64, mask.device()));
            embedded = Tensor::cat(&[prompt, embedded], 1);
            mask = Tensor::cat(&[prompt_mask, mask], 1);
        }
        let encoded =
            self.t5
                .encode_embedded(&embedded, Some(&mask), Some(&adaptation.encoder), train);
        match &adaptation.instruction {
            Some((states, instruction_mask)) if adaptation.has_projected_instruction() => {
                EncoderMemory::with_projected_front(
                    states.size()[1],
                    vec![encoded],
                    Tensor::cat(&[instruction_mask.expand([batch, -1], false), mask], 1),
                )
            }
            Some((states, instruction_mask)) => EncoderMemory::from_segments(
                vec![states.to_kind(encoded.kind()), encoded],
                Tensor::cat(&[instruction_mask.expand([batch, -1], false), mask], 1),
            ),
            None => EncoderMemory::new(&encoded, &mask),
        }
    }

    /// Teacher-forced logits `[B, T_dec, vocab]` (f32) of inputs under an adaptation.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        decoder_input_ids: &Tensor,
        adaptation: &TaskAdaptation,
        train: bool,
    ) -> Tensor {
        self.t5.logits(&self.decoder_states(
            input_ids,
            attention_mask,
            decoder_input_ids,
            adaptation,
            train,
        ))
    }

    /// [`HyperT5::forward`] up to the decoder's final states `[B, T_dec, d]`, before the
    /// LM head (for a loss that projects them itself, e.g.
    /// [`crate::rematerialised_cross_entropy`]).
    pub fn decoder_states(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        decoder_input_ids: &Tensor,
        adaptation: &TaskAdaptation,
        train: bool,
    ) -> Tensor {
        let memory = self.encode(input_ids, attention_mask, adaptation, train);
        self.t5.decode_adapted(
            decoder_input_ids,
            &memory,
            None,
            None,
            Some(&adaptation.decoder),
            train,
        )
    }

    /// The training forward: each row brings its own instruction; the hypernetwork runs
    /// once per distinct instruction in the batch.
    pub fn forward_batch(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        hyper_ids: &Tensor,
        decoder_input_ids: &Tensor,
        train: bool,
    ) -> Tensor {
        self.t5.logits(&self.decoder_states_batch(
            input_ids,
            attention_mask,
            hyper_ids,
            decoder_input_ids,
            train,
        ))
    }

    /// [`HyperT5::forward_batch`] up to the decoder's final states, before the LM head.
    pub fn decoder_states_batch(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        hyper_ids: &Tensor,
        decoder_input_ids: &Tensor,
        train: bool,
    ) -> Tensor {
        let adaptation = self.adapt_deduplicated(hyper_ids, train);
        self.decoder_states(
            input_ids,
            attention_mask,
            decoder_input_ids,
            &adaptation,
            train,
        )
    }

    /// Generates for inputs of the task(s) of `adaptation`.
    pub fn generate(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        adaptation: &TaskAdaptation,
        config: &GenerationConfig,
    ) -> Result<Generated, ModelError> {
        let memory = tch::no_grad(|| self.encode(input_ids, attention_mask, adaptation, false));
        generate_adapted(&self.t5, &memory, Some(&adaptation.decoder), config)
    }

    /// Summed (and per-token) log-likelihoods of `targets` under an adaptation: rank
    /// classification's primitive.
    pub fn score(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        targets: &Tensor,
        target_mask: &Tensor,
        adaptation: &TaskAdaptation,
    ) -> (Tensor, Tensor) {
        tch::no_grad(|| {
            let decoder_inputs = self.t5.shift_right(targets);
            let logits = self.forward(
                input_ids,
                attention_mask,
                &decoder_inputs,
                adaptation,
                false,
            );
            crate::t5::loss::sequence_log_likelihoods(&logits, targets, target_mask)
        })
    }

    /// Parameters the hypernetwork owns (excluding the shared encoder; including a separate one).
    pub fn hypernetwork_parameter_count(&self) -> i64 {
        let separate = self.separate_encoder.as_ref().map_or(0, |_| {
            let c = &self.t5.config;
            super::flops::encoder_parameters(c)
        });
        let linear = self
            .instruction_linear
            .as_ref()
            .map_or(0, |l| l.weight.numel() as i64);
        self.hypernetwork
            .as_ref()
            .map_or(0, Hypernetwork::parameter_count)
            + separate
            + linear
    }
}
