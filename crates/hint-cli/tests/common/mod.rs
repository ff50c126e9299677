//! What the `hint` integration tests share: the binary and the model directory's files.

#![allow(dead_code)] // each test file uses its own part

use std::path::Path;
use std::process::Command;

/// The `hint` binary under test.
pub fn hint() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hint"))
}

/// `(step, loss)` of every training line of a run's `metrics.jsonl`.
pub fn losses(model_dir: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(model_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("loss").is_some())
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}
