//! A process group: its rank, its size, and the collectives on tch tensors.
// The only unsafe code of hint-dist: calls into the c10d shim, each with its reason.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::ptr::NonNull;
use std::time::Duration;

use tch::{Device, Tensor};

use crate::error::DistError;
use crate::ffi;
use crate::rendezvous::Rendezvous;

/// How [`ProcessGroup::all_reduce`] combines the ranks' tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// Elementwise sum.
    Sum,
    /// Elementwise maximum.
    Max,
    /// Elementwise minimum.
    Min,
    /// Elementwise product.
    Product,
}

impl ReduceOp {
    fn code(self) -> i32 {
        match self {
            Self::Sum => 0,
            Self::Max => 1,
            Self::Min => 2,
            Self::Product => 3,
        }
    }
}

/// The shim's group; freed once, when the last owner drops it.
struct Handle(NonNull<ffi::HdGroup>);

// SAFETY: c10d's ProcessGroupGloo and TCPStore are used from one thread at a time here
// (`ProcessGroup` takes `&self` but is not `Sync`); moving them between threads is safe.
unsafe impl Send for Handle {}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the pointer came from hd_gloo_new and is freed only here.
        unsafe { ffi::hd_free(self.0.as_ptr()) }
    }
}

/// The processes of one data-parallel run. A world of one ([`ProcessGroup::single`])
/// needs no environment and no network, and its collectives return at once.
///
/// ```
/// let group = hint_dist::ProcessGroup::single();
/// let mut grads = [tch::Tensor::from_slice(&[1.0f32, 2.0])];
/// group.all_reduce(&mut grads, hint_dist::ReduceOp::Sum).unwrap();
/// assert_eq!(Vec::<f32>::try_from(&grads[0]).unwrap(), [1.0, 2.0]);
/// assert_eq!((group.rank(), group.world_size()), (0, 1));
/// ```
pub struct ProcessGroup {
    rank: usize,
    world_size: usize,
    local_rank: usize,
    /// Whether NCCL serves this group's CUDA tensors.
    nccl: bool,
    handle: Option<Handle>,
}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("rank", &self.rank)
            .field("world_size", &self.world_size)
            .field("local_rank", &self.local_rank)
            .field("nccl", &self.nccl)
            .finish_non_exhaustive()
    }
}

pub(crate) fn last_error() -> String {
    // SAFETY: hd_last_error returns a NUL-terminated string owned by the shim's
    // thread-local storage, valid until the next failing call on this thread.
    let text = unsafe { CStr::from_ptr(ffi::hd_last_error()) }
        .to_string_lossy()
        .into_owned();
    // c10 appends the C++ stack to its messages: the user needs the first part.
    match text.split_once("\nException raised from") {
        Some((message, _)) => message.trim().to_string(),
        None => text.trim().to_string(),
    }
}

/// Several tensors as one flat buffer (of their common kind), and back: Gloo's list
/// collectives mean one tensor per device, so tensors of different shapes travel as one
/// bucket, which is also one round trip instead of many.
fn bucket(collective: &'static str, tensors: &[Tensor]) -> Result<Tensor, DistError> {
    let kind = tensors[0].kind();
    if tensors.iter().any(|t| t.kind() != kind) {
        return Err(DistError::BadTensor {
            collective,
            message: "the tensors of one call must have one kind".into(),
        });
    }
    let flat: Vec<Tensor> = tensors.iter().map(|t| t.reshape([-1])).collect();
    Ok(Tensor::cat(&flat, 0))
}

fn unbucket(bucket: &Tensor, tensors: &mut [Tensor]) {
    // The tensors may be parameters (leaves that require grad): a copy is no operation
    // autograd should see.
    tch::no_grad(|| {
        let mut offset = 0;
        for tensor in tensors.iter_mut() {
            let n = tensor.numel() as i64;
            let part = bucket.narrow(0, offset, n).view(tensor.size().as_slice());
            tensor.copy_(&part);
            offset += n;
        }
    });
}

fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', "")).unwrap_or_default()
}

impl ProcessGroup {
    /// A world of one.
    pub fn single() -> Self {
        Self {
            rank: 0,
            world_size: 1,
            local_rank: 0,
            nccl: false,
            handle: None,
        }
    }

    /// Whether this build of hint-dist has NCCL (the `nccl` cargo feature), for CUDA
    /// tensors.
    pub fn nccl_built() -> bool {
        // SAFETY: a constant answer of the shim.
        unsafe { ffi::hd_has_nccl() }
    }

    /// The group torchrun's variables describe ([`Rendezvous::from_env`]), or a world of
    /// one when they are absent. `device` is where the run's tensors live: a CUDA device
    /// also forms NCCL for them (CPU tensors always go through Gloo).
    pub fn from_env(timeout: Duration, device: Device) -> Result<Self, DistError> {
        match Rendezvous::from_env(timeout)? {
            Some(rendezvous) => Self::join(&rendezvous, device),
            None => Ok(Self::single()),
        }
    }

    /// Joins the rendezvous: rank 0 serves the store unless an agent does; every rank then
    /// forms the group: Gloo for CPU tensors and, when `device` is a CUDA device, NCCL for
    /// CUDA tensors (which needs the `nccl` feature). Fails (never hangs) after the
    /// rendezvous timeout.
    pub fn join(rendezvous: &Rendezvous, device: Device) -> Result<Self, DistError> {
        let nccl = matches!(device, Device::Cuda(_));
        if nccl && !Self::nccl_built() {
            return Err(DistError::Rendezvous {
                address: format!("{}:{}", rendezvous.master_addr, rendezvous.master_port),
                rank: rendezvous.rank,
                world_size: rendezvous.world_size,
                message: format!(
                    "the run's tensors are on {device:?}, which needs NCCL, but this hint was \
                     built without it: build with `--features nccl` (cargo xtask setup --nccl \
                     installs its headers)"
                ),
            });
        }
        if rendezvous.world_size == 1 {
            return Ok(Self {
                local_rank: rendezvous.local_rank,
                ..Self::single()
            });
        }
        let host = c_string(&rendezvous.master_addr);
        let prefix = c_string(&rendezvous.store_prefix);
        // Gloo binds to the address that reaches the master from here: loopback for a
        // local master, else this machine's name.
        let interface = if rendezvous.master_is_local() {
            c_string("127.0.0.1")
        } else {
            c_string(&rendezvous.hostname())
        };
        let mut out: *mut ffi::HdGroup = std::ptr::null_mut();
        // SAFETY: all strings are NUL-terminated and outlive the call; `out` is written
        // only on success.
        let code = unsafe {
            ffi::hd_group_new(
                host.as_ptr(),
                rendezvous.master_port,
                rendezvous.serves_store(),
                rendezvous.rank as i32,
                rendezvous.world_size as i32,
                prefix.as_ptr(),
                interface.as_ptr(),
                rendezvous.timeout.as_millis() as i64,
                nccl,
                &mut out,
            )
        };
        let handle =
            NonNull::new(out)
                .filter(|_| code == 0)
                .ok_or_else(|| DistError::Rendezvous {
                    address: format!("{}:{}", rendezvous.master_addr, rendezvous.master_port),
                    rank: rendezvous.rank,
                    world_size: rendezvous.world_size,
                    message: last_error(),
                })?;
        Ok(Self {
            rank: rendezvous.rank,
            world_size: rendezvous.world_size,
            local_rank: rendezvous.local_rank,
            nccl,
            handle: Some(Handle(handle)),
        })
    }

    /// This process's rank, `0..world_size`.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of processes.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// The rank on this machine (torchrun's `LOCAL_RANK`): which GPU to use.
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    /// Whether this is rank 0, the one that writes.
    pub fn is_main(&self) -> bool {
        self.rank == 0
    }

    /// The shim's group, `None` in a world of one.
    pub(crate) fn raw(&self) -> Option<*mut ffi::HdGroup> {
        self.handle.as_ref().map(|h| h.0.as_ptr())
    }

    pub(crate) fn collective_error(&self, collective: &'static str) -> DistError {
        DistError::Collective {
            collective,
            rank: self.rank,
            world_size: self.world_size,
            message: last_error(),
        }
    }

    fn check(&self, collective: &'static str, tensors: &[Tensor]) -> Result<(), DistError> {
        let device = tensors.first().map(Tensor::device);
        for tensor in tensors {
            if !tensor.defined() || !tensor.is_contiguous() || Some(tensor.device()) != device {
                return Err(DistError::BadTensor {
                    collective,
                    message: "collectives take defined, contiguous tensors on one device".into(),
                });
            }
        }
        if matches!(device, Some(Device::Cuda(_))) && !self.nccl {
            return Err(DistError::BadTensor {
                collective,
                message: "CUDA tensors need NCCL: this group was formed for CPU tensors (Gloo)"
                    .into(),
            });
        }
        Ok(())
    }

    /// Runs an in-place collective on `tensors` as one buffer: the tensor itself when
    /// there is one (no copy), else a bucket of all of them, copied back afterwards when
    /// this rank `keeps` the result. `call` gets the shim's group and the buffer and
    /// returns the shim's code.
    fn in_place(
        &self,
        collective: &'static str,
        tensors: &mut [Tensor],
        keeps: bool,
        call: impl FnOnce(*mut ffi::HdGroup, *mut torch_sys::C_tensor) -> i32,
    ) -> Result<(), DistError> {
        let Some(handle) = &self.handle else {
            return Ok(());
        };
        self.check(collective, tensors)?;
        let mut flat = match &*tensors {
            [] => return Ok(()),
            [one] => one.shallow_clone(),
            many => bucket(collective, many)?,
        };
        if call(handle.0.as_ptr(), flat.as_mut_ptr()) != 0 {
            return Err(self.collective_error(collective));
        }
        if tensors.len() > 1 && keeps {
            unbucket(&flat, tensors);
        }
        Ok(())
    }

    /// Combines `tensors` (in place) over all ranks; every rank passes tensors of the same
    /// shapes in the same order.
    pub fn all_reduce(&self, tensors: &mut [Tensor], op: ReduceOp) -> Result<(), DistError> {
        self.in_place("all_reduce", tensors, true, |group, tensor| {
            let mut pointer = tensor;
            // SAFETY: the group is live and the tensor is live for the duration of the
            // call; the shim copies the handle, not the tensor, and works on its storage in
            // place.
            unsafe { ffi::hd_all_reduce(group, &mut pointer, 1, op.code()) }
        })
    }

    /// Combines `tensors` over all ranks into rank `root`'s (in place); the other ranks'
    /// tensors are left in an unspecified state. Half the traffic of
    /// [`ProcessGroup::all_reduce`] for a result only one rank needs (a gradient's owner).
    pub fn reduce(
        &self,
        tensors: &mut [Tensor],
        root: usize,
        op: ReduceOp,
    ) -> Result<(), DistError> {
        self.in_place("reduce", tensors, self.rank == root, |group, tensor| {
            // SAFETY: as in all_reduce.
            unsafe { ffi::hd_reduce(group, tensor, root as i32, op.code()) }
        })
    }

    /// Copies rank `root`'s `tensors` into every rank's (in place).
    pub fn broadcast(&self, tensors: &mut [Tensor], root: usize) -> Result<(), DistError> {
        self.in_place("broadcast", tensors, true, |group, tensor| {
            let mut pointer = tensor;
            // SAFETY: as in all_reduce.
            unsafe { ffi::hd_broadcast(group, &mut pointer, 1, root as i32) }
        })
    }

    /// Every rank's `input` stacked along a new first dimension, in rank order.
    pub fn all_gather(&self, input: &Tensor) -> Result<Tensor, DistError> {
        let Some(handle) = &self.handle else {
            return Ok(input.unsqueeze(0));
        };
        let shape: Vec<i64> = std::iter::once(self.world_size as i64)
            .chain(input.size())
            .collect();
        // Gloo concatenates the ranks' inputs along the first dimension: flat in, flat out.
        let mut input = input.contiguous().reshape([-1]);
        self.check("all_gather", std::slice::from_ref(&input))?;
        let mut output = Tensor::zeros(
            [self.world_size as i64 * input.numel() as i64],
            (input.kind(), input.device()),
        );
        // SAFETY: both tensors are live for the call; the output has room for every rank.
        let code = unsafe {
            ffi::hd_all_gather(handle.0.as_ptr(), output.as_mut_ptr(), input.as_mut_ptr())
        };
        if code == 0 {
            Ok(output.view(shape.as_slice()))
        } else {
            Err(self.collective_error("all_gather"))
        }
    }

    /// Rank r's share of the sum over the ranks (`op`) of `input`: `input`'s first dimension
    /// is divided into `world_size` equal slices and this rank gets slice `rank` of the
    /// combination. Half the traffic of [`ProcessGroup::all_reduce`] when each rank needs
    /// only its part.
    pub fn reduce_scatter(&self, input: &Tensor, op: ReduceOp) -> Result<Tensor, DistError> {
        let Some(handle) = &self.handle else {
            return Ok(input.shallow_clone());
        };
        let size = input.size();
        let rows = size.first().copied().unwrap_or(0);
        if size.is_empty() || rows % self.world_size as i64 != 0 {
            return Err(DistError::BadTensor {
                collective: "reduce_scatter",
                message: format!(
                    "the input's first dimension ({rows}) must divide into {} equal slices",
                    self.world_size
                ),
            });
        }
        let mut input = input.contiguous();
        self.check("reduce_scatter", std::slice::from_ref(&input))?;
        let mut shape = size.clone();
        shape[0] = rows / self.world_size as i64;
        let mut output = Tensor::zeros(shape.as_slice(), (input.kind(), input.device()));
        // SAFETY: both tensors are live for the call; the output holds one slice.
        let code = unsafe {
            ffi::hd_reduce_scatter(
                handle.0.as_ptr(),
                output.as_mut_ptr(),
                input.as_mut_ptr(),
                op.code(),
            )
        };
        if code == 0 {
            Ok(output)
        } else {
            Err(self.collective_error("reduce_scatter"))
        }
    }

    /// Every rank's `bytes`, in rank order (lengths may differ): for results that are not
    /// tensors, e.g. an evaluation's predictions, gathered to be merged.
    pub fn all_gather_bytes(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, DistError> {
        if self.handle.is_none() {
            return Ok(vec![bytes.to_vec()]);
        }
        let lengths = self.all_gather(&Tensor::from_slice(&[bytes.len() as i64]))?;
        let lengths = Vec::<i64>::try_from(lengths.reshape([-1])).unwrap_or_default();
        let longest = lengths.iter().copied().max().unwrap_or(0).max(1) as usize;
        let mut padded = bytes.to_vec();
        padded.resize(longest, 0);
        let gathered = self.all_gather(&Tensor::from_slice(&padded))?;
        let flat = Vec::<u8>::try_from(gathered.reshape([-1])).unwrap_or_default();
        Ok(lengths
            .iter()
            .enumerate()
            .map(|(rank, &len)| flat[rank * longest..rank * longest + len as usize].to_vec())
            .collect())
    }

    /// Returns when every rank has called it.
    pub fn barrier(&self) -> Result<(), DistError> {
        let Some(handle) = &self.handle else {
            return Ok(());
        };
        // SAFETY: the handle is live.
        if unsafe { ffi::hd_barrier(handle.0.as_ptr()) } == 0 {
            Ok(())
        } else {
            Err(self.collective_error("barrier"))
        }
    }

    /// Checks that every rank has the same `value` for `what` (a configuration digest, a
    /// version): rank 0 publishes its value, every other rank compares, and a difference
    /// is [`DistError::Mismatch`] on that rank. Ends with a barrier, so rank 0 learns of a
    /// mismatch as a failed barrier rather than a hang.
    pub fn agree(&self, what: &str, value: &str) -> Result<(), DistError> {
        let Some(handle) = &self.handle else {
            return Ok(());
        };
        let key = c_string(&format!("agree/{what}"));
        if self.rank == 0 {
            // SAFETY: key and value outlive the call.
            let code = unsafe {
                ffi::hd_store_set(handle.0.as_ptr(), key.as_ptr(), value.as_ptr(), value.len())
            };
            if code != 0 {
                return Err(self.collective_error("store set"));
            }
        } else {
            let mut buffer = vec![0u8; 4096];
            let mut len = 0usize;
            // SAFETY: the buffer has `capacity` bytes; the shim writes at most that many.
            let code = unsafe {
                ffi::hd_store_get(
                    handle.0.as_ptr(),
                    key.as_ptr(),
                    buffer.as_mut_ptr(),
                    buffer.len(),
                    &mut len,
                )
            };
            if code != 0 {
                return Err(self.collective_error("store get"));
            }
            buffer.truncate(len.min(4096));
            let rank0 = String::from_utf8_lossy(&buffer).into_owned();
            if rank0 != value {
                return Err(DistError::Mismatch {
                    what: what.to_string(),
                    rank: self.rank,
                    mine: value.to_string(),
                    rank0,
                });
            }
        }
        self.barrier()
    }
}
