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

use std::cell::RefCell;
use std::ffi::{c_void, CStr};
use std::os::raw::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

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
    /// Each block's inputs and the outputs of its weight products (t5x's `minimal`, JAX's
    /// `checkpoint_dots_with_no_batch_dims`) are kept; the backward pass recomputes the
    /// rest (norms, attention scores and weights, activation functions, dropout) and none
    /// of the weight products, the bulk of a block's arithmetic.
    Minimal,
}

impl std::str::FromStr for RematPolicy {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "none" => Ok(Self::None),
            "full" => Ok(Self::Full),
            "minimal" => Ok(Self::Minimal),
            other => Err(format!(
                "unknown remat_policy `{other}`: `none`, `full` (per block) or `minimal` (per block, keeping the weight products)"
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
    fn hm_grad_enabled() -> c_int;
    fn hm_kept_product(
        input: *mut C_tensor,
        weight: *mut C_tensor,
        kept: *mut C_tensor,
        out: *mut *mut C_tensor,
    ) -> c_int;
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
        panic!("rematerialised block: {}", shim_error());
    }
    outputs
}

/// The message of the shim's last failure on this thread.
pub(crate) fn shim_error() -> String {
    // SAFETY: a NUL-terminated string owned by the shim's thread-local storage.
    unsafe { CStr::from_ptr(hm_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// The tensor a shim entry point hands over through its `out` pointer, or its error
/// message: `call` receives the pointer and returns the entry point's code.
///
/// # Safety
/// `call` must pass the pointer to a shim entry point that, on a zero return, stores a
/// newly allocated tensor there (ownership passes to the returned value).
pub(crate) unsafe fn shim_tensor(
    call: impl FnOnce(*mut *mut C_tensor) -> c_int,
) -> Result<Tensor, String> {
    let mut out: *mut C_tensor = std::ptr::null_mut();
    if call(&mut out) != 0 {
        return Err(shim_error());
    }
    // SAFETY: on success the entry point stored a new tensor (the caller's promise).
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// Whether this thread records a graph.
pub(crate) fn grad_mode() -> bool {
    // SAFETY: reads a thread-local flag.
    unsafe { hm_grad_enabled() != 0 }
}

/// The weight products of one rematerialised block (`RematPolicy::Minimal`): recorded in
/// order by the first run, handed back in the same order to the recomputation.
#[derive(Default)]
struct ProductTape {
    products: Vec<Tensor>,
    next: usize,
}

thread_local! {
    /// The tape of the rematerialised block running on this thread, if any.
    static TAPE: RefCell<Option<Arc<Mutex<ProductTape>>>> = const { RefCell::new(None) };
}

/// Installs a block's tape for the duration of a run and puts back whatever was there (a
/// block inside a block, a panic).
struct TapeGuard(Option<Arc<Mutex<ProductTape>>>);

impl TapeGuard {
    fn install(tape: &Arc<Mutex<ProductTape>>) -> Self {
        Self(TAPE.with(|t| t.borrow_mut().replace(Arc::clone(tape))))
    }
}

impl Drop for TapeGuard {
    fn drop(&mut self) {
        let previous = self.0.take();
        TAPE.with(|t| *t.borrow_mut() = previous);
    }
}

/// `input · weightᵀ` (a bias-free linear map in `input`'s dtype). Inside a block
/// rematerialised with [`RematPolicy::Minimal`], the first run keeps the product and the
/// recomputation takes it back instead of computing it again (its gradient is still the
/// linear map's); everywhere else it is `input.linear(weight)`.
pub(crate) fn weight_product(input: &Tensor, weight: &Tensor) -> Tensor {
    let Some(tape) = TAPE.with(|t| t.borrow().clone()) else {
        return input.linear::<Tensor>(weight, None);
    };
    let mut tape = tape.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !grad_mode() {
        // The first run (without a graph): compute and keep.
        let product = input.linear::<Tensor>(weight, None);
        tape.products.push(product.shallow_clone());
        return product;
    }
    // The recomputation: the same products in the same order.
    let index = tape.next;
    tape.next += 1;
    let kept = tape.products.get(index).unwrap_or_else(|| {
        panic!("the recomputation ran more weight products than the first run ({index})")
    });
    let (mut input, mut weight, mut kept) = (
        input.shallow_clone(),
        weight.shallow_clone(),
        kept.shallow_clone(),
    );
    // SAFETY: the three tensors are live for the call; on success hm_kept_product stores a
    // new tensor.
    let kept = unsafe {
        shim_tensor(|out| {
            hm_kept_product(
                input.as_mut_ptr(),
                weight.as_mut_ptr(),
                kept.as_mut_ptr(),
                out,
            )
        })
    };
    kept.unwrap_or_else(|message| panic!("kept weight product: {message}"))
}

/// [`rematerialise`] with `policy`: `Full` recomputes everything, `Minimal` keeps the
/// weight products of the first run for the recomputation (see [`weight_product`]).
pub(crate) fn rematerialise_with<F>(
    policy: RematPolicy,
    inputs: &[Tensor],
    function: F,
) -> Vec<Tensor>
where
    F: Fn(&[Tensor]) -> Vec<Tensor> + 'static,
{
    if policy != RematPolicy::Minimal || !grad_mode() {
        return rematerialise(inputs, function);
    }
    let tape = Arc::new(Mutex::new(ProductTape::default()));
    rematerialise(inputs, move |inputs| {
        let _installed = TapeGuard::install(&tape);
        let outputs = function(inputs);
        if grad_mode() {
            // The recomputation is the tape's last reader: its products now live in the
            // graph it built, for as long as that graph does.
            let mut tape = tape.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            assert_eq!(
                tape.next,
                tape.products.len(),
                "the recomputation ran fewer weight products than the first run"
            );
            *tape = ProductTape::default();
        }
        outputs
    })
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

    /// `tanh(x · wᵀ) · vᵀ` with dropout, rematerialised with `policy`; `tamper` runs
    /// between the forward and the backward pass. Returns the gradients of `w`, `v` and `x`.
    fn products_step(policy: Option<RematPolicy>, tamper: impl FnOnce(&Tensor)) -> [Vec<f32>; 3] {
        tch::manual_seed(5);
        let w = (Tensor::arange(12, (Kind::Float, Device::Cpu)).view([4, 3]) / 10.0 - 0.5)
            .set_requires_grad(true);
        let v = (Tensor::arange(8, (Kind::Float, Device::Cpu)).view([2, 4]) / 5.0 - 0.7)
            .set_requires_grad(true);
        let x = (Tensor::arange(6, (Kind::Float, Device::Cpu)).view([2, 3]) / 4.0)
            .set_requires_grad(true);
        let f = {
            let (w, v) = (w.shallow_clone(), v.shallow_clone());
            move |inputs: &[Tensor]| {
                let hidden = weight_product(&inputs[0], &w).tanh().dropout(0.3, true);
                vec![weight_product(&hidden, &v)]
            }
        };
        let y = match policy {
            Some(policy) => rematerialise_with(policy, &[&x * 1.0], f).remove(0),
            None => f(&[&x * 1.0]).remove(0),
        };
        tamper(&w);
        (&y * y.detach()).sum(Kind::Float).backward();
        let values = |t: &Tensor| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
        [values(&w.grad()), values(&v.grad()), values(&x.grad())]
    }

    #[test]
    fn minimal_gradients_equal_the_plain_forward_with_dropout() {
        let plain = products_step(None, |_| {});
        assert_eq!(products_step(Some(RematPolicy::Minimal), |_| {}), plain);
        assert_eq!(products_step(Some(RematPolicy::Full), |_| {}), plain);
    }

    /// The recomputation of `minimal` takes the first run's products back rather than
    /// computing them again: a weight changed after the forward pass (which no training
    /// step does) changes what `full` recomputes, not the products `minimal` kept.
    #[test]
    fn minimal_recomputes_no_weight_product() {
        let zero = |w: &Tensor| {
            let _ = tch::no_grad(|| w.shallow_clone().zero_());
        };
        let kept = products_step(Some(RematPolicy::Minimal), zero);
        let recomputed = products_step(Some(RematPolicy::Full), zero);
        let plain = products_step(None, |_| {});
        // `v`'s gradient reads only the hidden products: the kept ones are the plain ones.
        assert_eq!(kept[1], plain[1]);
        assert_ne!(recomputed[1], plain[1]);
    }
}
