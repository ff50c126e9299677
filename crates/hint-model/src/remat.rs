//! Rematerialisation (t5x's `remat`, PyTorch's activation checkpointing): a block runs
//! without keeping its intermediate activations, and the backward pass recomputes them
//! from the block's inputs. Memory for activations then grows with the number of blocks
//! times their inputs, not times everything inside them; the price is a second forward
//! pass of each block during the backward pass.
//!
//! tch has no custom autograd functions, so the node that recomputes lives in
//! `shim/autograd_shim.cpp` and calls the Rust function back. The recomputation sees the
//! random generators as the first run saw them, so dropout draws the same masks and the
//! gradients equal those of the plain forward pass.
// The only unsafe code of hint-model besides the allocator's: the calls into the shim and
// its calls back, each with its reason.
#![allow(unsafe_code)]

use std::ffi::{c_void, CStr};
use std::os::raw::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde::{Deserialize, Serialize};
use tch::Tensor;
use torch_sys::C_tensor;

/// Which activations a training step keeps (t5x's `remat_policy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RematPolicy {
    /// Every activation is kept (fastest, most memory).
    #[default]
    None,
    /// Only each block's inputs are kept; the backward pass recomputes the rest of the
    /// block (encoder and decoder blocks, and the instruction encoder's).
    Full,
}

impl std::str::FromStr for RematPolicy {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "none" => Ok(Self::None),
            "full" => Ok(Self::Full),
            other => Err(format!(
                "unknown remat_policy `{other}`: `none` or `full` (per block)"
            )),
        }
    }
}

type PushFn = unsafe extern "C" fn(sink: *mut c_void, tensor: *mut C_tensor);
type CallFn = unsafe extern "C" fn(
    function: *mut c_void,
    inputs: *mut *mut C_tensor,
    n: usize,
    sink: *mut c_void,
    push: PushFn,
) -> c_int;
type DropFn = unsafe extern "C" fn(function: *mut c_void);

unsafe extern "C" {
    fn hm_last_error() -> *const c_char;
    fn hm_set_error(message: *const c_char);
    fn hm_rematerialise(
        inputs: *mut *mut C_tensor,
        n: usize,
        function: *mut c_void,
        call: CallFn,
        drop: DropFn,
        sink: *mut c_void,
        push: PushFn,
    ) -> c_int;
}

/// A function the autograd engine may call from its own thread (for CUDA tensors, the
/// device's backward thread), once the forward pass that made it has returned.
///
/// The functions rematerialised here read a block's weights (tch tensors, which are `Send`
/// but not `Sync`) through an `Arc`. That is sound: the block is never mutated while a
/// graph that holds the function is alive (training mutates weights only in the optimizer
/// step, after the backward pass), libtorch's reference counts are atomic, and the engine
/// runs one node at a time per graph.
struct Remat<F>(F);

// SAFETY: see the type's documentation.
unsafe impl<F> Send for Remat<F> {}

/// A tch tensor that shares `pointer`'s tensor (the shim keeps its own).
///
/// # Safety
/// `pointer` must point to a live `at::Tensor`.
unsafe fn shared(pointer: *mut C_tensor) -> Tensor {
    // SAFETY: at_shallow_clone returns a new handle to the same tensor, owned by the
    // returned value.
    unsafe { Tensor::from_ptr(torch_sys::at_shallow_clone(pointer)) }
}

unsafe extern "C" fn push_output(sink: *mut c_void, tensor: *mut C_tensor) {
    // SAFETY: `sink` is the `Vec<Tensor>` `rematerialise` passed, alive for its call;
    // `tensor` is live for this call.
    unsafe { (*sink.cast::<Vec<Tensor>>()).push(shared(tensor)) }
}

unsafe extern "C" fn call<F: Fn(&[Tensor]) -> Vec<Tensor>>(
    function: *mut c_void,
    inputs: *mut *mut C_tensor,
    n: usize,
    sink: *mut c_void,
    push: PushFn,
) -> c_int {
    // SAFETY: `function` is the `Remat<F>` boxed by `rematerialise`, owned by the shim
    // until `drop_function`; `inputs` holds `n` live tensors.
    let (function, inputs) = unsafe {
        (
            &*function.cast::<Remat<F>>(),
            std::slice::from_raw_parts(inputs, n)
                .iter()
                .map(|&p| shared(p))
                .collect::<Vec<_>>(),
        )
    };
    // A panic must not unwind into C++: it becomes the shim's error.
    match catch_unwind(AssertUnwindSafe(|| (function.0)(&inputs))) {
        Ok(mut outputs) => {
            for output in &mut outputs {
                // SAFETY: the shim copies the tensor during the call.
                unsafe { push(sink, output.as_mut_ptr()) };
            }
            0
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into());
            let message = std::ffi::CString::new(message.replace('\0', "")).unwrap_or_default();
            // SAFETY: the shim copies the message.
            unsafe { hm_set_error(message.as_ptr()) };
            -1
        }
    }
}

unsafe extern "C" fn drop_function<F>(function: *mut c_void) {
    // SAFETY: `function` came from Box::into_raw in `rematerialise` and is dropped once,
    // by the shim's owner of it.
    drop(unsafe { Box::from_raw(function.cast::<Remat<F>>()) });
}

/// `function(inputs)`, with its activations rematerialised: nothing inside it is kept for
/// the backward pass, which recomputes it from `inputs` (kept) with the random generators
/// as they were. Every tensor the function reads that needs a gradient and is not a
/// parameter (a leaf) must be among `inputs`, so that its gradient flows back; parameters
/// are read through what the function owns. Without grad mode it simply runs `function`.
///
/// # Panics
/// When `function` or libtorch fails, as tch's own operations do.
pub(crate) fn rematerialise<F>(inputs: &[Tensor], function: F) -> Vec<Tensor>
where
    F: Fn(&[Tensor]) -> Vec<Tensor> + 'static,
{
    let mut handles: Vec<Tensor> = inputs.iter().map(Tensor::shallow_clone).collect();
    let mut pointers: Vec<*mut C_tensor> = handles.iter_mut().map(|t| t.as_mut_ptr()).collect();
    let boxed = Box::into_raw(Box::new(Remat(function))).cast::<c_void>();
    let mut outputs: Vec<Tensor> = Vec::new();
    // SAFETY: the pointers are live for the call; the shim takes ownership of `boxed`
    // (dropping it through `drop_function::<F>`, also on failure) and pushes each output
    // into `outputs` during the call.
    let code = unsafe {
        hm_rematerialise(
            pointers.as_mut_ptr(),
            pointers.len(),
            boxed,
            call::<F>,
            drop_function::<F>,
            (&mut outputs as *mut Vec<Tensor>).cast::<c_void>(),
            push_output,
        )
    };
    if code != 0 {
        // SAFETY: a NUL-terminated string owned by the shim's thread-local storage.
        let message = unsafe { CStr::from_ptr(hm_last_error()) }.to_string_lossy();
        panic!("rematerialised block: {message}");
    }
    outputs
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn weight() -> Tensor {
        Tensor::from_slice(&[0.5f32, -1.0, 2.0]).set_requires_grad(true)
    }

    /// `tanh(x · w)` with dropout: gradients through the rematerialised function equal the
    /// plain ones, the dropout masks included.
    #[test]
    fn gradients_equal_the_plain_forward_with_dropout() {
        let run = |remat: bool| {
            tch::manual_seed(7);
            let w = weight();
            let x = (Tensor::arange(3, (Kind::Float, Device::Cpu)) + 1.0).set_requires_grad(true);
            let h = &x * 3.0;
            let f = {
                let w = w.shallow_clone();
                move |inputs: &[Tensor]| vec![(&inputs[0] * &w).tanh().dropout(0.5, true)]
            };
            let y = if remat {
                rematerialise(&[h], f).remove(0)
            } else {
                f(&[h]).remove(0)
            };
            // A draw after the block: the generator continues alike in both runs.
            let after = Tensor::rand([2], (Kind::Float, Device::Cpu));
            (y.sum(Kind::Float) + after.sum(Kind::Float)).backward();
            let values = |t: &Tensor| Vec::<f32>::try_from(t).unwrap();
            (values(&w.grad()), values(&x.grad()), values(&y.detach()))
        };
        assert_eq!(run(true), run(false));
    }

    #[test]
    fn without_grad_mode_it_just_runs() {
        let w = weight();
        let out = tch::no_grad(|| {
            rematerialise(&[Tensor::ones([3], (Kind::Float, Device::Cpu))], move |x| {
                vec![&x[0] * &w]
            })
        });
        assert!(!out[0].requires_grad());
        assert_eq!(Vec::<f32>::try_from(&out[0]).unwrap(), [0.5, -1.0, 2.0]);
    }

    #[test]
    fn a_failure_in_the_recomputation_is_the_backward_pass_error() {
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let w = weight();
        let y = {
            let calls = calls.clone();
            rematerialise(&[Tensor::ones([3], (Kind::Float, Device::Cpu))], move |x| {
                if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0 {
                    panic!("recomputation refused");
                }
                vec![&x[0] * &w]
            })
        };
        let err = y[0].sum(Kind::Float).f_backward().unwrap_err().to_string();
        assert!(err.contains("recomputation refused"), "{err}");
    }
}
