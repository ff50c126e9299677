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

/// Page faults while three 64 MiB tensors are written, used and freed in turn, after
/// `warm_up` such tensors (the heap takes a few rounds to settle into reusable blocks, as
/// the first training steps do).
fn faults_of_reused_tensors(warm_up: usize) -> u64 {
    let fill = || {
        let t = Tensor::ones([ELEMENTS], (Kind::Float, Device::Cpu));
        assert_eq!(f64::try_from(t.sum(Kind::Float)).unwrap(), ELEMENTS as f64);
    };
    for _ in 0..warm_up {
        fill();
    }
    let before = minor_faults();
    for _ in 0..3 {
        fill();
    }
    minor_faults() - before
}

fn main() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        assert!(!retain_freed_memory(), "only glibc is tuned");
        return;
    }
    if std::env::var_os(RETAIN_FREED_MEMORY_ENV).is_some_and(|v| v == "0") {
        // The child run below: the opt-out keeps glibc's defaults, which fault every time.
        assert!(!retain_freed_memory());
        let faults = faults_of_reused_tensors(6);
        assert!(
            faults >= 3 * PAGES,
            "{faults} page faults with glibc's defaults; expected >= {}",
            3 * PAGES
        );
        return;
    }
    let status = std::process::Command::new(std::env::current_exe().expect("own path"))
        .env(RETAIN_FREED_MEMORY_ENV, "0")
        .status()
        .expect("run the opt-out check");
    assert!(status.success(), "the opt-out check failed");

    assert!(retain_freed_memory());
    let faults = faults_of_reused_tensors(6);
    assert!(
        faults < PAGES / 4,
        "{faults} page faults for three reused 64 MiB tensors (a fresh one: {PAGES})"
    );
    // No harness, so say what passed.
    let _ = writeln!(
        std::io::stdout(),
        "allocator: ok ({faults} page faults for three reused 64 MiB tensors; {PAGES} for a fresh one)"
    );
}
