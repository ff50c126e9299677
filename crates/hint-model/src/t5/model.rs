//! `T5ForConditionalGeneration`: shared embedding, encoder, decoder and LM head.

use tch::{nn, Kind, Tensor};

use super::adaptation::StackAdaptation;
use super::config::T5Config;
use super::layers::{in_kind, Linear};
use super::memory::EncoderMemory;
use super::stack::{DecoderCache, Stack};
use crate::packed::PackedWeight;

/// A T5 encoder-decoder whose variables carry Hugging Face's names (`shared.weight`,
/// `encoder.block.0.layer.0.SelfAttention.q.weight`, …, `lm_head.weight` when untied).
///
/// Parameters stay in their own dtype (f32 master weights); activations use
/// [`T5::compute_kind`] (f32, or bf16 for speed), with norm statistics, softmax and the
/// loss in f32 (logits are returned in f32 from a product in the compute kind).
#[derive(Debug)]
pub struct T5 {
    /// The architecture.
    pub config: T5Config,
    /// `shared.weight` `[vocab, d_model]`, the embedding of encoder and decoder inputs.
    pub shared: Tensor,
    /// The encoder stack.
    pub encoder: Stack,
    /// The decoder stack.
    pub decoder: Stack,
    /// The untied LM head (`None` when tied to `shared`).
    pub lm_head: Option<Linear>,
    compute_kind: Kind,
    /// The tied head's reordered copy of `shared` for inference (an untied head's is its
    /// `Linear`'s).
    shared_packed: PackedWeight,
}

/// T5's vocabulary projection: `lm_head`, or the tied `shared` embedding after the
/// d^-1/2 rescaling.
#[derive(Debug)]
pub struct LmHead {
    /// `[vocab, d_model]`.
    weight: Tensor,
    /// The tied head's rescaling of the hidden states.
    scale: Option<f64>,
    /// The kind the product runs in.
    kind: Kind,
    /// The weight's reordered copy for inference (shared by every head of one model).
    packed: PackedWeight,
}

impl LmHead {
    /// The same head, sharing the weight.
    pub fn shallow_clone(&self) -> Self {
        Self {
            weight: self.weight.shallow_clone(),
            scale: self.scale,
            kind: self.kind,
            packed: self.packed.clone(),
        }
    }

    /// The vocabulary size.
    pub fn vocab_size(&self) -> i64 {
        self.weight.size()[0]
    }

    /// LM logits in f32 from decoder hidden states `[.., d_model]`.
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        let scaled = self.scaled(hidden);
        let logits = self
            .packed
            .product(&scaled, &[&self.weight])
            .unwrap_or_else(|| scaled.linear::<Tensor>(&self.weight_in_kind(), None));
        in_kind(&logits, Kind::Float)
    }

    /// `hidden` in the head's kind, times the tied head's rescaling.
    fn scaled(&self, hidden: &Tensor) -> Tensor {
        let hidden = in_kind(hidden, self.kind);
        match self.scale {
            Some(scale) => hidden * scale,
            None => hidden,
        }
    }

    /// The weight in the kind the product runs in (itself in f32).
    pub fn weight_in_kind(&self) -> Tensor {
        in_kind(&self.weight, self.kind)
    }

    /// [`LmHead::logits`] with `weight` ([`LmHead::weight_in_kind`]) given.
    pub fn logits_with(&self, hidden: &Tensor, weight: &Tensor) -> Tensor {
        in_kind(
            &self.scaled(hidden).linear::<Tensor>(weight, None),
            Kind::Float,
        )
    }

    /// The head without its weight (which [`LmHead::logits_with`] takes): what a
    /// rematerialised chunk holds.
    pub(crate) fn with_weight_in_kind(&self) -> Self {
        Self {
            weight: Tensor::new(),
            scale: self.scale,
            kind: self.kind,
            packed: PackedWeight::default(),
        }
    }
}

impl T5 {
    /// Creates the variables under `p` (use the VarStore root for HF names) with HF's
    /// random initialisation.
    pub fn new(p: nn::Path<'_>, config: &T5Config) -> Self {
        let shared = (&p / "shared").var(
            "weight",
            &[config.vocab_size, config.d_model],
            nn::Init::Randn {
                mean: 0.0,
                stdev: config.initializer_factor,
            },
        );
        let lm_head = (!config.tie_word_embeddings).then(|| {
            // t5x's fan-in initialisation (std d^-1/2) rather than HF's std 1: with HF's,
            // fresh logits have a standard deviation of √d and training from scratch starts
            // far from uniform. Loaded checkpoints overwrite it either way.
            Linear::new(
                &p / "lm_head",
                config.d_model,
                config.vocab_size,
                config.initializer_factor * (config.d_model as f64).powf(-0.5),
            )
        });
        Self {
            config: config.clone(),
            shared,
            encoder: Stack::new(&p / "encoder", config, false),
            decoder: Stack::new(&p / "decoder", config, true),
            lm_head,
            compute_kind: Kind::Float,
            shared_packed: PackedWeight::default(),
        }
    }

    /// The dtype activations are computed in.
    pub fn compute_kind(&self) -> Kind {
        self.compute_kind
    }

    /// Sets the activation dtype: `Kind::Float` or `Kind::BFloat16` (mixed precision with
    /// the parameters' own dtype as master weights).
    pub fn set_compute_kind(&mut self, kind: Kind) {
        self.compute_kind = kind;
    }

    /// Rematerialises the encoder's and decoder's blocks in training forward passes
    /// ([`crate::RematPolicy::Full`]): activation memory falls to the blocks' inputs, for
    /// a second forward pass of each block during the backward pass; with
    /// [`crate::RematPolicy::Minimal`] the blocks' weight products are kept too and the
    /// second pass recomputes only the element-wise work. Gradients are unchanged.
    pub fn set_remat_policy(&mut self, policy: crate::RematPolicy) {
        self.encoder.set_remat_policy(policy);
        self.decoder.set_remat_policy(policy);
    }

    /// Looks up token embeddings in the compute dtype (no √d scaling in T5).
    ///
    /// The rows are looked up in the table's own dtype and only they are cast: casting the
    /// whole `[vocab, d]` table (and its dense gradient back) cost more than the lookup.
    pub fn embed(&self, ids: &Tensor) -> Tensor {
        let rows = Tensor::embedding(&self.shared, ids, -1, false, false);
        in_kind(&rows, self.compute_kind)
    }

    /// Encodes `input_ids [B, T]` with its 0/1 `attention_mask` (all ones when `None`).
    pub fn encode(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        train: bool,
    ) -> Tensor {
        self.encode_embedded(&self.embed(input_ids), attention_mask, None, train)
    }

    /// Encodes embedded inputs `[B, T, d]` (e.g. with a generated prompt in front) under
    /// an optional adaptation.
    pub fn encode_embedded(
        &self,
        embeddings: &Tensor,
        attention_mask: Option<&Tensor>,
        adaptation: Option<&StackAdaptation>,
        train: bool,
    ) -> Tensor {
        let size = embeddings.size();
        let mask = mask_or_ones(attention_mask, [size[0], size[1]], embeddings.device());
        self.encoder
            .forward(embeddings, Some(&mask), None, None, adaptation, train)
    }

    /// Runs the decoder on `decoder_input_ids [B, T]` (teacher forcing, or one step with a
    /// `cache`) against encoder states and their mask; returns hidden states.
    pub fn decode(
        &self,
        decoder_input_ids: &Tensor,
        encoder_states: &Tensor,
        encoder_mask: &Tensor,
        decoder_mask: Option<&Tensor>,
        cache: Option<&mut DecoderCache>,
        train: bool,
    ) -> Tensor {
        self.decode_adapted(
            decoder_input_ids,
            &EncoderMemory::new(encoder_states, encoder_mask),
            decoder_mask,
            cache,
            None,
            train,
        )
    }

    /// [`T5::decode`] against an [`EncoderMemory`] (shared segments projected once) under
    /// an optional adaptation of the decoder stack.
    pub fn decode_adapted(
        &self,
        decoder_input_ids: &Tensor,
        memory: &EncoderMemory,
        decoder_mask: Option<&Tensor>,
        cache: Option<&mut DecoderCache>,
        adaptation: Option<&StackAdaptation>,
        train: bool,
    ) -> Tensor {
        self.decoder.forward(
            &self.embed(decoder_input_ids),
            decoder_mask,
            Some(memory),
            cache,
            adaptation,
            train,
        )
    }

    /// LM logits in f32 from decoder hidden states; the tied head rescales by d^-1/2.
    ///
    /// The product runs in the compute kind, as under t5x's bf16 activations or PyTorch's
    /// autocast: in f32 the vocabulary projection was a fifth of a bf16 training step at the
    /// small shape. The loss and log-softmax then work on the f32 copy.
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        self.head().logits(hidden)
    }

    /// The LM head on its own (shares the weights): what a rematerialised loss holds.
    pub fn head(&self) -> LmHead {
        match &self.lm_head {
            Some(head) => LmHead {
                weight: head.weight.shallow_clone(),
                scale: None,
                kind: self.compute_kind,
                packed: head.packed().clone(),
            },
            None => LmHead {
                weight: self.shared.shallow_clone(),
                scale: Some((self.config.d_model as f64).powf(-0.5)),
                kind: self.compute_kind,
                packed: self.shared_packed.clone(),
            },
        }
    }

    /// The full teacher-forced forward: logits `[B, T_dec, vocab]` in f32.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        decoder_input_ids: &Tensor,
        decoder_attention_mask: Option<&Tensor>,
        train: bool,
    ) -> Tensor {
        let size = input_ids.size();
        let mask = mask_or_ones(attention_mask, [size[0], size[1]], input_ids.device());
        let encoded = self.encode(input_ids, Some(&mask), train);
        let hidden = self.decode(
            decoder_input_ids,
            &encoded,
            &mask,
            decoder_attention_mask,
            None,
            train,
        );
        self.logits(&hidden)
    }

    /// HF's `_shift_right`: prepends the decoder start token, drops the last label and
    /// replaces −100 by the pad id.
    pub fn shift_right(&self, labels: &Tensor) -> Tensor {
        let batch = labels.size()[0];
        let start = Tensor::full(
            [batch, 1],
            self.config.decoder_start_token_id,
            (Kind::Int64, labels.device()),
        );
        let len = labels.size()[1];
        let shifted = Tensor::cat(&[start, labels.narrow(1, 0, len - 1)], 1);
        shifted.masked_fill(&shifted.eq(-100), self.config.pad_token_id)
    }
}

/// The given padding mask, or all ones (no padding) of `shape`.
fn mask_or_ones(mask: Option<&Tensor>, shape: [i64; 2], device: tch::Device) -> Tensor {
    match mask {
        Some(mask) => mask.shallow_clone(),
        None => Tensor::ones(shape, (Kind::Int64, device)),
    }
}
