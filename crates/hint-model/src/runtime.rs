//! What libtorch this program runs on, and which device to use.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use tch::{Cuda, Device, Tensor};

/// The version of the libtorch that the crate was built against (e.g. `2.13.0+cu130`),
/// read from the library folder at build time.
pub fn libtorch_version() -> &'static str {
    env!("HINT_LIBTORCH_VERSION")
}

/// The facts `hint version` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeInfo {
    /// See [`libtorch_version`].
    pub libtorch_version: String,
    /// Whether libtorch can use CUDA on this machine.
    pub cuda_available: bool,
    /// How many CUDA devices libtorch sees.
    pub cuda_device_count: usize,
    /// Threads libtorch uses for intra-op parallelism on the CPU.
    pub cpu_threads: usize,
}

impl RuntimeInfo {
    /// Queries libtorch.
    pub fn detect() -> Self {
        Self {
            libtorch_version: libtorch_version().to_string(),
            cuda_available: Cuda::is_available(),
            cuda_device_count: usize::try_from(Cuda::device_count()).unwrap_or(0),
            cpu_threads: usize::try_from(tch::get_num_threads()).unwrap_or(1),
        }
    }
}

/// Environment variable that, set to `0`, keeps the C allocator's defaults
/// (see [`retain_freed_memory`]).
pub const RETAIN_FREED_MEMORY_ENV: &str = "HINT_RETAIN_FREED_MEMORY";

/// Makes the C allocator keep the memory libtorch frees, for reuse, instead of handing it
/// back to the kernel. Call it once, early, in programs that train or run models on the CPU.
///
/// libtorch's CPU allocator caches nothing, and glibc serves every block above its mmap
/// threshold (at most 32 MiB) with a fresh mapping and trims the top of the heap as soon as
/// it is free. A training step then gets most of its activations back as newly zeroed
/// pages: about 150,000 page faults per step at the T5-small shape, a tenth of a bf16 step.
/// With this, the process keeps its peak memory reserved instead. It is what PyTorch's
/// own tuning guide gets from jemalloc or tcmalloc; for Python, the same setting is
/// `MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647`.
///
/// Returns whether the setting was applied: `false` off glibc, or when
/// [`RETAIN_FREED_MEMORY_ENV`] is `0` (or `false`, `off`, `no`).
pub fn retain_freed_memory() -> bool {
    if turned_off_by_env(RETAIN_FREED_MEMORY_ENV) {
        return false;
    }
    glibc_retain_freed_memory()
}

/// A process-wide switch for a kernel path of the shim: on unless its environment variable
/// turns it off or a setter does, and off for good once a shim call failed (an operator
/// missing from this libtorch), after one warning.
pub(crate) struct KernelSwitch {
    env: &'static str,
    what: &'static str,
    wanted: OnceLock<AtomicBool>,
    failed: AtomicBool,
}

impl KernelSwitch {
    /// A switch read from `env`; `what` names the path in the warning.
    pub(crate) const fn new(env: &'static str, what: &'static str) -> Self {
        Self {
            env,
            what,
            wanted: OnceLock::new(),
            failed: AtomicBool::new(false),
        }
    }

    fn cell(&self) -> &AtomicBool {
        self.wanted
            .get_or_init(|| AtomicBool::new(!turned_off_by_env(self.env)))
    }

    /// Turns the path on or off for the whole process.
    pub(crate) fn set(&self, enabled: bool) {
        self.cell().store(enabled, Ordering::Relaxed);
    }

    /// Whether the path is wanted (the environment's answer until [`KernelSwitch::set`]).
    pub(crate) fn wanted(&self) -> bool {
        self.cell().load(Ordering::Relaxed)
    }

    /// Whether the path is wanted and has not failed.
    pub(crate) fn usable(&self) -> bool {
        self.wanted() && !self.failed.load(Ordering::Relaxed)
    }

    /// The shim's result, or `None` after turning the path off for the process with a
    /// warning.
    pub(crate) fn result(&self, result: Result<Tensor, String>) -> Option<Tensor> {
        match result {
            Ok(tensor) => Some(tensor),
            Err(message) => {
                if !self.failed.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "{} failed, libtorch's operators take over: {message}",
                        self.what
                    );
                }
                None
            }
        }
    }
}

/// Whether the environment variable `name` turns a default-on behaviour off: `0`,
/// `false`, `off` or `no` (any case); unset or anything else leaves it on.
pub(crate) fn turned_off_by_env(name: &str) -> bool {
    std::env::var(name).is_ok_and(|value| means_off(&value))
}

fn means_off(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "0" | "false" | "off" | "no"
    )
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn glibc_retain_freed_memory() -> bool {
    // SAFETY: `mallopt` only changes allocator parameters; it takes no pointers and is
    // thread-safe. Blocks already mapped are still released correctly when freed.
    // M_MMAP_MAX = 0: large blocks come from the heap too. M_TRIM_THRESHOLD = 2 GiB rather
    // than -1 ("never"): glibc adds to the threshold when it decides whether to drop a
    // worker thread's heap, and -1 wraps around there, so every heap of libtorch's worker
    // threads was unmapped and mapped again (small-batch inference 30% slower).
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn glibc_retain_freed_memory() -> bool {
    false
}

/// Parses a device name as users write it: `cpu`, `cuda`, `cuda:N`, or `auto`
/// (the first CUDA device when there is one, else the CPU).
///
/// ```
/// assert_eq!(hint_model::select_device("cpu"), Some(tch::Device::Cpu));
/// assert_eq!(hint_model::select_device("cuda:1"), Some(tch::Device::Cuda(1)));
/// assert_eq!(hint_model::select_device("tpu"), None);
/// ```
pub fn select_device(name: &str) -> Option<Device> {
    match name.trim() {
        "cpu" => Some(Device::Cpu),
        "auto" => Some(Device::cuda_if_available()),
        "cuda" => Some(Device::Cuda(0)),
        other => other
            .strip_prefix("cuda:")
            .and_then(|index| index.parse().ok())
            .map(Device::Cuda),
    }
}

/// Why a device name cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// Not a name [`select_device`] knows.
    #[error("unknown device `{0}` (cpu, cuda, cuda:N or auto)")]
    Unknown(String),
    /// A CUDA device this process cannot see.
    #[error("device `{name}` is not available: libtorch sees {visible} CUDA device(s){}", no_gpu_hint(*.visible))]
    Unavailable {
        /// The name as given.
        name: String,
        /// CUDA devices libtorch sees.
        visible: i64,
    },
}

fn no_gpu_hint(visible: i64) -> &'static str {
    if visible == 0 {
        " (no GPU, or a libtorch without CUDA): use \"cpu\", or \"auto\" for a GPU when there is one"
    } else {
        ""
    }
}

/// [`select_device`], and the device checked against what libtorch sees: a CUDA device
/// that is not there is an error here, not a libtorch dispatcher dump at the first tensor.
///
/// ```
/// assert_eq!(hint_model::open_device("cpu"), Ok(tch::Device::Cpu));
/// let missing = hint_model::open_device("cuda:99").unwrap_err();
/// assert!(missing.to_string().contains("not available"), "{missing}");
/// ```
pub fn open_device(name: &str) -> Result<Device, DeviceError> {
    let device = select_device(name).ok_or_else(|| DeviceError::Unknown(name.to_string()))?;
    if let Device::Cuda(index) = device {
        let visible = tch::Cuda::device_count();
        if index as i64 >= visible {
            return Err(DeviceError::Unavailable {
                name: name.trim().to_string(),
                visible,
            });
        }
    }
    Ok(device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn an_off_switch_reads_the_usual_spellings_of_off() {
        for off in ["0", "false", "OFF", " no "] {
            assert!(means_off(off), "{off:?}");
        }
        for on in ["1", "true", "", "yes", "nope"] {
            assert!(!means_off(on), "{on:?}");
        }
    }

    #[test]
    fn matmul_through_libtorch_equals_hand_computed_product() {
        let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).view([2, 3]);
        let b = Tensor::from_slice(&[7.0f32, 8.0, 9.0, 10.0, 11.0, 12.0]).view([3, 2]);
        let product = a.matmul(&b);
        assert_eq!(product.size(), vec![2, 2]);
        assert_eq!(product.kind(), Kind::Float);
        let values: Vec<f32> = product.flatten(0, -1).try_into().unwrap();
        // [1 2 3; 4 5 6] x [7 8; 9 10; 11 12] = [58 64; 139 154]
        assert_eq!(values, vec![58.0, 64.0, 139.0, 154.0]);
    }

    #[test]
    fn libtorch_version_was_recorded_at_build_time() {
        let version = libtorch_version();
        assert_ne!(version, "unknown", "build.rs could not read the version");
        assert!(
            version.starts_with("2.13.0"),
            "tch 0.26 needs 2.13.0, got {version}"
        );
    }

    #[test]
    fn detect_reports_at_least_one_cpu_thread() {
        let info = RuntimeInfo::detect();
        assert!(info.cpu_threads >= 1);
        assert_eq!(info.cuda_available, info.cuda_device_count > 0);
    }
}
