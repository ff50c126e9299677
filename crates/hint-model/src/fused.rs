//! Fused CPU kernels for T5's RMS norm, gated feed-forward activation and the loss's
//! statistics of each row of logits.
//!
//! Composed of libtorch operators, the RMS norm is about ten passes over the activations
//! forward and twenty backward, and it saves an f32 copy of its input for the backward
//! pass; the gated activation `act(gate) * linear` is two passes forward, four backward and
//! a copy joining the halves' gradients. In a bf16 training step at the T5-v1.1-small shape
//! on a 2-core CPU these took about a quarter of the step, mostly memory traffic and the
//! OpenMP barriers between operators. The loss's log-softmax of the `[B, T, V]` logits
//! (an f32 copy, the log-softmax, two gathers, and backward two zeroed f32 scatters, their
//! sum, the log-softmax's gradient and a cast) is about a gigabyte of memory traffic at
//! T5's 32k vocabulary. The shim (`shim/fused_kernels.cpp`) does each in one pass forward
//! and one backward, as autograd functions with hand-written gradients.
//!
//! The arithmetic is libtorch's, roundings included (statistics in f32, each intermediate
//! that the composition rounds to bf16 rounded at the same point), so results agree with
//! the composition to one bf16 rounding in bf16 and to a few ulps in f32; the norm weight's
//! gradient is summed over fixed blocks of rows in a fixed order, so it does not depend on
//! the thread count. They serve CPU tensors in f32 and bf16; anything else (CUDA, f16, f64)
//! takes the composition. `HINT_FUSED_KERNELS=0` (or [`set_fused_kernels`]) turns them off.
#![allow(unsafe_code)]

use std::os::raw::c_int;

use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

use crate::remat::shim_tensor;
use crate::runtime::KernelSwitch;

unsafe extern "C" {
    fn hm_fused_rms_norm(
        input: *mut C_tensor,
        weight: *mut C_tensor,
        eps: f64,
        out: *mut *mut C_tensor,
    ) -> c_int;
    fn hm_fused_gated_activation(
        product: *mut C_tensor,
        activation: c_int,
        out: *mut *mut C_tensor,
    ) -> c_int;
    fn hm_fused_logit_statistics(
        logits: *mut C_tensor,
        targets: *mut C_tensor,
        out: *mut *mut C_tensor,
    ) -> c_int;
}

/// The environment variable that turns the fused kernels off (`0`, `false`, `off`, `no`).
pub const FUSED_KERNELS_ENV: &str = "HINT_FUSED_KERNELS";

static SWITCH: KernelSwitch = KernelSwitch::new(FUSED_KERNELS_ENV, "a fused kernel");

/// Turns the fused RMS norm and gated activation on or off for the whole process (on by
/// default unless `HINT_FUSED_KERNELS=0`): the benchmarks and tests compare both ways.
///
/// ```
/// hint_model::set_fused_kernels(false);
/// assert!(!hint_model::fused_kernels());
/// hint_model::set_fused_kernels(true);
/// ```
pub fn set_fused_kernels(enabled: bool) {
    SWITCH.set(enabled);
}

/// Whether the fused kernels are used where they apply ([`set_fused_kernels`]).
pub fn fused_kernels() -> bool {
    SWITCH.wanted()
}

/// Whether the kernels serve these tensors: dense CPU tensors of f32 or bf16 with at least
/// one dimension. Checked before the call, so that only a kernel that cannot run at all
/// (not a tensor it declines) turns the switch off.
fn serves(tensors: &[&Tensor]) -> bool {
    tensors.iter().all(|t| {
        t.device() == Device::Cpu
            && matches!(t.kind(), Kind::Float | Kind::BFloat16)
            && !t.is_sparse()
            && !t.is_mkldnn()
            && t.dim() >= 1
    })
}

/// T5's RMS norm of `x [.., d]` with `weight [d]`, in `x`'s dtype: the fused kernel where
/// it applies, else libtorch's operators.
pub(crate) fn rms_norm(x: &Tensor, weight: &Tensor, epsilon: f64) -> Tensor {
    fused_rms_norm(x, weight, epsilon).unwrap_or_else(|| composed_rms_norm(x, weight, epsilon))
}

/// The fused kernel's norm, or `None` where it does not apply (see the module's notes).
fn fused_rms_norm(x: &Tensor, weight: &Tensor, epsilon: f64) -> Option<Tensor> {
    let weight_fits =
        weight.dim() == 1 && x.dim() >= 1 && weight.size()[0] == x.size()[x.dim() - 1];
    if !SWITCH.usable() || !weight_fits || !serves(&[x, weight]) {
        return None;
    }
    let normed = SWITCH.result(shim_rms_norm(x, weight, epsilon));
    #[cfg(test)]
    tests::count_fused_call(&normed);
    normed
}

fn shim_rms_norm(x: &Tensor, weight: &Tensor, epsilon: f64) -> Result<Tensor, String> {
    let (mut x, mut weight) = (x.shallow_clone(), weight.shallow_clone());
    // SAFETY: both tensors are live for the call; on success the entry point stores a new
    // tensor.
    unsafe {
        shim_tensor(|out| hm_fused_rms_norm(x.as_mut_ptr(), weight.as_mut_ptr(), epsilon, out))
    }
}

/// The norm from libtorch's operators: `x` normalised in f32, rounded to its dtype, then
/// scaled by the weight in that dtype (t5x's and transformers' bf16 arithmetic).
fn composed_rms_norm(x: &Tensor, weight: &Tensor, epsilon: f64) -> Tensor {
    let kind = x.kind();
    let x32 = x.to_kind(Kind::Float);
    let variance = x32.square().mean_dim(-1, true, Kind::Float);
    let normed = (x32 * (variance + epsilon).rsqrt()).to_kind(kind);
    // (`to_kind` to the same dtype is the tensor itself, not a copy.)
    weight.to_kind(kind) * normed
}

/// The activation of a gated feed-forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GatedActivation {
    /// GELU with the tanh approximation (HF's `gelu_new`, T5 v1.1's).
    GeluTanh = 0,
    /// SiLU.
    Silu = 1,
}

/// `act(product[.., :F]) * product[.., F:]` for the product `[.., 2F]` that computed the
/// gate and the linear half together: the fused kernel where it applies, else libtorch's
/// operators.
pub(crate) fn gated_activation(product: &Tensor, activation: GatedActivation) -> Tensor {
    fused_gated_activation(product, activation)
        .unwrap_or_else(|| composed_gated_activation(product, activation))
}

/// The fused kernel's activation, or `None` where it does not apply.
fn fused_gated_activation(product: &Tensor, activation: GatedActivation) -> Option<Tensor> {
    let even = product.dim() >= 1 && product.size()[product.dim() - 1] % 2 == 0;
    if !SWITCH.usable() || !even || !serves(&[product]) {
        return None;
    }
    let inner = SWITCH.result(shim_gated_activation(product, activation));
    #[cfg(test)]
    tests::count_fused_call(&inner);
    inner
}

fn shim_gated_activation(product: &Tensor, activation: GatedActivation) -> Result<Tensor, String> {
    let mut product = product.shallow_clone();
    // SAFETY: the tensor is live for the call; on success the entry point stores a new
    // tensor.
    unsafe {
        shim_tensor(|out| hm_fused_gated_activation(product.as_mut_ptr(), activation as c_int, out))
    }
}

fn composed_gated_activation(product: &Tensor, activation: GatedActivation) -> Tensor {
    let halves = product.chunk(2, -1);
    let gate = match activation {
        GatedActivation::GeluTanh => halves[0].gelu("tanh"),
        GatedActivation::Silu => halves[0].silu(),
    };
    gate * &halves[1]
}

/// What a loss or a score needs of each row of logits `[.., V]`, in f32 (shape `[..]`).
pub(crate) struct LogitStatistics {
    /// `log Σ e^x`, the log-partition.
    pub log_z: Tensor,
    /// The target's logit.
    pub target_logit: Tensor,
    /// `Σ x` over the row (label smoothing's sum of log-probabilities is
    /// `logit_sum − V · log_z`).
    pub logit_sum: Tensor,
}

/// [`LogitStatistics`] of `logits [.., V]` (f32 or bf16, differentiable in the logits)
/// for `targets [..]` from the fused kernel, or `None` where it does not apply: then the
/// caller composes libtorch's operators (which also report targets outside the
/// vocabulary, declined here before the call).
pub(crate) fn logit_statistics(logits: &Tensor, targets: &Tensor) -> Option<LogitStatistics> {
    if !SWITCH.usable() || !serves(&[logits]) {
        return None;
    }
    let vocab = logits.size()[logits.dim() - 1];
    let rows = logits.numel() / vocab.max(1) as usize;
    let ids_fit = targets.device() == Device::Cpu
        && targets.kind() == Kind::Int64
        && targets.numel() == rows
        && vocab > 0
        && (rows == 0
            || (i64::try_from(targets.min()).is_ok_and(|low| low >= 0)
                && i64::try_from(targets.max()).is_ok_and(|high| high < vocab)));
    if !ids_fit {
        return None;
    }
    let stats = SWITCH.result(shim_logit_statistics(logits, targets));
    #[cfg(test)]
    tests::count_fused_call(&stats);
    stats.map(LogitStatistics::from_stacked)
}

impl LogitStatistics {
    /// The kernel's `[.., 3]` output, one view per statistic.
    pub(crate) fn from_stacked(stats: Tensor) -> Self {
        Self {
            log_z: stats.select(-1, 0),
            target_logit: stats.select(-1, 1),
            logit_sum: stats.select(-1, 2),
        }
    }
}

/// The kernel itself, whatever the switch says (its tests compare it with the composition).
pub(crate) fn shim_logit_statistics(logits: &Tensor, targets: &Tensor) -> Result<Tensor, String> {
    let (mut logits, mut targets) = (logits.shallow_clone(), targets.shallow_clone());
    // SAFETY: both tensors are live for the call; on success the entry point stores a new
    // tensor.
    unsafe {
        shim_tensor(|out| hm_fused_logit_statistics(logits.as_mut_ptr(), targets.as_mut_ptr(), out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// Fused kernel calls that ran on this thread (tests run one per thread).
        static FUSED_CALLS: Cell<usize> = const { Cell::new(0) };
    }

    pub(super) fn count_fused_call(result: &Option<Tensor>) {
        if result.is_some() {
            FUSED_CALLS.with(|calls| calls.set(calls.get() + 1));
        }
    }

    #[test]
    fn t5_layers_run_the_fused_kernels_on_the_cpu() {
        use crate::t5::feed_forward::FeedForward;
        use crate::t5::layers::LayerNorm;
        use crate::T5Config;
        let config = T5Config::preset("tiny").unwrap();
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let norm = LayerNorm::new(vs.root() / "norm", config.d_model, 1e-6, 1.0);
        let feed_forward = FeedForward::new(vs.root() / "ff", &config);
        let expected = usize::from(fused_kernels());
        for kind in [Kind::Float, Kind::BFloat16] {
            let x = Tensor::randn([2, 3, config.d_model], (kind, Device::Cpu));
            let before = FUSED_CALLS.with(Cell::get);
            let _ = norm.forward(&x);
            assert_eq!(
                FUSED_CALLS.with(Cell::get) - before,
                expected,
                "{kind:?} norm"
            );
            let _ = feed_forward.forward(&x, None, false);
            assert_eq!(
                FUSED_CALLS.with(Cell::get) - before,
                2 * expected,
                "{kind:?} feed-forward"
            );
        }
        // The loss reads its statistics of the logits from the fused kernel.
        let before = FUSED_CALLS.with(Cell::get);
        let logits = Tensor::randn([2, 3, 7], (Kind::BFloat16, Device::Cpu));
        let targets = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 6]).view([2, 3]);
        let weights = Tensor::ones([2, 3], (Kind::Float, Device::Cpu));
        let _ = crate::cross_entropy(&logits, &targets, &weights, &Default::default());
        assert_eq!(FUSED_CALLS.with(Cell::get) - before, expected, "the loss");
        // f64 takes libtorch's operators.
        let before = FUSED_CALLS.with(Cell::get);
        let _ = norm.forward(&Tensor::randn(
            [2, config.d_model],
            (Kind::Double, Device::Cpu),
        ));
        assert_eq!(FUSED_CALLS.with(Cell::get), before);
    }

    fn leaf(shape: &[i64], kind: Kind, seed: i64, scale: f64) -> Tensor {
        tch::manual_seed(seed);
        (Tensor::randn(shape, (Kind::Float, Device::Cpu)) * scale)
            .to_kind(kind)
            .set_requires_grad(true)
    }

    /// Every element of `a` within `atol + rtol·|b|` of `b`'s.
    fn assert_close(a: &Tensor, b: &Tensor, atol: f64, rtol: f64, what: &str) {
        assert_eq!(a.size(), b.size(), "{what}");
        let (a, b) = (a.to_kind(Kind::Double), b.to_kind(Kind::Double));
        let excess = ((&a - &b).abs() - (b.abs() * rtol + atol))
            .max()
            .double_value(&[]);
        let worst = (&a - &b).abs().max().double_value(&[]);
        assert!(excess <= 0.0, "{what}: differs by up to {worst}");
    }

    fn zero_grads(inputs: &[&Tensor]) {
        for t in inputs {
            let mut grad = t.grad();
            if grad.defined() {
                let _ = grad.zero_();
            }
        }
    }

    /// Runs `f` forward and backward against `upstream`; returns the output and the inputs'
    /// gradients.
    fn run(inputs: &[&Tensor], upstream: &Tensor, f: impl Fn() -> Tensor) -> Vec<Tensor> {
        zero_grads(inputs);
        let out = f();
        // The gradient flowing in is `upstream`: that of Σ out ⊙ upstream.
        (&out * upstream).sum(Kind::Float).backward();
        let mut results = vec![out.detach()];
        results.extend(inputs.iter().map(|t| t.grad().copy()));
        results
    }

    #[test]
    fn fused_norm_equals_the_composition_forward_and_backward() {
        // 70 rows: more than two blocks of the weight's gradient, the last one partial; 97
        // columns: the vector loops' remainders run. f32 within a few ulps; bf16 within one
        // rounding.
        for (kind, weight_kind, atol, rtol) in [
            (Kind::Float, Kind::Float, 1e-6, 1e-5),
            (Kind::Float, Kind::BFloat16, 1e-6, 1e-5),
            (Kind::BFloat16, Kind::Float, 1e-3, 8e-3),
            (Kind::BFloat16, Kind::BFloat16, 1e-3, 8e-3),
        ] {
            let what = format!("{kind:?} input, {weight_kind:?} weight");
            let x = leaf(&[2, 35, 97], kind, 1, 3.0);
            let weight = (leaf(&[97], Kind::Float, 2, 0.5).detach() + 1.0)
                .to_kind(weight_kind)
                .set_requires_grad(true);
            let upstream = leaf(&[2, 35, 97], kind, 3, 1.0).detach();
            let fused = run(&[&x, &weight], &upstream, || {
                shim_rms_norm(&x, &weight, 1e-6).unwrap()
            });
            let composed = run(&[&x, &weight], &upstream, || {
                composed_rms_norm(&x, &weight, 1e-6)
            });
            assert_eq!(fused[0].kind(), kind, "{what}");
            assert_eq!(fused[2].kind(), weight_kind, "{what}");
            assert_close(
                &fused[0],
                &composed[0],
                atol,
                rtol,
                &format!("{what}: output"),
            );
            assert_close(
                &fused[1],
                &composed[1],
                atol,
                rtol,
                &format!("{what}: input's gradient"),
            );
            // The composition rounds each product of the weight's gradient to the compute
            // dtype before summing; the kernel sums in f32: compare with an f32 sum of the
            // rounded normalised values.
            let normed =
                composed_rms_norm(&x.detach(), &Tensor::ones([97], (kind, Device::Cpu)), 1e-6);
            let reference = (upstream.to_kind(Kind::Float) * normed.to_kind(Kind::Float))
                .sum_dim_intlist([0, 1].as_slice(), false, Kind::Float);
            let weight_rtol = if weight_kind == Kind::Float {
                1e-5
            } else {
                8e-3
            };
            assert_close(
                &fused[2],
                &reference,
                1e-4,
                weight_rtol,
                &format!("{what}: weight's gradient"),
            );
        }
    }

    #[test]
    fn fused_norm_takes_strided_inputs_broadcast_gradients_and_partial_needs() {
        // A transposed (non-contiguous) input, a gradient broadcast by `sum`, and only the
        // input (a frozen weight) or only the weight needing a gradient.
        let base = leaf(&[64, 3, 40], Kind::BFloat16, 4, 2.0);
        let x = base.transpose(0, 2); // [40, 3, 64]
        let weight = Tensor::full([64], 1.5, (Kind::Float, Device::Cpu));
        let fused = shim_rms_norm(&x, &weight, 1e-6).unwrap();
        assert_close(
            &fused,
            &composed_rms_norm(&x, &weight, 1e-6),
            0.0,
            0.0,
            "strided output",
        );
        fused.sum(Kind::Float).backward();
        let fused_grad = base.grad().copy();
        zero_grads(&[&base]);
        composed_rms_norm(&x, &weight, 1e-6)
            .sum(Kind::Float)
            .backward();
        assert_close(&fused_grad, &base.grad(), 1e-3, 8e-3, "broadcast gradient");

        let frozen_x = leaf(&[5, 64], Kind::Float, 5, 1.0).detach();
        let trained = weight.detach().set_requires_grad(true);
        shim_rms_norm(&frozen_x, &trained, 1e-6)
            .unwrap()
            .sum(Kind::Float)
            .backward();
        let reference = trained.detach().set_requires_grad(true);
        composed_rms_norm(&frozen_x, &reference, 1e-6)
            .sum(Kind::Float)
            .backward();
        assert_close(
            &trained.grad(),
            &reference.grad(),
            1e-5,
            1e-5,
            "weight only",
        );
        // Outside grad mode no graph is recorded.
        let out = tch::no_grad(|| shim_rms_norm(&x, &trained, 1e-6).unwrap());
        assert!(!out.requires_grad());
    }

    #[test]
    fn fused_gated_activation_equals_the_composition_forward_and_backward() {
        // Every value from -20 to 20 in steps of 1/64 (the tanh's small-argument series
        // around 0, both tails), then ±90 (past the exponential's clamps); 2 × 2 rows of
        // 1283 + 2 halves.
        let grid = Tensor::arange_start_step(-20.0, 20.0, 1.0 / 64.0, (Kind::Float, Device::Cpu));
        let values = Tensor::cat(&[grid, Tensor::from_slice(&[90.0f32, -90.0, 0.0])], 0);
        let n = values.size()[0];
        let gates = values.view([1, n]).expand([4, n], false);
        let linear = Tensor::linspace(-3.0, 3.0, 4 * n, (Kind::Float, Device::Cpu)).view([4, n]);
        for activation in [GatedActivation::GeluTanh, GatedActivation::Silu] {
            // The gradient's terms reach ~10 (|linear| ≤ 3): its absolute tolerance in f32
            // is 1e-6 of that; the tanh's ~2e-6 relative error enters it as 1 - t².
            for (kind, atol, grad_atol, rtol) in [
                (Kind::Float, 1e-6, 1e-5, 1e-5),
                (Kind::BFloat16, 1e-3, 1e-3, 8e-3),
            ] {
                let what = format!("{activation:?} {kind:?}");
                let product = Tensor::cat(&[&gates, &linear], 1)
                    .view([2, 2, 2 * n])
                    .to_kind(kind)
                    .set_requires_grad(true);
                let upstream = leaf(&[2, 2, n], kind, 6, 1.0).detach();
                let fused = run(&[&product], &upstream, || {
                    shim_gated_activation(&product, activation).unwrap()
                });
                let composed = run(&[&product], &upstream, || {
                    composed_gated_activation(&product, activation)
                });
                assert_close(
                    &fused[0],
                    &composed[0],
                    atol,
                    rtol,
                    &format!("{what}: output"),
                );
                assert_close(
                    &fused[1],
                    &composed[1],
                    grad_atol,
                    rtol,
                    &format!("{what}: gradient"),
                );
            }
        }
    }

    #[test]
    fn kernels_decline_what_they_do_not_serve() {
        let cpu = |kind| (kind, Device::Cpu);
        for kind in [Kind::Double, Kind::Half] {
            let x = Tensor::ones([2, 4], cpu(kind));
            assert!(fused_rms_norm(&x, &Tensor::ones([4], cpu(kind)), 1e-6).is_none());
            assert!(fused_gated_activation(&x, GatedActivation::GeluTanh).is_none());
        }
        let x = Tensor::ones([2, 4], cpu(Kind::Float));
        // A weight of another width, a 0-d input, an odd product: declined, not failed.
        assert!(fused_rms_norm(&x, &Tensor::ones([1], cpu(Kind::Float)), 1e-6).is_none());
        assert!(fused_rms_norm(
            &Tensor::from(1.0f32),
            &Tensor::ones([1], cpu(Kind::Float)),
            1e-6
        )
        .is_none());
        assert!(fused_gated_activation(
            &Tensor::ones([2, 5], cpu(Kind::Float)),
            GatedActivation::Silu
        )
        .is_none());
        // Logit statistics: targets outside the vocabulary, of another integer type, or
        // one too few; f64 logits; an empty vocabulary.
        let logits = Tensor::zeros([2, 5], cpu(Kind::Float));
        for targets in [
            Tensor::from_slice(&[0i64, 5]),
            Tensor::from_slice(&[-1i64, 2]),
            Tensor::from_slice(&[0i32, 2]),
            Tensor::from_slice(&[0i64]),
        ] {
            assert!(logit_statistics(&logits, &targets).is_none(), "{targets:?}");
        }
        let fine = Tensor::from_slice(&[0i64, 4]);
        assert!(logit_statistics(&logits.to_kind(Kind::Double), &fine).is_none());
        assert!(logit_statistics(&Tensor::zeros([2, 0], cpu(Kind::Float)), &fine).is_none());
        assert!(SWITCH.usable() || !fused_kernels());
        // The shim itself refuses them with a message.
        let error = shim_logit_statistics(&logits, &Tensor::from_slice(&[0i64, 7])).unwrap_err();
        assert!(error.contains("outside the vocabulary"), "{error}");
        let error = shim_gated_activation(
            &Tensor::ones([2, 5], cpu(Kind::Float)),
            GatedActivation::Silu,
        )
        .unwrap_err();
        assert!(error.contains("odd width"), "{error}");
    }

    #[test]
    fn the_norm_weight_gradient_is_the_same_at_any_thread_count() {
        // 4096 rows of 512: 128 blocks × 512 partial sums, large enough that libtorch's own
        // sum would split its work by thread count.
        let x = leaf(&[4096, 512], Kind::BFloat16, 7, 2.0);
        let weight = Tensor::ones([512], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let upstream = leaf(&[4096, 512], Kind::BFloat16, 8, 1.0).detach();
        let threads = tch::get_num_threads();
        let mut gradients = Vec::new();
        for n in [1, 2, 3, 5] {
            tch::set_num_threads(n);
            let out = run(&[&x, &weight], &upstream, || {
                shim_rms_norm(&x, &weight, 1e-6).unwrap()
            });
            gradients.push(out[2].shallow_clone());
        }
        tch::set_num_threads(threads);
        for (i, gradient) in gradients.iter().enumerate().skip(1) {
            assert!(gradient.equal(&gradients[0]), "thread count #{i}");
        }
    }
}
