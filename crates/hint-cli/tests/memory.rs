//! Memory: every training line records the step's peak and the first step says what held
//! it; rematerialised and bf16-parameter runs resume with identical losses; a checkpoint
//! moves between devices; `hint plan` predicts a measured step (the second) within 15% for
//! each `remat_policy`, with the fused CPU kernels and with libtorch's operators, with the
//! gradients dropped before each step (one pass) and held (two microbatches), and plans a
//! GPU configuration for a GPU.

use std::path::Path;
use std::process::Stdio;

mod common;
use common::{hint, losses, succeed, tiny_args};

fn train(dir: &Path, steps: u64, extra: &[&str]) {
    succeed(hint().arg("train").args(tiny_args(dir, steps)).args(extra));
}

fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn assert_same_losses(a: &Path, b: &Path, what: &str) {
    let (a, b) = (losses(a), losses(b));
    assert_eq!(a.len(), b.len(), "{what}");
    for ((step, x), (_, y)) in a.iter().zip(&b) {
        assert!(
            (x - y).abs() <= 1e-6 * x.abs(),
            "{what}: step {step}: {x} vs {y}"
        );
    }
}

#[test]
fn every_step_records_its_peak_and_the_first_step_what_held_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    train(&dir, 4, &[]);
    let lines = metrics(&dir);
    let steps: Vec<&serde_json::Value> = lines.iter().filter(|l| l.get("loss").is_some()).collect();
    assert_eq!(steps.len(), 4);
    for line in &steps {
        assert!(line["peak_memory_bytes"].as_u64().unwrap() > 0, "{line}");
        assert!(line["peak_tensor_bytes"].as_u64().unwrap() > 0, "{line}");
    }
    let memory: Vec<&serde_json::Value> = lines.iter().filter_map(|l| l.get("memory")).collect();
    assert_eq!(memory.len(), 1, "one memory line per process");
    let memory = memory[0];
    assert_eq!(memory["measured"], "tensors");
    let parameters = memory["parameters"].as_u64().unwrap();
    assert!(parameters > 0);
    assert_eq!(
        memory["gradients"].as_u64().unwrap(),
        parameters,
        "every parameter trains"
    );
    assert!(memory["activations"].as_u64().unwrap() > 0);
    assert_eq!(memory["examples"], 8);
    // The peak holds at least what was there before and the gradients.
    assert!(
        memory["peak"].as_u64().unwrap() >= memory["before_step"].as_u64().unwrap() + parameters
    );
    // A resumed process writes its own first-step line.
    train(&dir, 6, &[]);
    let after = metrics(&dir);
    assert_eq!(
        after.iter().filter(|l| l.get("memory").is_some()).count(),
        2
    );
}

#[test]
fn rematerialised_runs_give_the_plain_losses_and_resume_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let dropout = "--gin.T5Config.dropout_rate=0.1";
    let plain = tmp.path().join("plain");
    train(&plain, 6, &[dropout]);
    for policy in ["full", "minimal"] {
        let remat = format!("--gin.TrainConfig.remat_policy=\"{policy}\"");
        let straight = tmp.path().join(format!("{policy}-straight"));
        train(&straight, 6, &[dropout, &remat]);
        assert_same_losses(&plain, &straight, &format!("remat {policy} against plain"));
        let resumed = tmp.path().join(format!("{policy}-resumed"));
        train(&resumed, 3, &[dropout, &remat]);
        train(&resumed, 6, &[dropout, &remat]);
        assert_eq!(
            losses(&straight),
            losses(&resumed),
            "remat {policy} resumed"
        );
    }
}

#[test]
fn bf16_parameters_train_and_resume_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let bf16 = "--gin.TrainConfig.param_dtype=\"bfloat16\"";
    let straight = tmp.path().join("straight");
    train(&straight, 6, &[bf16]);
    let resumed = tmp.path().join("resumed");
    train(&resumed, 3, &[bf16]);
    train(&resumed, 6, &[bf16]);
    assert_eq!(losses(&straight), losses(&resumed));
    // The same start as f32, rounded: the first loss agrees to bf16's precision.
    let f32_dir = tmp.path().join("f32");
    train(&f32_dir, 3, &[]);
    let (first, reference) = (losses(&straight)[0].1, losses(&f32_dir)[0].1);
    assert!(
        (first - reference).abs() <= 0.02 * reference,
        "{first} vs {reference}"
    );
    // The checkpoint holds bf16 parameters: half the bytes of f32 ones.
    let size = |dir: &Path| {
        std::fs::metadata(dir.join("checkpoint_00000003/model.safetensors"))
            .unwrap()
            .len()
    };
    let (half, full) = (size(&resumed), size(&f32_dir));
    // (Both files carry the same header of names and shapes.)
    assert!(
        half * 100 < full * 55 && half * 100 > full * 45,
        "{half} vs {full}"
    );
}

/// With `HINT_TEST_DEVICE=cuda` this moves a CUDA checkpoint to the CPU and back; on a
/// CPU-only machine both halves run on the CPU.
#[test]
fn a_checkpoint_resumes_on_another_device_and_back() {
    let tmp = tempfile::tempdir().unwrap();
    let cpu = "--gin.Run.device=\"cpu\"";
    let straight = tmp.path().join("straight");
    train(&straight, 6, &[]);
    let moved = tmp.path().join("moved");
    train(&moved, 2, &[]);
    train(&moved, 4, &[cpu]);
    train(&moved, 6, &[]);
    let (a, b) = (losses(&straight), losses(&moved));
    assert_eq!(a.len(), b.len());
    for ((step, x), (_, y)) in a.iter().zip(&b) {
        // Another device may round differently; the same device gives the same losses.
        assert!((x - y).abs() <= 1e-4 * x.abs(), "step {step}: {x} vs {y}");
    }
}

#[test]
fn the_plan_predicts_a_measured_step_within_fifteen_percent() {
    let shape = [
        "--gin.T5Config.d_model=128",
        "--gin.T5Config.d_kv=32",
        "--gin.T5Config.d_ff=512",
        "--gin.T5Config.num_heads=4",
        "--gin.T5Config.num_layers=3",
        "--gin.T5Config.num_decoder_layers=3",
        "--gin.T5Config.vocab_size=2000",
        "--gin.BATCH_SIZE=16",
        "--gin.Run.device=\"cpu\"",
    ];
    // With the fused CPU kernels (the default) and with libtorch's operators, which keep
    // more for the backward pass: the plan counts what the step runs.
    // Two microbatches hold the gradients through the second one's forward pass.
    let cases = [("1", "fused"), ("0", "composed")]
        .into_iter()
        .flat_map(|k| ["none", "minimal", "full"].map(|remat| (k, remat, 1)))
        .chain([(("1", "fused"), "none", 2)]);
    for ((fused, kernels), remat, microbatches) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let policy = format!("--gin.TrainConfig.remat_policy=\"{remat}\"");
        let mut args: Vec<String> = tiny_args(&dir, 2);
        args.extend(shape.iter().map(|s| s.to_string()));
        args.push(policy);
        args.push(format!("--gin.TrainConfig.microbatches={microbatches}"));
        let status = hint()
            .env("HINT_FUSED_KERNELS", fused)
            .arg("train")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let lines = metrics(&dir);
        let memory = lines.iter().find_map(|l| l.get("memory")).unwrap();
        // The plan is told the share of distinct instructions the measured step had (it
        // assumes one per example unless told), as benches/memory_validate.sh tells it.
        let share = memory["instructions"].as_f64().unwrap() / memory["examples"].as_f64().unwrap();
        let output = succeed(
            hint()
                .env("HINT_FUSED_KERNELS", fused)
                .args(["plan", "--format", "json", "--instructions_per_example"])
                .arg(share.to_string())
                .args(&args),
        );
        let plan: serde_json::Value = serde_json::from_str(&output).unwrap();
        assert_eq!(plan["kernels"], kernels);
        let predicted = plan[match remat {
            "none" => "peak_bytes_without_remat",
            "minimal" => "peak_bytes_with_minimal_remat",
            _ => "peak_bytes_with_remat",
        }]
        .as_f64()
        .unwrap();
        assert_eq!(plan["gradients_held"], microbatches > 1);
        // The second step: with several microbatches, from then on every step holds the
        // gradient buffers throughout (a first step allocates them during its backward
        // pass); in one pass they are dropped before each step.
        let measured = lines
            .iter()
            .filter(|l| l.get("loss").is_some())
            .nth(1)
            .and_then(|l| l["peak_tensor_bytes"].as_f64())
            .unwrap();
        assert!(
        (predicted / measured - 1.0).abs() <= 0.15,
        "{kernels} kernels, remat {remat}, {microbatches} microbatch(es): predicted {predicted}, measured {measured} ({memory})"
    );
    }
}

#[test]
fn a_configuration_naming_a_device_this_machine_lacks_is_planned_for_that_device() {
    let tmp = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = tiny_args(&tmp.path().join("run"), 1);
    let mut planned = |device: &str| {
        args.push(format!("--gin.Run.device=\"{device}\""));
        let output = succeed(hint().args(["plan", "--format", "json"]).args(&args));
        let plan: serde_json::Value = serde_json::from_str(&output).unwrap();
        plan["kernels"].as_str().unwrap().to_string()
    };
    // A GPU runs libtorch's operators, whether or not this machine has one.
    assert_eq!(planned("cuda"), "composed");
    let on_the_cpu = if std::env::var("HINT_FUSED_KERNELS").is_ok_and(|v| v.trim() == "0") {
        "composed"
    } else {
        "fused"
    };
    assert_eq!(planned("cpu"), on_the_cpu);
}
