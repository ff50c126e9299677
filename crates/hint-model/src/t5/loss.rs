//! The two training losses and target scoring.
//!
//! - [`cross_entropy`] is **t5x's** loss (`compute_weighted_cross_entropy`): cross-entropy
//!   *summed* over the weighted target tokens (by default; see [`LossNormalization`]), plus
//!   the z-loss `1e-4 · logsumexp(logits)²` and optional label smoothing. HINT trains with it.
//! - [`hf_mean_cross_entropy`] is **Hugging Face transformers'** loss (what
//!   `T5ForConditionalGeneration` returns for `labels`): the plain *mean* cross-entropy over
//!   the label tokens that are not −100, no z-loss, no smoothing. Use it to compare with a
//!   transformers run.
//!
//! The two agree when `cross_entropy` runs with `z_loss: 0.0`, no smoothing and
//! [`LossNormalization::NumRealTargetTokens`].

use serde::{Deserialize, Serialize};
use tch::{Kind, Reduction, Tensor};

/// How the summed loss is normalised (t5x's `loss_normalizing_factor`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub enum LossNormalization {
    /// The plain sum over weighted tokens (HINT's choice).
    #[default]
    Sum,
    /// Divided by the sum of the token weights (HF's mean over non-ignored tokens).
    NumRealTargetTokens,
    /// Divided by a constant (t5x passes e.g. `batch_size * target_length`).
    Constant(f64),
}

/// Settings of [`cross_entropy`], bindable from gin.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    /// Coefficient of `logsumexp(logits)²` (t5x default 1e-4).
    pub z_loss: f64,
    /// Probability mass spread over the other tokens.
    pub label_smoothing: f64,
    /// Normalisation of the summed loss.
    pub normalization: LossNormalization,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            z_loss: 1e-4,
            label_smoothing: 0.0,
            normalization: LossNormalization::Sum,
        }
    }
}

/// The loss of one batch (scalars).
#[derive(Debug)]
pub struct Loss {
    /// Cross-entropy plus z-loss, normalised: what is differentiated.
    pub total: Tensor,
    /// The z-loss part of `total`.
    pub z_loss: Tensor,
    /// Sum of the token weights (number of real target tokens).
    pub weight_sum: Tensor,
}

/// **t5x's** loss, `compute_weighted_cross_entropy`: the cross-entropy of `targets [B, T]`
/// under `logits [B, T, V]`, weighted by `weights [B, T]` (0 for padding), plus z-loss,
/// with optional label smoothing, normalised as `config.normalization` says. With the
/// default [`LossConfig`] it is the *sum* over target tokens with z-loss 1e-4, as HINT
/// trains; it is not transformers' mean (that is [`hf_mean_cross_entropy`]).
///
/// ```
/// use hint_model::{cross_entropy, LossConfig};
/// use tch::{Kind, Tensor};
///
/// let logits = Tensor::zeros([1, 2, 4], (Kind::Float, tch::Device::Cpu));
/// let targets = Tensor::from_slice(&[1i64, 2]).view([1, 2]);
/// let weights = Tensor::ones([1, 2], (Kind::Float, tch::Device::Cpu));
/// let loss = cross_entropy(&logits, &targets, &weights, &LossConfig::default());
/// let per_token = 4f64.ln() + 1e-4 * 4f64.ln().powi(2); // uniform: ln V, plus z-loss
/// assert!((f64::try_from(&loss.total).unwrap() - 2.0 * per_token).abs() < 1e-5);
/// ```
pub fn cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    weights: &Tensor,
    config: &LossConfig,
) -> Loss {
    let vocab = *logits.size().last().unwrap_or(&1);
    let smoothing = config.label_smoothing > 0.0;
    let TokenStatistics {
        target_log_prob,
        log_z,
        log_prob_sum,
    } = token_statistics(logits, targets, smoothing);
    let mut token_loss = match log_prob_sum {
        Some(all) => {
            let confidence = 1.0 - config.label_smoothing;
            let low = config.label_smoothing / (vocab - 1) as f64;
            // The entropy of the smoothed target: t5x subtracts it so that a perfect model
            // reaches zero loss.
            let normalizing_constant =
                -(confidence * confidence.ln() + (vocab - 1) as f64 * low * (low + 1e-20).ln());
            -(confidence - low) * &target_log_prob - low * all - normalizing_constant
        }
        None => -target_log_prob,
    };
    let z_token = config.z_loss * log_z.square();
    token_loss += &z_token;
    let weights = weights.to_kind(Kind::Float);
    let weight_sum = weights.sum(Kind::Float);
    let divisor = match config.normalization {
        LossNormalization::Sum => None,
        LossNormalization::NumRealTargetTokens => Some(weight_sum.shallow_clone()),
        LossNormalization::Constant(c) => Some(Tensor::from(c)),
    };
    let mut total = (token_loss * &weights).sum(Kind::Float);
    let mut z_loss = (z_token * &weights).sum(Kind::Float);
    if let Some(divisor) = divisor {
        total /= &divisor;
        z_loss /= &divisor;
    }
    Loss {
        total,
        z_loss,
        weight_sum,
    }
}

/// Per target token, in f32: its log-probability, the log-partition `log Σ e^logits` and
/// (when asked for) the sum of the row's log-probabilities.
struct TokenStatistics {
    target_log_prob: Tensor,
    log_z: Tensor,
    log_prob_sum: Option<Tensor>,
}

/// [`TokenStatistics`] of `targets [..]` under `logits [.., V]`: the fused kernel on the
/// CPU (the logits read in their own dtype, never copied to f32), else one log-softmax of
/// an f32 copy (one fused operator and its fused backward, instead of logsumexp's chain
/// of max, subtract, exp and sum; the log-partition is then the target's logit minus its
/// log-probability).
fn token_statistics(logits: &Tensor, targets: &Tensor, with_sum: bool) -> TokenStatistics {
    match crate::fused::logit_statistics(logits, targets) {
        Some(stats) => from_logit_statistics(stats, logits, with_sum),
        None => composed_token_statistics(logits, targets, with_sum),
    }
}

fn from_logit_statistics(
    stats: crate::fused::LogitStatistics,
    logits: &Tensor,
    with_sum: bool,
) -> TokenStatistics {
    let vocab = *logits.size().last().unwrap_or(&1);
    TokenStatistics {
        target_log_prob: &stats.target_logit - &stats.log_z,
        log_prob_sum: with_sum.then(|| &stats.logit_sum - vocab as f64 * &stats.log_z),
        log_z: stats.log_z,
    }
}

fn composed_token_statistics(logits: &Tensor, targets: &Tensor, with_sum: bool) -> TokenStatistics {
    let logits = logits.to_kind(Kind::Float);
    let log_probs = logits.log_softmax(-1, Kind::Float);
    let target_index = targets.unsqueeze(-1);
    let target_log_prob = log_probs.gather(-1, &target_index, false).squeeze_dim(-1);
    let log_z = logits.gather(-1, &target_index, false).squeeze_dim(-1) - &target_log_prob;
    let log_prob_sum =
        with_sum.then(|| log_probs.sum_dim_intlist([-1i64].as_slice(), false, Kind::Float));
    TokenStatistics {
        target_log_prob,
        log_z,
        log_prob_sum,
    }
}

/// Logits elements per chunk of [`rematerialised_cross_entropy`]: 8M (32 MiB in f32).
pub const REMAT_LOSS_CHUNK_LOGITS: i64 = 8 << 20;

/// [`cross_entropy`] of the logits `head` makes of decoder states `hidden [B, T, d]`,
/// computed a chunk of target positions at a time, each chunk rematerialised: the
/// `[B, T, V]` logits, their log-softmax and their gradient never exist whole (at the
/// T5-v1.1 vocabulary they are the largest activations of a step: 20 bytes per logit),
/// only one chunk of them, once in the forward pass and again in the backward pass. The
/// loss is the same sum (in another order); so are the gradients.
pub fn rematerialised_cross_entropy(
    head: &super::model::LmHead,
    hidden: &Tensor,
    targets: &Tensor,
    weights: &Tensor,
    config: &LossConfig,
) -> Loss {
    let size = hidden.size();
    let chunk = REMAT_LOSS_CHUNK_LOGITS / (size[0] * head.vocab_size()).max(1);
    cross_entropy_in_chunks(head, hidden, targets, weights, config, chunk)
}

/// [`rematerialised_cross_entropy`] with `chunk` target positions per chunk.
fn cross_entropy_in_chunks(
    head: &super::model::LmHead,
    hidden: &Tensor,
    targets: &Tensor,
    weights: &Tensor,
    config: &LossConfig,
    chunk: i64,
) -> Loss {
    let len = hidden.size()[1];
    let chunk = chunk.clamp(1, len.max(1));
    // The head's weight in the compute kind, made once and given to every chunk as an
    // input: each chunk's gradient for it flows back into one sum, not into the f32
    // parameter chunk by chunk.
    let weight = head.weight_in_kind();
    let summed = LossConfig {
        normalization: LossNormalization::Sum,
        ..*config
    };
    let (mut total, mut z_loss) = (None::<Tensor>, None::<Tensor>);
    let mut start = 0;
    while start < len {
        let n = chunk.min(len - start);
        let inputs = [
            hidden.narrow(1, start, n),
            targets.narrow(1, start, n),
            weights.narrow(1, start, n),
            weight.shallow_clone(),
        ];
        let head = head.with_weight_in_kind();
        let parts = crate::remat::rematerialise(&inputs, move |inputs| {
            let logits = head.logits_with(&inputs[0], &inputs[3]);
            let loss = cross_entropy(&logits, &inputs[1], &inputs[2], &summed);
            vec![loss.total, loss.z_loss]
        });
        total = Some(match total {
            Some(t) => t + &parts[0],
            None => parts[0].shallow_clone(),
        });
        z_loss = Some(match z_loss {
            Some(z) => z + &parts[1],
            None => parts[1].shallow_clone(),
        });
        start += n;
    }
    let zero = || Tensor::zeros([], (Kind::Float, hidden.device()));
    let (mut total, mut z_loss) = (total.unwrap_or_else(zero), z_loss.unwrap_or_else(zero));
    let weight_sum = weights.to_kind(Kind::Float).sum(Kind::Float);
    let divisor = match config.normalization {
        LossNormalization::Sum => None,
        LossNormalization::NumRealTargetTokens => Some(weight_sum.shallow_clone()),
        LossNormalization::Constant(c) => Some(Tensor::from(c)),
    };
    if let Some(divisor) = divisor {
        total /= &divisor;
        z_loss /= &divisor;
    }
    Loss {
        total,
        z_loss,
        weight_sum,
    }
}

/// Per-token log-likelihoods `[B, T]` of `targets` under `logits`, zero where `mask` is 0.
pub fn token_log_likelihoods(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> Tensor {
    token_statistics(logits, targets, false).target_log_prob * mask.to_kind(Kind::Float)
}

/// Summed log-likelihood of each target row `[B]` (EOS included, no length
/// normalisation: rank classification's score) and the per-token values `[B, T]`.
pub fn sequence_log_likelihoods(
    logits: &Tensor,
    targets: &Tensor,
    mask: &Tensor,
) -> (Tensor, Tensor) {
    let per_token = token_log_likelihoods(logits, targets, mask);
    (
        per_token.sum_dim_intlist([1i64].as_slice(), false, Kind::Float),
        per_token,
    )
}

/// **Hugging Face transformers'** loss (`T5ForConditionalGeneration(labels=…).loss`): the
/// *mean* cross-entropy of `labels [B, T]` under `logits [B, T, V]` over the labels that
/// are not −100 (padding is marked −100, not weighted), without z-loss or label smoothing.
/// t5x's summed loss with z-loss is [`cross_entropy`].
///
/// ```
/// use hint_model::hf_mean_cross_entropy;
/// use tch::{Kind, Tensor};
///
/// let logits = Tensor::zeros([1, 3, 4], (Kind::Float, tch::Device::Cpu));
/// let labels = Tensor::from_slice(&[1i64, 2, -100]).view([1, 3]);
/// let loss = f64::try_from(hf_mean_cross_entropy(&logits, &labels)).unwrap();
/// assert!((loss - 4f64.ln()).abs() < 1e-6); // uniform over 4: ln 4 per real token
/// ```
pub fn hf_mean_cross_entropy(logits: &Tensor, labels: &Tensor) -> Tensor {
    let vocab = *logits.size().last().unwrap_or(&1);
    logits
        .to_kind(Kind::Float)
        .view([-1, vocab])
        .cross_entropy_loss::<Tensor>(&labels.view([-1]), None, Reduction::Mean, -100, 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused statistics (log-probability of the target, log-partition, sum of the
    /// log-probabilities) and their gradients equal libtorch's composition: f32 within a
    /// few ulps, bf16 logits within one bf16 rounding of the gradient (the kernel rounds
    /// once; the composition computes in f32 and casts). Logits spread over ±40 (the
    /// exponential's range), an odd width (the vector loops' remainders), a transposed
    /// (strided) input, targets at both ends of the vocabulary.
    #[test]
    fn fused_token_statistics_equal_the_composition_forward_and_backward() {
        let cpu = tch::Device::Cpu;
        for (kind, grad_atol, grad_rtol) in
            [(Kind::Float, 1e-6, 1e-5), (Kind::BFloat16, 1e-5, 8e-3)]
        {
            tch::manual_seed(11);
            let base = (Tensor::randn([1003, 2, 9], (Kind::Float, cpu)) * 12.0)
                .to_kind(kind)
                .set_requires_grad(true);
            let logits = base.permute([1, 2, 0]); // [2, 9, 1003], strided
            let targets = Tensor::randint(1003, [2, 9], (Kind::Int64, cpu));
            let _ = targets.get(0).get(0).fill_(0);
            let _ = targets.get(1).get(8).fill_(1002);
            // The sum of log-probabilities weighted by ~1/V, as label smoothing weighs it:
            // its gradient is −V·softmax per unit, which would otherwise amplify both sides'
            // one-ulp error of the log-partition (≈ 4e-6 at 40) a thousandfold.
            let upstream: Vec<Tensor> = (0..3)
                .map(|i| {
                    Tensor::randn([2, 9], (Kind::Float, cpu)) / if i == 2 { 1003.0 } else { 1.0 }
                })
                .collect();
            let run = |stats: TokenStatistics| {
                let outputs = [
                    stats.target_log_prob,
                    stats.log_z,
                    stats.log_prob_sum.expect("asked for"),
                ];
                let objective = outputs
                    .iter()
                    .zip(&upstream)
                    .map(|(o, u)| (o * u).sum(Kind::Float))
                    .fold(Tensor::from(0.0f32), |a, b| a + b);
                let mut grad = base.grad();
                if grad.defined() {
                    let _ = grad.zero_();
                }
                objective.backward();
                (outputs.map(|o| o.detach()), base.grad().copy())
            };
            // The kernel itself, as the switch (`HINT_FUSED_KERNELS`) may have it off.
            let stats = crate::fused::shim_logit_statistics(&logits, &targets).unwrap();
            let stats = crate::fused::LogitStatistics::from_stacked(stats);
            let (fused, fused_grad) = run(from_logit_statistics(stats, &logits, true));
            let (composed, composed_grad) = run(composed_token_statistics(&logits, &targets, true));
            for (name, a, b, atol) in [
                ("target log-probability", &fused[0], &composed[0], 2e-5),
                ("log-partition", &fused[1], &composed[1], 2e-5),
                // Σ x − V·log Z: a few f32 ulps of V·log Z (≈ 4e4).
                ("sum of log-probabilities", &fused[2], &composed[2], 5e-2),
            ] {
                assert_eq!(a.kind(), Kind::Float, "{kind:?} {name}");
                let worst = (a - b).abs().max().double_value(&[]);
                assert!(worst <= atol, "{kind:?} {name}: differs by {worst}");
            }
            assert_eq!(fused_grad.kind(), kind);
            let (a, b) = (
                fused_grad.to_kind(Kind::Double),
                composed_grad.to_kind(Kind::Double),
            );
            let excess = ((&a - &b).abs() - (b.abs() * grad_rtol + grad_atol))
                .max()
                .double_value(&[]);
            let worst = (&a - &b).abs().max().double_value(&[]);
            assert!(excess <= 0.0, "{kind:?} gradient differs by up to {worst}");
        }
    }

    /// A T5 with a tied or untied head, and one step's decoder states.
    fn head_and_states(tied: bool) -> (tch::nn::VarStore, super::super::model::T5, Tensor) {
        tch::manual_seed(3);
        let config = super::super::config::T5Config {
            vocab_size: 11,
            d_model: 8,
            d_kv: 4,
            num_heads: 2,
            d_ff: 16,
            num_layers: 1,
            num_decoder_layers: Some(1),
            tie_word_embeddings: tied,
            ..super::super::config::T5Config::preset("tiny").unwrap()
        };
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let model = super::super::model::T5::new(vs.root(), &config);
        let states = (Tensor::randn([3, 7, 8], (Kind::Float, tch::Device::Cpu)) * 0.5)
            .set_requires_grad(true);
        (vs, model, states)
    }

    #[test]
    fn the_chunked_rematerialised_loss_equals_the_whole_one() {
        let targets = Tensor::randint(11, [3, 7], (Kind::Int64, tch::Device::Cpu));
        let weights = targets.ne(0).to_kind(Kind::Float);
        for tied in [false, true] {
            for normalization in [
                LossNormalization::Sum,
                LossNormalization::NumRealTargetTokens,
                LossNormalization::Constant(5.0),
            ] {
                let config = LossConfig {
                    normalization,
                    label_smoothing: 0.1,
                    ..LossConfig::default()
                };
                let run = |chunk: Option<i64>| {
                    let (vs, model, states) = head_and_states(tied);
                    let loss = match chunk {
                        Some(chunk) => cross_entropy_in_chunks(
                            &model.head(),
                            &states,
                            &targets,
                            &weights,
                            &config,
                            chunk,
                        ),
                        None => cross_entropy(&model.logits(&states), &targets, &weights, &config),
                    };
                    loss.total.backward();
                    let mut grads: Vec<(String, Tensor)> = vs
                        .variables()
                        .into_iter()
                        .map(|(n, v)| {
                            let grad = v.grad();
                            let grad = if grad.defined() { grad.copy() } else { grad };
                            (n, grad)
                        })
                        .collect();
                    grads.push(("states".into(), states.grad().copy()));
                    grads.sort_by(|a, b| a.0.cmp(&b.0));
                    let value = |t: &Tensor| f64::try_from(t).unwrap();
                    (
                        value(&loss.total),
                        value(&loss.z_loss),
                        value(&loss.weight_sum),
                        grads,
                    )
                };
                let whole = run(None);
                // 3 chunks of 3, 3 and 1 positions.
                let chunked = run(Some(3));
                for (a, b, what) in [(whole.0, chunked.0, "total"), (whole.1, chunked.1, "z")] {
                    assert!(
                        (a - b).abs() <= 1e-5 * a.abs().max(1e-3),
                        "{what}: {a} vs {b}"
                    );
                }
                assert_eq!(whole.2, chunked.2);
                for ((name, a), (_, b)) in whole.3.iter().zip(&chunked.3) {
                    if !a.defined() {
                        assert!(!b.defined(), "{name}");
                        continue;
                    }
                    let diff = f64::try_from((a - b).abs().max()).unwrap();
                    assert!(diff <= 1e-5, "{name} (tied {tied}): {diff}");
                }
            }
        }
    }

    #[test]
    fn sum_and_mean_normalisations_agree_with_libtorch() {
        tch::manual_seed(0);
        let logits = Tensor::randn([2, 3, 7], (Kind::Float, tch::Device::Cpu));
        let targets = Tensor::from_slice(&[1i64, 2, 3, 4, 5, 6]).view([2, 3]);
        let weights = Tensor::from_slice(&[1.0f32, 1.0, 0.0, 1.0, 1.0, 1.0]).view([2, 3]);
        let plain = LossConfig {
            z_loss: 0.0,
            ..LossConfig::default()
        };
        let mean = cross_entropy(
            &logits,
            &targets,
            &weights,
            &LossConfig {
                normalization: LossNormalization::NumRealTargetTokens,
                ..plain
            },
        );
        let labels = targets.masked_fill(&weights.eq(0.0), -100);
        let reference = hf_mean_cross_entropy(&logits, &labels);
        assert!(mean.total.allclose(&reference, 1e-6, 1e-6, false));
        let sum = cross_entropy(&logits, &targets, &weights, &plain);
        assert!((sum.total / 5.0).allclose(&reference, 1e-6, 1e-6, false));
        assert_eq!(f64::try_from(sum.weight_sum).unwrap(), 5.0);
    }

    #[test]
    fn z_loss_is_weighted_logsumexp_squared() {
        let logits = Tensor::from_slice(&[0.0f32, 0.0]).view([1, 1, 2]);
        let targets = Tensor::from_slice(&[0i64]).view([1, 1]);
        let weights = Tensor::ones([1, 1], (Kind::Float, tch::Device::Cpu));
        let loss = cross_entropy(
            &logits,
            &targets,
            &weights,
            &LossConfig {
                z_loss: 0.5,
                ..LossConfig::default()
            },
        );
        let ln2 = 2f64.ln();
        assert!((f64::try_from(&loss.z_loss).unwrap() - 0.5 * ln2 * ln2).abs() < 1e-6);
        assert!((f64::try_from(&loss.total).unwrap() - (ln2 + 0.5 * ln2 * ln2)).abs() < 1e-6);
    }

    #[test]
    fn label_smoothing_loss_is_zero_for_the_smoothed_distribution() {
        // Logits whose softmax equals the smoothed target give zero loss after t5x's
        // normalising constant.
        let (vocab, smoothing) = (4i64, 0.1);
        let low = smoothing / (vocab - 1) as f64;
        let probs = [1.0 - smoothing, low, low, low];
        let logits = Tensor::from_slice(&probs.map(f64::ln))
            .to_kind(Kind::Float)
            .view([1, 1, vocab]);
        let loss = cross_entropy(
            &logits,
            &Tensor::from_slice(&[0i64]).view([1, 1]),
            &Tensor::ones([1, 1], (Kind::Float, tch::Device::Cpu)),
            &LossConfig {
                z_loss: 0.0,
                label_smoothing: smoothing,
                normalization: LossNormalization::Sum,
            },
        );
        assert!(f64::try_from(&loss.total).unwrap().abs() < 1e-5);
    }
}
