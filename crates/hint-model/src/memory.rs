//! How much memory a device holds, and its peak since the last reset: the bytes tensors
//! hold (CUDA: libtorch's caching allocator; CPU: counted from libtorch's allocation
//! reports once [`count_cpu_tensors`] is on), what CUDA's allocator reserved from the
//! driver, and on the CPU the process's resident set (everything of the process counts
//! against the machine's memory, the allocator's caches included).
// The calls into the shim (`shim/autograd_shim.cpp`), each with its reason.
#![allow(unsafe_code)]

use serde::{Deserialize, Serialize};
use tch::Device;

unsafe extern "C" {
    fn hm_device_memory(
        device_type: i32,
        index: i32,
        allocated: *mut i64,
        peak_allocated: *mut i64,
        reserved: *mut i64,
        peak_reserved: *mut i64,
    ) -> i32;
    fn hm_reset_peak_device_memory(device_type: i32, index: i32) -> i32;
    fn hm_count_cpu_tensors() -> i32;
    fn hm_counts_cpu_tensors() -> bool;
    fn hm_cpu_tensor_bytes(current: *mut i64, peak: *mut i64);
    fn hm_reset_cpu_tensor_peak();
    fn hm_release_grad(tensor: *mut torch_sys::C_tensor) -> i32;
}

/// c10's `DeviceType::CUDA`.
const CUDA: i32 = 1;

/// Memory in use on a device, now and at its peak since [`reset_peak_memory`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryUsage {
    /// Bytes tensors hold now (on the CPU only while [`count_cpu_tensors`] counts).
    pub tensors: Option<u64>,
    /// The most bytes tensors held since the last reset.
    pub peak_tensors: Option<u64>,
    /// CUDA: bytes the caching allocator holds from the driver now (in use or cached).
    pub reserved: Option<u64>,
    /// CUDA: the most bytes reserved since the last reset.
    pub peak_reserved: Option<u64>,
    /// CPU: the process's resident set now.
    pub resident: Option<u64>,
    /// CPU: the most resident since the last reset.
    pub peak_resident: Option<u64>,
}

impl MemoryUsage {
    /// The peak a run reports per step: on CUDA what tensors held, on the CPU the
    /// process's resident set (0 where the platform cannot say).
    pub fn headline_peak(&self) -> u64 {
        self.peak_resident.or(self.peak_tensors).unwrap_or(0)
    }
}

/// A `/proc/self/status` field in bytes (`VmRSS:  123 kB`).
fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// From now on, counts the CPU tensors this thread allocates and releases, so that
/// [`memory_usage`] reports their bytes (libtorch's CPU allocator keeps no statistics of
/// its own). Call it on the training thread before anything is allocated: a tensor made
/// before it is not counted, nor is its release. Returns whether it could.
pub fn count_cpu_tensors() -> bool {
    // SAFETY: a plain call; failures come back as the code.
    unsafe { hm_count_cpu_tensors() == 0 }
}

/// The memory `device` holds now and at its peak (the CPU's tensors only when this thread
/// counts them).
///
/// ```
/// let usage = hint_model::memory_usage(tch::Device::Cpu);
/// assert!(usage.peak_resident >= usage.resident && usage.resident > Some(0));
/// ```
pub fn memory_usage(device: Device) -> MemoryUsage {
    match device {
        Device::Cuda(index) => {
            let (mut allocated, mut peak, mut reserved, mut peak_reserved) = (0, 0, 0, 0);
            // SAFETY: four valid out-pointers; the shim reports failures by its code.
            let code = unsafe {
                hm_device_memory(
                    CUDA,
                    index as i32,
                    &mut allocated,
                    &mut peak,
                    &mut reserved,
                    &mut peak_reserved,
                )
            };
            if code != 0 {
                return MemoryUsage::default();
            }
            let bytes = |v: i64| Some(v.max(0) as u64);
            MemoryUsage {
                tensors: bytes(allocated),
                peak_tensors: bytes(peak),
                reserved: bytes(reserved),
                peak_reserved: bytes(peak_reserved),
                ..MemoryUsage::default()
            }
        }
        _ => {
            let (mut current, mut peak) = (0, 0);
            // SAFETY: two valid out-pointers.
            unsafe { hm_cpu_tensor_bytes(&mut current, &mut peak) };
            // SAFETY: a plain call.
            let counted = unsafe { hm_counts_cpu_tensors() };
            let resident = status_bytes("VmRSS:");
            MemoryUsage {
                tensors: counted.then_some(current.max(0) as u64),
                peak_tensors: counted.then_some(peak.max(0) as u64),
                resident,
                peak_resident: status_bytes("VmHWM:").max(resident),
                ..MemoryUsage::default()
            }
        }
    }
}

/// Starts a new peak for `device`: CUDA's allocator statistics; on the CPU the counted
/// tensors' and the kernel's resident high-water mark (`/proc/self/clear_refs`). Returns
/// whether it could; where it cannot, the peaks are those of the whole process so far.
pub fn reset_peak_memory(device: Device) -> bool {
    match device {
        // SAFETY: a plain call; failures come back as the code.
        Device::Cuda(index) => unsafe { hm_reset_peak_device_memory(CUDA, index as i32) == 0 },
        _ => {
            // SAFETY: a plain call.
            unsafe { hm_reset_cpu_tensor_peak() };
            std::fs::write("/proc/self/clear_refs", "5").is_ok()
        }
    }
}

/// Drops the gradients of `tensors` (PyTorch's `zero_grad(set_to_none=True)`), where
/// zeroing them in place would keep them: the next backward pass takes each incoming
/// gradient as the buffer itself instead of adding it into a zeroed one (no zeroing pass,
/// no addition pass, no temporary), and between steps the gradients hold no memory.
/// Gradients that must stay where they are (views of a data-parallel bucket) are to be
/// zeroed in place instead.
///
/// ```
/// use tch::{Kind, Tensor};
/// let w = Tensor::ones([3], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
/// (&w * 2.0).sum(Kind::Float).backward();
/// assert!(w.grad().defined());
/// hint_model::release_gradients(&[w.shallow_clone()]).unwrap();
/// assert!(!w.grad().defined());
/// ```
pub fn release_gradients(tensors: &[tch::Tensor]) -> Result<(), crate::ModelError> {
    for tensor in tensors {
        let mut handle = tensor.shallow_clone();
        // SAFETY: the tensor is live for the call; the entry point only resets its
        // gradient's handle.
        if unsafe { hm_release_grad(handle.as_mut_ptr()) } != 0 {
            return Err(crate::ModelError::Torch {
                context: "releasing a gradient".into(),
                source: tch::TchError::Torch(crate::remat::shim_error()),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn a_large_tensor_raises_the_cpu_peaks_and_a_reset_lowers_them_again() {
        // The test's own thread counts its tensors; other tests' threads are not counted.
        assert!(count_cpu_tensors());
        assert!(
            reset_peak_memory(Device::Cpu),
            "/proc/self/clear_refs is not writable"
        );
        let before = memory_usage(Device::Cpu);
        let bytes = 256u64 << 20;
        {
            // Filled with ones, so that its pages count in the resident set.
            let big = Tensor::ones([(bytes / 4) as i64], (Kind::Float, Device::Cpu));
            assert_eq!(big.double_value(&[(bytes / 8) as i64]), 1.0);
        }
        let after = memory_usage(Device::Cpu);
        let grew = |a: Option<u64>, b: Option<u64>| a.unwrap() - b.unwrap();
        assert!(
            grew(after.peak_resident, before.resident) >= bytes * 9 / 10,
            "{after:?} vs {before:?}"
        );
        // Exactly the tensor, counted.
        let counted = grew(after.peak_tensors, before.tensors);
        assert!((bytes..bytes + 4096).contains(&counted), "{counted}");
        assert_eq!(after.tensors, before.tensors, "the tensor was released");
        assert!(reset_peak_memory(Device::Cpu));
        let reset = memory_usage(Device::Cpu);
        assert!(
            reset.peak_resident < after.peak_resident,
            "{reset:?} vs {after:?}"
        );
        assert_eq!(reset.peak_tensors, reset.tensors);
    }
}
