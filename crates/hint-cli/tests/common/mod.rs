//! What the `hint` integration tests share: the binary and the model directory's files.

#![allow(dead_code)] // each test file uses its own part

use std::path::Path;
use std::process::Command;

/// The `hint` binary under test.
pub fn hint() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hint"))
}

/// Runs `command`, which must succeed (its standard error is the failure message);
/// its standard output.
pub fn succeed(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `hint export --hf` of `model_dir` to `output`: it must succeed; its standard output.
pub fn export_hf(model_dir: &Path, output: &Path) -> String {
    succeed(
        hint()
            .args(["export", "--hf", "--model_dir"])
            .arg(model_dir)
            .arg("--output")
            .arg(output),
    )
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

/// A few-second configuration of the embedded default.
/// The device the tests run on: `HINT_TEST_DEVICE` (e.g. `cuda`), or the CPU.
pub fn device() -> String {
    std::env::var("HINT_TEST_DEVICE")
        .ok()
        .filter(|d| !d.trim().is_empty())
        .unwrap_or_else(|| "cpu".into())
}

pub fn tiny_args(model_dir: &Path, steps: u64) -> Vec<String> {
    [
        format!("--gin.MODEL_DIR=\"{}\"", model_dir.display()),
        format!("--gin.TRAIN_STEPS={steps}"),
        "--gin.BATCH_SIZE=8".into(),
        "--gin.TrainConfig.checkpoint_every=3".into(),
        "--gin.TrainConfig.keep_checkpoints=2".into(),
        "--gin.T5Config.d_model=32".into(),
        "--gin.T5Config.d_kv=8".into(),
        "--gin.T5Config.d_ff=64".into(),
        "--gin.T5Config.vocab_size=400".into(),
        "--gin.Vocabulary.vocab_size=400".into(),
        "--gin.Builtin.train_instances=40".into(),
        "--gin.Builtin.eval_instances=3".into(),
        "--gin.Run.eval_examples_per_task=2".into(),
        format!("--gin.Run.device=\"{}\"", device()),
        "--gin.EvalConfig.max_new_tokens=4".into(),
    ]
    .into()
}

/// `hint train` on the tiny run, quietly, to the end: it must succeed.
pub fn train_quietly(model_dir: &Path, steps: u64) {
    let status = hint()
        .arg("train")
        .args(tiny_args(model_dir, steps))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "training {} failed", model_dir.display());
}

/// Waits for `child`, killing it and failing the test after `limit`: a hang is a failure.
pub fn wait_within(child: &mut std::process::Child, limit: std::time::Duration) -> Option<i32> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`hint` did not finish within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A child killed, with everything it started (`hint launch`'s ranks), when dropped: a
/// failing assertion leaves no process behind.
pub struct Reaped(pub std::process::Child);

impl Reaped {
    /// Spawns `command` in a process group of its own, so that dropping kills the group.
    pub fn spawn(command: &mut Command) -> Self {
        use std::os::unix::process::CommandExt;
        Self(command.process_group(0).spawn().unwrap())
    }
}

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        // The group too, while its leader still runs (what it started goes with it). Once
        // the leader is reaped its id is free: the kernel may give it to another process,
        // which may lead a group of its own, so no signal goes to that id any more.
        if matches!(self.0.try_wait(), Ok(None)) {
            // `kill -s KILL -- -PGID`, never `kill -KILL -PGID`: procps-ng's kill reads a
            // negative id after a signal option as more options (`-12093` as `-1`…), and
            // `kill(-1, SIGKILL)` ends every process the user may signal.
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{}", self.0.id())])
                .stderr(std::process::Stdio::null())
                .status();
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}
