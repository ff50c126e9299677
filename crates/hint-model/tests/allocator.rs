//! `retain_freed_memory`: freed tensor memory is reused instead of faulting in fresh pages.
//! Runs without the test harness, on the main thread (see Cargo.toml).

use std::io::Write;

use hint_model::{retain_freed_memory, RETAIN_FREED_MEMORY_ENV};
use tch::{Device, Kind, Tensor};

/// 64 MiB of f32: above glibc's largest mmap threshold (32 MiB), so by default every such
/// tensor is a fresh mapping whose pages fault in when written.
const ELEMENTS: i64 = 16 << 20;
const PAGES: u64 = (ELEMENTS as u64 * 4) / 4096;

/// Minor page faults of this process so far (`/proc/self/stat`, field 10).
fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
    rest.split_whitespace()
        .nth(7)
        .and_then(|field| field.parse().ok())
        .expect("minflt field")
}

/// Fills measured; the first ones grow the heap, the rest must reuse it.
const FILLS: usize = 30;
/// The fills counted as steady state. glibc carves libtorch's 64-byte-aligned blocks out
/// of a slightly larger free chunk, so a freed block is only reused once it has merged
/// with a neighbour; how many fills that takes depends on where small allocations landed
/// (seen: up to 7, varying with the size of the environment), as in a training run's
/// first steps.
const STEADY: usize = 10;

/// Page faults of each of `FILLS` 64 MiB tensors written, used and freed in turn.
fn faults_per_fill() -> Vec<u64> {
    (0..FILLS)
        .map(|_| {
            let before = minor_faults();
            let t = Tensor::ones([ELEMENTS], (Kind::Float, Device::Cpu));
            assert_eq!(f64::try_from(t.sum(Kind::Float)).unwrap(), ELEMENTS as f64);
            drop(t);
            minor_faults() - before
        })
        .collect()
}

fn steady_state_faults(faults: &[u64]) -> u64 {
    faults[FILLS - STEADY..].iter().sum()
}

fn main() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        assert!(!retain_freed_memory(), "only glibc is tuned");
        return;
    }
    if std::env::var_os(RETAIN_FREED_MEMORY_ENV).is_some_and(|v| v == "0") {
        // The child run below: the opt-out keeps glibc's defaults, which fault every time.
        assert!(!retain_freed_memory());
        let faults = faults_per_fill();
        assert!(
            steady_state_faults(&faults) >= STEADY as u64 * PAGES,
            "page faults per fill with glibc's defaults: {faults:?}; expected >= {PAGES} each"
        );
        return;
    }
    let status = std::process::Command::new(std::env::current_exe().expect("own path"))
        .env(RETAIN_FREED_MEMORY_ENV, "0")
        .status()
        .expect("run the opt-out check");
    assert!(status.success(), "the opt-out check failed");

    assert!(retain_freed_memory());
    let faults = faults_per_fill();
    let steady = steady_state_faults(&faults);
    assert!(
        steady < PAGES / 4,
        "{steady} page faults for the last {STEADY} of {FILLS} 64 MiB tensors \
         (a fresh one: {PAGES}); per fill: {faults:?}"
    );
    // No harness, so say what passed.
    let _ = writeln!(
        std::io::stdout(),
        "allocator: ok ({steady} page faults for the last {STEADY} of {FILLS} 64 MiB tensors; \
         {PAGES} for a fresh one; per fill: {faults:?})"
    );
}
