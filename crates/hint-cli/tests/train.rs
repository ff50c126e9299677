//! `hint train` end to end on a tiny configuration of the embedded default: the loss goes
//! down, checkpoints and the evaluation table are written, SIGKILL at random moments and
//! resuming gives the losses of an uninterrupted run, and bad input fails before training.

use std::path::Path;
use std::process::Stdio;

mod common;
use common::{hint, losses};
/// A few-second configuration of the embedded default.
fn tiny_args(model_dir: &Path, steps: u64) -> Vec<String> {
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
        "--gin.Run.device=\"cpu\"".into(),
        "--gin.EvalConfig.max_new_tokens=4".into(),
    ]
    .into()
}

#[test]
fn trains_evaluates_plots_and_writes_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let mut args = tiny_args(&dir, 20);
    args.push("--gin.LEARNING_RATE=0.01".into());
    let output = hint().arg("train").args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("### seen") && stdout.contains("### held-out"),
        "{stdout}"
    );
    assert!(stdout.contains("| **mean** |"), "{stdout}");
    for file in [
        "config.gin",
        "operative_config.gin",
        "eval_results.json",
        "eval_results.md",
        "loss.png",
        "tokenizer.json",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    assert!(dir.join("checkpoint_00000020/model.safetensors").is_file());
    assert!(dir.join("checkpoint_00000018").is_dir());
    assert!(
        !dir.join("checkpoint_00000015").exists(),
        "only the newest 2 are kept"
    );
    assert_eq!(losses(&dir).len(), 20);
    let per_token: Vec<f64> = std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["loss_per_token"].as_f64())
        .collect();
    let early: f64 = per_token[..5].iter().sum();
    let late: f64 = per_token[15..].iter().sum();
    assert!(late < early, "loss did not decrease: {early} → {late}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("eval_results.json")).unwrap())
            .unwrap();
    assert!(results["seen"].as_array().unwrap().len() >= 40);
    assert!(results["held-out"].as_array().unwrap().len() >= 8);
    let plot = hint()
        .args(["plot", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(plot.status.success());
    // Evaluation of a checkpoint, and inference with one instruction for several inputs.
    let eval = hint()
        .args([
            "eval",
            "--model_dir",
            dir.to_str().unwrap(),
            "--gin.Run.eval_examples_per_task=1",
        ])
        .output()
        .unwrap();
    assert!(
        eval.status.success(),
        "{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    assert!(String::from_utf8_lossy(&eval.stdout).contains("### held-out"));
    assert!(dir
        .join("eval_checkpoint_00000020/eval_results.md")
        .is_file());
    let inputs = tmp.path().join("inputs.jsonl");
    std::fs::write(&inputs, "{\"input\": \"3 9 4\"}\n{\"input\": \"7 2\"}\n").unwrap();
    let checkpoint = dir.join("checkpoint_00000020");
    let infer = hint()
        .args(["infer", "--checkpoint", checkpoint.to_str().unwrap()])
        .args([
            "--instruction",
            "Reverse the list.",
            "--inputs",
            inputs.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        infer.status.success(),
        "{}",
        String::from_utf8_lossy(&infer.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&infer.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["input"], "7 2");
    assert!(lines[0]["prediction"].is_string());
    std::fs::write(&inputs, "{\"text\": \"no input field\"}\n").unwrap();
    let bad = hint()
        .args(["infer", "--checkpoint", checkpoint.to_str().unwrap()])
        .args(["--instruction", "x", "--inputs", inputs.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("inputs.jsonl:1: field `input`"));
}

#[test]
fn sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run() {
    const STEPS: u64 = 60;
    let tmp = tempfile::tempdir().unwrap();
    let straight = tmp.path().join("straight");
    let status = hint()
        .arg("train")
        .args(tiny_args(&straight, STEPS))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let reference = losses(&straight);
    assert_eq!(reference.len() as u64, STEPS);

    let killed = tmp.path().join("killed");
    let final_checkpoint = killed.join(format!("checkpoint_{STEPS:08}"));
    let mut interrupted = 0;
    // Kill once the run has logged a given step, plus a delay that lands anywhere within a
    // step (update, metrics line, checkpoint write); each restart resumes from what the
    // previous one left. Steps are counted in lines of the (growing) metrics file.
    for (target, extra_ms) in [(7usize, 3u64), (23, 11), (38, 1), (51, 7)] {
        let mut child = hint()
            .arg("train")
            .args(tiny_args(&killed, STEPS))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let lines = std::fs::read_to_string(killed.join("metrics.jsonl"))
                .map(|t| t.lines().count())
                .unwrap_or(0);
            if lines >= target || std::time::Instant::now() > deadline {
                break;
            }
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        std::thread::sleep(std::time::Duration::from_millis(extra_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        if !final_checkpoint.exists() {
            interrupted += 1;
        }
        // Every checkpoint left behind is complete.
        for entry in std::fs::read_dir(&killed).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with("checkpoint_") {
                let path = entry.path();
                for file in [
                    "train_state.json",
                    "model.safetensors",
                    "optimizer.safetensors",
                ] {
                    assert!(path.join(file).is_file(), "{name}/{file} missing");
                }
            }
        }
    }
    assert!(
        interrupted >= 3,
        "the kills came too late to interrupt training"
    );
    let status = hint()
        .arg("train")
        .args(tiny_args(&killed, STEPS))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        losses(&killed),
        reference,
        "resumed losses differ from the uninterrupted run"
    );
}

#[test]
fn bad_input_fails_before_training_and_overwrites_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    // A foreign non-empty folder.
    std::fs::write(tmp.path().join("notes.txt"), "keep me").unwrap();
    let output = hint()
        .arg("train")
        .args(tiny_args(tmp.path(), 3))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a hint model directory"));
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    // A misspelt binding names the parameter and suggests the right one.
    let mut args = tiny_args(&tmp.path().join("new"), 3);
    args.push("--gin.TrainConfig.stepz=3".into());
    let output = hint().arg("train").args(args).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("stepz") && stderr.contains("steps"),
        "{stderr}"
    );
    assert!(!tmp.path().join("new").exists());
    // An unknown evaluation set fails before any step and writes nothing into the run.
    let mut args = tiny_args(&tmp.path().join("evalset"), 3);
    args.push("--gin.Run.eval_sets=[(\"x\", \"no_such_task\", \"test\")]".into());
    let output = hint().arg("train").args(args).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("evaluation set `x`") && stderr.contains("no_such_task"),
        "{stderr}"
    );
    let written: Vec<_> = std::fs::read_dir(tmp.path().join("evalset"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    // At most the marker that claims the folder: no configuration, tokenizer or checkpoint.
    assert!(
        written.iter().all(|name| name == "HINT_MODEL_DIR"),
        "{written:?}"
    );
}
