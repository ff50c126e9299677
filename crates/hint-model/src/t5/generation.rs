//! Decoding with a key/value cache: greedy, beam search (Hugging Face's algorithm and
//! length penalty) and seeded sampling (temperature, top-k, top-p).

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::adaptation::StackAdaptation;
use super::memory::EncoderMemory;
use super::model::T5;
use super::stack::DecoderCache;
use crate::ModelError;

/// When beam search may stop (HF's `early_stopping`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum EarlyStopping {
    /// Stop when no running beam can beat the worst finished one (heuristic on the current length).
    #[default]
    Heuristic,
    /// Stop as soon as `num_beams` hypotheses are finished.
    WhenFull,
    /// Canonical beam search: bound with `max_length` when the length penalty is positive.
    Never,
}

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum DecodeStrategy {
    /// The most likely token.
    Greedy,
    /// Beam search.
    Beam {
        /// Beams per input.
        num_beams: i64,
        /// Finished scores are `sum_logprobs / generated_len^length_penalty`.
        length_penalty: f64,
        /// Stopping rule.
        early_stopping: EarlyStopping,
    },
    /// Sampling from the (tempered, truncated) distribution.
    Sample {
        /// Divides the logits.
        temperature: f64,
        /// Keep only the k most likely tokens (0: all).
        top_k: i64,
        /// Keep the smallest set whose probability reaches p (1.0: all).
        top_p: f64,
        /// Seed of the sampler's own generator (independent of libtorch's global one, so
        /// samples do not depend on what else the process draws).
        seed: i64,
    },
}

/// Settings of [`generate`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GenerationConfig {
    /// At most this many new tokens (EOS included).
    pub max_new_tokens: i64,
    /// At least this many new tokens: EOS cannot come before (transformers'
    /// `min_new_tokens`; 0, the default, leaves it free).
    #[serde(default)]
    pub min_new_tokens: i64,
    /// The decoding rule.
    pub strategy: DecodeStrategy,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 64,
            min_new_tokens: 0,
            strategy: DecodeStrategy::Greedy,
        }
    }
}

/// Generated sequences, one per input.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// New tokens of each input (no start token), ending with EOS when one was produced.
    pub tokens: Vec<Vec<i64>>,
    /// Greedy and sampling: the summed log-probability of the tokens; beam: the
    /// length-penalised beam score.
    pub scores: Vec<f64>,
}

/// Generates continuations for `input_ids [B, T]` with padding `attention_mask`.
pub fn generate(
    model: &T5,
    input_ids: &Tensor,
    attention_mask: &Tensor,
    config: &GenerationConfig,
) -> Result<Generated, ModelError> {
    tch::no_grad(|| {
        let encoded = model.encode(input_ids, Some(attention_mask), false);
        generate_from_encoded(model, &encoded, attention_mask, config)
    })
}

/// [`generate`] for inputs that are already encoded (`encoded [B, T, d]`, `mask [B, T]`):
/// the entry point when the encoder states are built elsewhere (HINT's fusion).
pub fn generate_from_encoded(
    model: &T5,
    encoded: &Tensor,
    mask: &Tensor,
    config: &GenerationConfig,
) -> Result<Generated, ModelError> {
    generate_adapted(model, &EncoderMemory::new(encoded, mask), None, config)
}

/// [`generate_from_encoded`] against an [`EncoderMemory`] (whose shared segments are
/// projected once) with a decoder adaptation (HINT's generated prefixes, adapters and
/// LoRA); its rows are per example or a single per-task row.
pub fn generate_adapted(
    model: &T5,
    memory: &EncoderMemory,
    adaptation: Option<&StackAdaptation>,
    config: &GenerationConfig,
) -> Result<Generated, ModelError> {
    if config.max_new_tokens < 1 {
        return Err(ModelError::Generation(format!(
            "max_new_tokens must be at least 1, got {}",
            config.max_new_tokens
        )));
    }
    let step = Step {
        model,
        adaptation,
        min_new_tokens: config.min_new_tokens,
    };
    tch::no_grad(|| match config.strategy {
        DecodeStrategy::Greedy => Ok(sample_or_greedy(&step, memory, config.max_new_tokens, None)),
        DecodeStrategy::Sample {
            temperature,
            top_k,
            top_p,
            seed,
        } => {
            if temperature <= 0.0 || !(0.0..=1.0).contains(&top_p) || top_p == 0.0 || top_k < 0 {
                return Err(ModelError::Generation(format!(
                    "sampling needs temperature > 0, 0 < top_p ≤ 1 and top_k ≥ 0; got {temperature}, {top_p}, {top_k}"
                )));
            }
            Ok(sample_or_greedy(
                &step,
                memory,
                config.max_new_tokens,
                Some(Sampler {
                    temperature,
                    top_k,
                    top_p,
                    rng: SplitMix64(seed as u64),
                }),
            ))
        }
        DecodeStrategy::Beam {
            num_beams,
            length_penalty,
            early_stopping,
        } => {
            if num_beams < 1 {
                return Err(ModelError::Generation(format!(
                    "num_beams must be at least 1, got {num_beams}"
                )));
            }
            Ok(beam_search(
                &step,
                memory,
                config.max_new_tokens,
                num_beams,
                length_penalty,
                early_stopping,
            ))
        }
    })
}

/// The model and the decoder adaptation one decoding step runs with.
struct Step<'a> {
    model: &'a T5,
    adaptation: Option<&'a StackAdaptation>,
    /// EOS is barred while fewer tokens than this are generated.
    min_new_tokens: i64,
}

impl Step<'_> {
    /// One decoder step on the last tokens `[N, 1]`: f32 log-probabilities `[N, vocab]`.
    fn log_probs(
        &self,
        tokens: &Tensor,
        memory: &EncoderMemory,
        cache: &mut DecoderCache,
    ) -> Tensor {
        // Tokens generated before this step (the cache holds the start token's position too).
        let generated = cache.len();
        let hidden =
            self.model
                .decode_adapted(tokens, memory, None, Some(cache), self.adaptation, false);
        let log_probs = self
            .model
            .logits(&hidden.select(1, -1))
            .log_softmax(-1, Kind::Float);
        if generated < self.min_new_tokens {
            let eos = self.model.config.eos_token_id;
            let _ = log_probs.narrow(1, eos, 1).fill_(f64::NEG_INFINITY);
        }
        log_probs
    }
}

/// Keeps the top-k / top-p part of `log_probs` (others to −inf).
fn truncate_distribution(log_probs: Tensor, top_k: i64, top_p: f64) -> Tensor {
    let vocab = log_probs.size()[1];
    let mut log_probs = log_probs;
    if top_k > 0 && top_k < vocab {
        let (kth, _) = log_probs.topk(top_k, -1, true, true);
        let threshold = kth.select(1, top_k - 1).unsqueeze(1);
        log_probs = log_probs.masked_fill(&log_probs.lt_tensor(&threshold), f64::NEG_INFINITY);
    }
    if top_p < 1.0 {
        let (sorted, order) = log_probs.sort(-1, true);
        let cumulative = sorted.softmax(-1, Kind::Float).cumsum(-1, Kind::Float);
        // Drop a token when the mass before it already reaches top_p (the first token always stays).
        let before = &cumulative - sorted.softmax(-1, Kind::Float);
        let drop_sorted = before.ge(top_p);
        let drop = drop_sorted.scatter(-1, &order, &drop_sorted);
        log_probs = log_probs.masked_fill(&drop, f64::NEG_INFINITY);
    }
    log_probs
}

fn sample_or_greedy(
    step: &Step<'_>,
    memory: &EncoderMemory,
    max_new_tokens: i64,
    mut sampling: Option<Sampler>,
) -> Generated {
    let model = step.model;
    let batch = memory.batch();
    let device = memory.mask().device();
    let (eos, pad) = (model.config.eos_token_id, model.config.pad_token_id);
    let mut cache = DecoderCache::default();
    let mut tokens = Tensor::full(
        [batch, 1],
        model.config.decoder_start_token_id,
        (Kind::Int64, device),
    );
    let mut unfinished = Tensor::ones([batch], (Kind::Int64, device));
    let mut scores = Tensor::zeros([batch], (Kind::Float, device));
    let mut outputs = Vec::new();
    for _ in 0..max_new_tokens {
        let log_probs = step.log_probs(&tokens, memory, &mut cache);
        let next = match sampling.as_mut() {
            None => log_probs.argmax(-1, false),
            Some(sampler) => sampler.draw(&log_probs),
        };
        let chosen = log_probs
            .gather(1, &next.unsqueeze(1), false)
            .squeeze_dim(1);
        scores += chosen * unfinished.to_kind(Kind::Float);
        let next: Tensor = &next * &unfinished + (1 - &unfinished) * pad;
        outputs.push(next.shallow_clone());
        unfinished *= next.ne(eos).to_kind(Kind::Int64);
        tokens = next.unsqueeze(1);
        if i64::try_from(unfinished.max()).unwrap_or(0) == 0 {
            break;
        }
    }
    let generated = Tensor::stack(&outputs, 1);
    Generated {
        tokens: rows_until_eos(&generated, eos),
        scores: Vec::<f64>::try_from(scores.to_kind(Kind::Double)).unwrap_or_default(),
    }
}

/// A tiny deterministic generator (splitmix64): sampling must not share libtorch's global
/// generator with model initialisation or other threads.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Sampler {
    temperature: f64,
    top_k: i64,
    top_p: f64,
    rng: SplitMix64,
}

impl Sampler {
    /// Inverse-CDF sampling from the tempered, truncated distribution, one uniform per row.
    fn draw(&mut self, log_probs: &Tensor) -> Tensor {
        let tempered = (log_probs / self.temperature).log_softmax(-1, Kind::Float);
        let probs =
            truncate_distribution(tempered, self.top_k, self.top_p).softmax(-1, Kind::Float);
        let rows = probs.size()[0];
        let uniforms: Vec<f32> = (0..rows).map(|_| self.rng.next_f64() as f32).collect();
        let u = Tensor::from_slice(&uniforms)
            .to_device(probs.device())
            .unsqueeze(1);
        let cumulative = probs.cumsum(-1, Kind::Float);
        // The first index whose cumulative mass exceeds u; zero-probability tokens never win
        // because the cumulative sum does not rise at them.
        let index =
            cumulative
                .lt_tensor(&u)
                .sum_dim_intlist([-1i64].as_slice(), false, Kind::Int64);
        index.clamp_max(probs.size()[1] - 1)
    }
}

/// Each row up to and including its first EOS.
fn rows_until_eos(tokens: &Tensor, eos: i64) -> Vec<Vec<i64>> {
    let rows: Vec<Vec<i64>> =
        Vec::<Vec<i64>>::try_from(tokens.to_device(tch::Device::Cpu)).unwrap_or_default();
    rows.into_iter()
        .map(|row| match row.iter().position(|&t| t == eos) {
            Some(end) => row[..=end].to_vec(),
            None => row,
        })
        .collect()
}

/// Gathers `[B, K, …]` rows of `tensor` by `indices [B, K']` along dim 1.
fn gather_beams(tensor: &Tensor, indices: &Tensor) -> Tensor {
    let mut index = indices.shallow_clone();
    let mut shape = indices.size();
    for &extra in &tensor.size()[2..] {
        index = index.unsqueeze(-1);
        shape.push(extra);
    }
    tensor.gather(1, &index.expand(shape.as_slice(), false), false)
}

/// Hugging Face's vectorised beam search (transformers 5): the top `2·K` continuations
/// per step; finished hypotheses scored `sum_logprobs / generated_len^length_penalty`
/// with EOS counted in the length.
fn beam_search(
    step: &Step<'_>,
    memory: &EncoderMemory,
    max_new_tokens: i64,
    num_beams: i64,
    length_penalty: f64,
    early_stopping: EarlyStopping,
) -> Generated {
    let model = step.model;
    let (batch, device) = (memory.batch(), memory.mask().device());
    let k = num_beams;
    let expanded = step.adaptation.map(|a| a.repeat_rows(k));
    let step = Step {
        model,
        adaptation: expanded.as_ref(),
        min_new_tokens: step.min_new_tokens,
    };
    let keep = 2 * k;
    let eos = model.config.eos_token_id;
    let max_length = max_new_tokens + 1; // counts the start token, as HF's max_length
    let memory = memory.repeat_rows(k);
    let float = (Kind::Float, device);
    // Unused positions hold EOS, as HF fills with `pad_token_id or eos` (T5's pad is 0).
    let fill = if model.config.pad_token_id != 0 {
        model.config.pad_token_id
    } else {
        eos
    };
    let mut running = Tensor::full([batch, k, max_length], fill, (Kind::Int64, device));
    let _ = running
        .narrow(2, 0, 1)
        .fill_(model.config.decoder_start_token_id);
    let mut sequences = running.copy();
    let mut running_scores = Tensor::zeros([batch, k], float);
    if k > 1 {
        let _ = running_scores.narrow(1, 1, k - 1).fill_(-1e9);
    }
    let mut beam_scores = Tensor::full([batch, k], -1e9, float);
    let mut finished = Tensor::zeros([batch, k], (Kind::Bool, device));
    let mut improvable = Tensor::ones([batch, 1], (Kind::Bool, device));
    let top_k_mask = Tensor::cat(
        &[
            Tensor::ones([k], (Kind::Bool, device)),
            Tensor::zeros([keep - k], (Kind::Bool, device)),
        ],
        0,
    );
    let batch_offset = (Tensor::arange(batch, (Kind::Int64, device)) * k).unsqueeze(1);
    let mut cache = DecoderCache::default();
    let mut cur_len = 1i64;
    loop {
        let last = running.select(2, cur_len - 1).reshape([batch * k, 1]);
        let log_probs = step.log_probs(&last, &memory, &mut cache);
        let vocab = log_probs.size()[1];
        let accumulated = (log_probs.view([batch, k, vocab]) + running_scores.unsqueeze(2))
            .reshape([batch, k * vocab]);
        let (topk_scores, topk_indices) = accumulated.topk(keep, -1, true, true);
        let parent = topk_indices.divide_scalar_mode(vocab, "floor");
        let ids = topk_indices.remainder(vocab);
        let topk_sequences = gather_beams(&running, &parent);
        topk_sequences.select(2, cur_len).copy_(&ids);
        let hits = if cur_len + 1 >= max_length {
            Tensor::ones([batch, keep], (Kind::Bool, device))
        } else {
            ids.eq(eos)
        };
        // Running beams: the best K continuations that did not stop.
        let running_candidates = &topk_scores + hits.to_kind(Kind::Float) * -1e9;
        let (_, next) = running_candidates.topk(k, -1, true, true);
        running = gather_beams(&topk_sequences, &next);
        running_scores = running_candidates.gather(1, &next, false);
        let parents = parent.gather(1, &next, false) + &batch_offset;
        // Finished beams: merge the new top-K stops into the K best so far.
        let just_finished = hits.logical_and(&top_k_mask.unsqueeze(0));
        let mut finished_scores = &topk_scores / ((cur_len + 1 - 1) as f64).powf(length_penalty);
        if early_stopping == EarlyStopping::WhenFull {
            let full = finished.all_dim(-1, true).to_kind(Kind::Float);
            finished_scores += full * -1e9;
        }
        finished_scores += improvable.logical_not().to_kind(Kind::Float) * -1e9;
        finished_scores += just_finished.logical_not().to_kind(Kind::Float) * -1e9;
        let merged_sequences = Tensor::cat(&[&sequences, &topk_sequences], 1);
        let merged_scores = Tensor::cat(&[&beam_scores, &finished_scores], 1);
        let merged_finished = Tensor::cat(&[&finished, &just_finished], 1);
        let (_, best) = merged_scores.topk(k, -1, true, true);
        sequences = gather_beams(&merged_sequences, &best);
        beam_scores = merged_scores.gather(1, &best, false);
        finished = merged_finished.gather(1, &best, false);
        cache.reorder(&parents.view([-1]));
        cur_len += 1;
        let best_length = if early_stopping == EarlyStopping::Never && length_penalty > 0.0 {
            max_length - 1
        } else {
            cur_len - 1
        };
        let best_running =
            running_scores.narrow(1, 0, 1) / (best_length as f64).powf(length_penalty);
        let worst_finished = beam_scores
            .min_dim(1, true)
            .0
            .where_self(&finished, &Tensor::full([1], -1e9, float));
        improvable =
            improvable.logical_and(&best_running.gt_tensor(&worst_finished).any_dim(-1, true));
        let any_improvable = bool::try_from(improvable.any()).unwrap_or(false);
        let all_finished = bool::try_from(finished.all()).unwrap_or(false);
        let open = !(all_finished && early_stopping == EarlyStopping::WhenFull);
        let continues = !bool::try_from(hits.all()).unwrap_or(true);
        if !(any_improvable && open && continues) {
            break;
        }
    }
    let best = sequences.select(1, 0).narrow(1, 1, cur_len - 1);
    Generated {
        tokens: rows_until_eos(&best, eos),
        scores: Vec::<f64>::try_from(beam_scores.select(1, 0).to_kind(Kind::Double))
            .unwrap_or_default(),
    }
}

impl T5 {
    /// Summed log-likelihood of each target (EOS included), teacher-forced, without length
    /// normalisation: the rank-classification primitive. `targets [B, T]` with 0/1
    /// `target_mask`; returns `[B]` and the per-token `[B, T]` values.
    pub fn score(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        targets: &Tensor,
        target_mask: &Tensor,
    ) -> (Tensor, Tensor) {
        tch::no_grad(|| {
            let decoder_inputs = self.shift_right(targets);
            let logits = self.forward(
                input_ids,
                Some(attention_mask),
                &decoder_inputs,
                None,
                false,
            );
            super::loss::sequence_log_likelihoods(&logits, targets, target_mask)
        })
    }
}
