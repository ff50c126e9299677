//! Fused CPU kernels for T5's RMS norm and gated feed-forward activation.
//!
//! Composed of libtorch operators, the RMS norm is about ten passes over the activations
//! forward and twenty backward, and it saves an f32 copy of its input for the backward
//! pass; the gated activation `act(gate) * linear` is two passes forward, four backward and
//! a copy joining the halves' gradients. In a bf16 training step at the T5-v1.1-small shape
//! on a 2-core CPU these took about a quarter of the step, mostly memory traffic and the
//! OpenMP barriers between operators. The shim (`shim/fused_kernels.cpp`) does each in one
//! pass forward and one backward, as autograd functions with hand-written gradients.
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

fn applies(tensors: &[&Tensor]) -> bool {
    SWITCH.usable()
        && tensors
            .iter()
            .all(|t| t.device() == Device::Cpu && matches!(t.kind(), Kind::Float | Kind::BFloat16))
}

/// T5's RMS norm of `x [.., d]` with `weight [d]`, in `x`'s dtype: the fused kernel where
/// it applies, else libtorch's operators.
pub(crate) fn rms_norm(x: &Tensor, weight: &Tensor, epsilon: f64) -> Tensor {
    fused_rms_norm(x, weight, epsilon).unwrap_or_else(|| composed_rms_norm(x, weight, epsilon))
}

/// The fused kernel's norm, or `None` where it does not apply (see the module's notes).
fn fused_rms_norm(x: &Tensor, weight: &Tensor, epsilon: f64) -> Option<Tensor> {
    if !applies(&[x, weight]) {
        return None;
    }
    let (mut x, mut weight) = (x.shallow_clone(), weight.shallow_clone());
    // SAFETY: both tensors are live for the call; on success the entry point stores a new
    // tensor.
    SWITCH.result(unsafe {
        shim_tensor(|out| hm_fused_rms_norm(x.as_mut_ptr(), weight.as_mut_ptr(), epsilon, out))
    })
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
    if !applies(&[product]) {
        return None;
    }
    let mut product = product.shallow_clone();
    // SAFETY: the tensor is live for the call; on success the entry point stores a new
    // tensor.
    SWITCH.result(unsafe {
        shim_tensor(|out| hm_fused_gated_activation(product.as_mut_ptr(), activation as c_int, out))
    })
}

fn composed_gated_activation(product: &Tensor, activation: GatedActivation) -> Tensor {
    let halves = product.chunk(2, -1);
    let gate = match activation {
        GatedActivation::GeluTanh => halves[0].gelu("tanh"),
        GatedActivation::Silu => halves[0].silu(),
    };
    gate * &halves[1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(shape: &[i64], kind: Kind, seed: i64, scale: f64) -> Tensor {
        tch::manual_seed(seed);
        (Tensor::randn(shape, (Kind::Float, Device::Cpu)) * scale)
            .to_kind(kind)
            .set_requires_grad(true)
    }

    fn max_difference(a: &Tensor, b: &Tensor) -> f64 {
        (a.to_kind(Kind::Float) - b.to_kind(Kind::Float))
            .abs()
            .max()
            .double_value(&[])
    }

    /// Runs `f` forward and backward against `upstream`; returns the output and the inputs'
    /// gradients.
    fn run(inputs: &[&Tensor], upstream: &Tensor, f: impl Fn() -> Tensor) -> Vec<Tensor> {
        for t in inputs {
            let mut grad = t.grad();
            if grad.defined() {
                let _ = grad.zero_();
            }
        }
        let out = f();
        // The gradient flowing in is `upstream`: that of Σ out ⊙ upstream.
        (&out * upstream).sum(Kind::Float).backward();
        let mut results = vec![out.detach()];
        results.extend(inputs.iter().map(|t| t.grad().copy()));
        results
    }

    #[test]
    fn fused_norm_equals_the_composition_forward_and_backward() {
        // 70 rows: more than two blocks of the weight's gradient, the last one partial.
        for (kind, weight_kind, tolerance) in [
            // f32: a few ulps; bf16: at most one rounding (2⁻⁸) apart (measured: identical).
            (Kind::Float, Kind::Float, 1e-6),
            (Kind::BFloat16, Kind::Float, 4e-3),
            (Kind::BFloat16, Kind::BFloat16, 4e-3),
        ] {
            let x = leaf(&[2, 35, 96], kind, 1, 3.0);
            let weight = (leaf(&[96], Kind::Float, 2, 0.5).detach() + 1.0)
                .to_kind(weight_kind)
                .set_requires_grad(true);
            let upstream = leaf(&[2, 35, 96], kind, 3, 1.0).detach();
            let fused = run(&[&x, &weight], &upstream, || {
                fused_rms_norm(&x, &weight, 1e-6).expect("the kernel applies")
            });
            let composed = run(&[&x, &weight], &upstream, || {
                composed_rms_norm(&x, &weight, 1e-6)
            });
            for (name, a, b) in [
                ("output", &fused[0], &composed[0]),
                ("input's gradient", &fused[1], &composed[1]),
            ] {
                assert_eq!(a.kind(), kind, "{name}");
                let scale = b.abs().max().double_value(&[]);
                let difference = max_difference(a, b);
                assert!(
                    difference <= tolerance * scale,
                    "{kind:?} {name}: {difference} of {scale}"
                );
            }
            // bf16 composition rounds every product of the weight's gradient; the kernel
            // sums them in f32: compare against an f32 reference instead.
            assert_eq!(fused[2].kind(), weight_kind);
            let reference = {
                let x32 = x.detach().to_kind(Kind::Float);
                let normed = composed_rms_norm(
                    &x32,
                    &weight.detach().ones_like().to_kind(Kind::Float),
                    1e-6,
                )
                .to_kind(kind)
                .to_kind(Kind::Float);
                (upstream.to_kind(Kind::Float) * normed).sum_dim_intlist(
                    [0, 1].as_slice(),
                    false,
                    Kind::Float,
                )
            };
            let scale = reference.abs().max().double_value(&[]);
            let difference = max_difference(&fused[2], &reference);
            let weight_tolerance = if weight_kind == Kind::Float {
                1e-6
            } else {
                4e-3
            };
            assert!(
                difference <= weight_tolerance * scale,
                "{kind:?} weight's gradient: {difference} of {scale}"
            );
        }
    }

    #[test]
    fn fused_gated_activation_equals_the_composition_forward_and_backward() {
        for activation in [GatedActivation::GeluTanh, GatedActivation::Silu] {
            for (kind, tolerance) in [(Kind::Float, 1e-6), (Kind::BFloat16, 4e-3)] {
                // Values far into both tails of the activation and near its centre.
                let product = leaf(&[3, 5, 2 * 77], kind, 4, 4.0);
                let upstream = leaf(&[3, 5, 77], kind, 5, 1.0).detach();
                let fused = run(&[&product], &upstream, || {
                    fused_gated_activation(&product, activation).expect("the kernel applies")
                });
                let composed = run(&[&product], &upstream, || {
                    composed_gated_activation(&product, activation)
                });
                for (name, a, b) in [
                    ("output", &fused[0], &composed[0]),
                    ("gradient", &fused[1], &composed[1]),
                ] {
                    assert_eq!(a.size(), b.size(), "{name}");
                    let scale = b.abs().max().double_value(&[]);
                    let difference = max_difference(a, b);
                    assert!(
                        difference <= tolerance * scale,
                        "{activation:?} {kind:?} {name}: {difference} of {scale}"
                    );
                }
            }
        }
    }

    #[test]
    fn kernels_decline_what_they_do_not_serve() {
        let double = Tensor::ones([2, 4], (Kind::Double, Device::Cpu));
        assert!(fused_rms_norm(
            &double,
            &Tensor::ones([4], (Kind::Double, Device::Cpu)),
            1e-6
        )
        .is_none());
        assert!(fused_gated_activation(&double, GatedActivation::GeluTanh).is_none());
    }

    #[test]
    fn the_norm_weight_gradient_is_the_same_at_any_thread_count() {
        let x = leaf(&[300, 64], Kind::BFloat16, 6, 2.0);
        let weight = Tensor::ones([64], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let upstream = leaf(&[300, 64], Kind::BFloat16, 7, 1.0).detach();
        let threads = tch::get_num_threads();
        let mut gradients = Vec::new();
        for n in [1, 2] {
            tch::set_num_threads(n);
            let out = run(&[&x, &weight], &upstream, || {
                fused_rms_norm(&x, &weight, 1e-6).expect("applies")
            });
            gradients.push(out[2].shallow_clone());
        }
        tch::set_num_threads(threads);
        assert!(gradients[0].equal(&gradients[1]));
    }
}
