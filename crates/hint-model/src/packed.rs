//! Inference products through oneDNN with each weight reordered once.
//!
//! libtorch computes an f32 `linear` with MKL's sgemm, which on AMD CPUs runs a kernel far
//! from the machine's peak, and packs the weight anew on every call, which dominates the
//! few-row products of decoding. oneDNN's inner-product primitive, given the weight once in
//! its blocked layout (the operators Inductor's CPU freezing uses), measured 2.5–3× faster
//! in f32 on this project's AMD EPYC machine at every row count (decoding's 8–20 rows, an
//! encoder's thousands) and 1.1–1.9× in bf16 (where libtorch already uses oneDNN but
//! reorders the weight per call). The results agree with the plain product to rounding
//! (f32: a different summation order, ~1e-6 relative; bf16: identical in our checks).
//!
//! Products below about a million multiply-adds keep the plain path, where the oneDNN
//! call's fixed cost would lose (the tiny test models, one-row decoding through the
//! narrower layers). The reordered copy is made lazily, the first time a weight meets a
//! large enough inference product, and kept beside it: one more copy of the weights in the
//! compute dtype ([`packed_weight_bytes`]). It is used only where no gradient can be
//! wanted: grad mode off, and neither the input nor the weight requiring a gradient, which
//! is the case for models loaded for inference (`hint_train::load_run` freezes the
//! weights) and never for a model being trained. A copy remembers the weight's storage and
//! version counter, so a weight changed in place (a checkpoint loaded into it) is reordered
//! again rather than served stale.
//!
//! `HINT_WEIGHT_PACKING=0` in the environment (or [`set_weight_packing`]) turns it off.
#![allow(unsafe_code)]

use std::os::raw::c_int;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

use crate::remat::{grad_mode, shim_tensor};
use crate::runtime::KernelSwitch;

unsafe extern "C" {
    fn hm_mkldnn_available() -> c_int;
    fn hm_tensor_version(tensor: *mut C_tensor, version: *mut i64) -> c_int;
    fn hm_packed_weight(weight: *mut C_tensor, out: *mut *mut C_tensor) -> c_int;
    fn hm_packed_linear(
        input: *mut C_tensor,
        packed: *mut C_tensor,
        out: *mut *mut C_tensor,
    ) -> c_int;
}

/// The environment variable that turns weight packing off (`0`, `false`, `off`, `no`).
pub const WEIGHT_PACKING_ENV: &str = "HINT_WEIGHT_PACKING";

static SWITCH: KernelSwitch = KernelSwitch::new(WEIGHT_PACKING_ENV, "oneDNN weight packing");

/// Turns oneDNN weight packing for inference products on or off for the whole process
/// (on by default unless `HINT_WEIGHT_PACKING=0`): the benchmarks compare both ways.
///
/// ```
/// hint_model::set_weight_packing(false);
/// assert!(!hint_model::weight_packing());
/// hint_model::set_weight_packing(true);
/// ```
pub fn set_weight_packing(enabled: bool) {
    SWITCH.set(enabled);
}

/// Whether inference products may use packed weights ([`set_weight_packing`]).
pub fn weight_packing() -> bool {
    SWITCH.wanted()
}

/// Whether this libtorch has oneDNN (and this CPU runs it).
fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    // SAFETY: reads a build flag of libtorch.
    *AVAILABLE.get_or_init(|| unsafe { hm_mkldnn_available() != 0 })
}

fn version(tensor: &Tensor) -> Option<i64> {
    let mut handle = tensor.shallow_clone();
    let mut version = 0i64;
    // SAFETY: the tensor is live for the call, which writes one integer.
    let code = unsafe { hm_tensor_version(handle.as_mut_ptr(), &mut version) };
    (code == 0).then_some(version)
}

/// The smallest product (multiply-adds) worth the oneDNN call: its ~12 µs fixed cost loses
/// to the plain product below about a million (measured: a 512 × 512 weight at 1 row, 17
/// against 23 µs; at 8 rows, 53 against 26 µs), which is every product of the tiny test
/// models and of one-row decoding through the narrower layers.
const MIN_PRODUCTS: i64 = 1 << 20;

/// Which weights a reordered copy was made from: each one's storage and version.
type Sources = Vec<(usize, i64)>;

#[derive(Debug)]
struct Packed {
    sources: Sources,
    kind: Kind,
    weight: Tensor,
    bytes: u64,
}

/// Bytes held in reordered copies by the whole process.
static PACKED_BYTES: AtomicU64 = AtomicU64::new(0);

/// The bytes of reordered weight copies the process holds now: the memory that packing
/// costs (about one copy of the weights in the compute dtype once every product has run).
pub fn packed_weight_bytes() -> u64 {
    PACKED_BYTES.load(Ordering::Relaxed)
}

impl Drop for Packed {
    fn drop(&mut self) {
        PACKED_BYTES.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// The reordered copies of one weight, alone or first of several stacked along the output
/// axis (a fused product), per compute dtype, made on first use; cloning shares them.
#[derive(Debug, Clone, Default)]
pub(crate) struct PackedWeight(Arc<Mutex<Vec<Packed>>>);

impl PackedWeight {
    /// `input · [weights stacked on the output axis]ᵀ` in `input`'s dtype through the
    /// reordered copy, or `None` where the plain product must run (a gradient may be
    /// wanted, another device or dtype, packing off or unavailable).
    pub(crate) fn product(&self, input: &Tensor, weights: &[&Tensor]) -> Option<Tensor> {
        // Training calls this for every product: grad mode sends it away first, before any
        // shape is read.
        if !SWITCH.usable() || grad_mode() {
            return None;
        }
        let kind = input.kind();
        // input rows × output features × input features
        let products = input.numel() as i64 * weights.iter().map(|w| w.size()[0]).sum::<i64>();
        let applies = products >= MIN_PRODUCTS
            && matches!(kind, Kind::Float | Kind::BFloat16)
            && input.device() == Device::Cpu
            && !input.requires_grad()
            && weights
                .iter()
                .all(|w| w.device() == Device::Cpu && !w.requires_grad())
            && available();
        if !applies {
            return None;
        }
        let sources: Sources = weights
            .iter()
            .map(|w| Some((w.data_ptr() as usize, version(w)?)))
            .collect::<Option<_>>()?;
        let mut copies = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let same_weights = |p: &Packed| {
            p.kind == kind
                && p.sources.len() == sources.len()
                && p.sources.iter().zip(&sources).all(|(a, b)| a.0 == b.0)
        };
        let found = copies.iter().position(same_weights);
        let packed = match found {
            Some(i) if copies[i].sources == sources => copies[i].weight.shallow_clone(),
            _ => {
                let stacked: Vec<Tensor> = weights.iter().map(|w| w.to_kind(kind)).collect();
                let stacked = match stacked.as_slice() {
                    [one] => one.shallow_clone(),
                    _ => Tensor::cat(&stacked, 0),
                };
                let weight = SWITCH.result(pack(&stacked))?;
                let bytes = (stacked.numel() * stacked.kind().elt_size_in_bytes()) as u64;
                PACKED_BYTES.fetch_add(bytes, Ordering::Relaxed);
                let copy = Packed {
                    sources,
                    kind,
                    weight: weight.shallow_clone(),
                    bytes,
                };
                // A stale copy (the weight changed in place) is replaced, not kept beside.
                match found {
                    Some(i) => copies[i] = copy,
                    None => copies.push(copy),
                }
                weight
            }
        };
        drop(copies);
        SWITCH.result(linear(input, &packed))
    }
}

fn pack(weight: &Tensor) -> Result<Tensor, String> {
    let mut weight = weight.shallow_clone();
    // SAFETY: the weight is live for the call; on success hm_packed_weight stores a new
    // tensor.
    unsafe { shim_tensor(|out| hm_packed_weight(weight.as_mut_ptr(), out)) }
}

fn linear(input: &Tensor, packed: &Tensor) -> Result<Tensor, String> {
    let (mut input, mut packed) = (input.shallow_clone(), packed.shallow_clone());
    // SAFETY: both tensors are live for the call; on success hm_packed_linear stores a new
    // tensor.
    unsafe { shim_tensor(|out| hm_packed_linear(input.as_mut_ptr(), packed.as_mut_ptr(), out)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frozen(shape: [i64; 2], seed: i64) -> Tensor {
        tch::manual_seed(seed);
        Tensor::randn(shape, (Kind::Float, Device::Cpu))
    }

    #[test]
    fn packed_products_equal_plain_ones_and_follow_in_place_changes() {
        // 16 rows × (512 + 128) outputs × 256 inputs: above MIN_PRODUCTS.
        let weight = frozen([512, 256], 1);
        let other = frozen([128, 256], 2);
        let input = frozen([16, 256], 3).view([1, 16, 256]);
        let packed = PackedWeight::default();
        let fused = PackedWeight::default();
        tch::no_grad(|| {
            for kind in [Kind::Float, Kind::BFloat16] {
                let x = input.to_kind(kind);
                let plain = x.linear::<Tensor>(&weight.to_kind(kind), None);
                let got = packed.product(&x, &[&weight]).expect("packing applies");
                assert_eq!(got.size(), [1, 16, 512]);
                assert_eq!(got.kind(), kind);
                // Values of about 16 (256 unit products): f32 differs in its last bits, bf16 by an ulp.
                let tolerance = if kind == Kind::Float { 1e-4 } else { 0.25 };
                let diff = (got.to_kind(Kind::Float) - plain.to_kind(Kind::Float))
                    .abs()
                    .max()
                    .double_value(&[]);
                assert!(diff <= tolerance, "{kind:?}: {diff}");
                // Several weights stacked: the fused product of q, k, v.
                let both = fused.product(&x, &[&weight, &other]).unwrap();
                let plain_both =
                    Tensor::cat(&[plain, x.linear::<Tensor>(&other.to_kind(kind), None)], -1);
                let diff = (both.to_kind(Kind::Float) - plain_both.to_kind(Kind::Float))
                    .abs()
                    .max()
                    .double_value(&[]);
                assert!(diff <= tolerance, "{kind:?} fused: {diff}");
            }
            // A weight changed in place is reordered again, not served stale.
            let mut changed = weight.shallow_clone();
            let _ = changed.g_mul_scalar_(2.0);
            let got = packed.product(&input, &[&weight]).unwrap();
            let plain = input.linear::<Tensor>(&weight, None);
            let diff = (got - plain).abs().max().double_value(&[]);
            assert!(diff <= 1e-4, "after an in-place change: {diff}");
        });
    }

    #[test]
    fn products_that_may_need_a_gradient_take_the_plain_path() {
        let packed = PackedWeight::default();
        let weight = frozen([512, 256], 4);
        let input = frozen([16, 256], 5);
        // Grad mode on: a graph may be recorded.
        assert!(packed.product(&input, &[&weight]).is_none());
        // A weight that trains.
        let trained = frozen([512, 256], 4).set_requires_grad(true);
        assert!(tch::no_grad(|| packed.product(&input, &[&trained])).is_none());
        // A product too small to pay for the call.
        let one_row = input.narrow(0, 0, 1);
        assert!(tch::no_grad(|| packed.product(&one_row, &[&weight])).is_none());
        assert!(tch::no_grad(|| packed.product(&input, &[&weight])).is_some());
    }
}
