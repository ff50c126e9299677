//! Data-parallel `hint train` on 127.0.0.1 (Gloo, CPU): N ranks at the same global batch
//! give the losses and parameters of one process, a run resumes with another world size,
//! a dead rank ends the others, and ranks with different configurations are refused.
//! Every process runs under a deadline: a hang fails the test.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{hint, losses, tiny_args, wait_within, Reaped};

const LIMIT: Duration = Duration::from_secs(120);

fn run(mut command: Command) -> (bool, String) {
    let mut child = Reaped::spawn(command.stdout(Stdio::null()).stderr(Stdio::piped()));
    let code = wait_within(&mut child, LIMIT);
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap_or_default();
    (code == Some(0), stderr)
}

fn args(dir: &Path, steps: u64) -> Vec<String> {
    let mut args = tiny_args(dir, steps);
    args.push("--gin.TrainConfig.replica_check_every=2".into());
    // Gloo on the CPU whatever HINT_TEST_DEVICE says: several ranks on one GPU cannot
    // each take the GPU of their LOCAL_RANK.
    args.push("--gin.Run.device=\"cpu\"".into());
    args
}

fn train_alone(dir: &Path, steps: u64) {
    let mut command = hint();
    command.arg("train").args(args(dir, steps));
    let (ok, stderr) = run(command);
    assert!(ok, "{stderr}");
}

fn train_launched(ranks: usize, dir: &Path, steps: u64) {
    train_launched_with(ranks, dir, steps, &[]);
}

fn train_launched_with(ranks: usize, dir: &Path, steps: u64, extra: &[&str]) {
    let mut command = hint();
    command
        .args(["launch", "--nproc_per_node", &ranks.to_string(), "train"])
        .args(args(dir, steps))
        .args(extra);
    let (ok, stderr) = run(command);
    assert!(ok, "{ranks} ranks: {stderr}");
}

fn assert_losses_close(a: &[(u64, f64)], b: &[(u64, f64)], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: steps");
    for ((sa, la), (sb, lb)) in a.iter().zip(b) {
        assert_eq!(sa, sb, "{what}");
        assert!(
            (la - lb).abs() <= 1e-5 * la.abs(),
            "{what}: step {sa}: {la} vs {lb}"
        );
    }
}

fn assert_parameters_close(a: &Path, b: &Path) {
    assert_tensors_close(a, b, "model.safetensors");
}

/// The tensors of `file` in two checkpoint folders agree within 1e-5 of their scale.
fn assert_tensors_close(a: &Path, b: &Path, file: &str) {
    let read = |dir: &Path| {
        let mut tensors = tch::Tensor::read_safetensors(dir.join(file)).unwrap();
        tensors.sort_by(|x, y| x.0.cmp(&y.0));
        tensors
    };
    let (a, b) = (read(a), read(b));
    assert_eq!(a.len(), b.len());
    for ((name, x), (other, y)) in a.iter().zip(&b) {
        assert_eq!(name, other, "{file}");
        let (x, y) = (x.to_kind(tch::Kind::Double), y.to_kind(tch::Kind::Double));
        let scale = f64::try_from(x.abs().max()).unwrap();
        let diff = f64::try_from((&x - &y).abs().max()).unwrap();
        assert!(
            diff <= 1e-5 * scale.max(1e-3),
            "{file}: {name}: differs by {diff}"
        );
    }
}

/// `eval_results.json` without the per-task wall times.
fn results_without_timings(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("eval_results.json")).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
    for tasks in value.as_object_mut().unwrap().values_mut() {
        for task in tasks.as_array_mut().unwrap() {
            task.as_object_mut().unwrap().remove("seconds");
        }
    }
    value
}

#[test]
fn two_and_three_ranks_equal_one_process_at_the_same_global_batch() {
    const STEPS: u64 = 20;
    let tmp = tempfile::tempdir().unwrap();
    let alone = tmp.path().join("alone");
    train_alone(&alone, STEPS);
    let checkpoint = format!("checkpoint_{STEPS:08}");
    for ranks in [2, 3] {
        let dir = tmp.path().join(format!("ranks{ranks}"));
        train_launched(ranks, &dir, STEPS);
        assert_losses_close(&losses(&alone), &losses(&dir), &format!("{ranks} ranks"));
        assert_parameters_close(&alone.join(&checkpoint), &dir.join(&checkpoint));
        // The ranks shared the evaluation's tasks; rank 0's table is one process's.
        assert_eq!(
            results_without_timings(&dir),
            results_without_timings(&alone),
            "{ranks} ranks: evaluation"
        );
        assert_eq!(losses(&dir).len() as u64, STEPS, "one metrics line a step");
    }
}

/// Two `hint launch` commands as two machines would run them (torchrun's static
/// rendezvous: `--nnodes 2`, each its `--node_rank`, node 0's address and port), here both
/// on 127.0.0.1: one run of 4 ranks, equal to one process.
#[test]
fn two_machines_of_two_ranks_equal_one_process() {
    const STEPS: u64 = 6;
    let tmp = tempfile::tempdir().unwrap();
    let alone = tmp.path().join("alone");
    train_alone(&alone, STEPS);
    let dir = tmp.path().join("nodes");
    let port = free_port().to_string();
    let nodes: Vec<Reaped> = (0..2)
        .map(|node| {
            Reaped::spawn(
                hint()
                    .args(["launch", "--nnodes", "2", "--node_rank", &node.to_string()])
                    .args(["--nproc_per_node", "2", "--master_addr", "127.0.0.1"])
                    .args(["--master_port", &port, "train"])
                    .args(args(&dir, STEPS))
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped()),
            )
        })
        .collect();
    for (node, mut child) in nodes.into_iter().enumerate() {
        let code = wait_within(&mut child, LIMIT);
        let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap_or_default();
        assert_eq!(code, Some(0), "node {node}: {stderr}");
        if node == 0 {
            assert!(stderr.contains("world_size=4"), "{stderr}");
        }
    }
    assert_losses_close(&losses(&alone), &losses(&dir), "2 machines × 2 ranks");
    let checkpoint = format!("checkpoint_{STEPS:08}");
    assert_parameters_close(&alone.join(&checkpoint), &dir.join(&checkpoint));
}

#[test]
fn sharded_optimizer_state_gives_the_unsharded_run_and_checkpoint() {
    const STEPS: u64 = 12;
    let tmp = tempfile::tempdir().unwrap();
    let alone = tmp.path().join("alone");
    train_alone(&alone, STEPS);
    let sharded = tmp.path().join("sharded");
    train_launched_with(
        2,
        &sharded,
        STEPS,
        &["--gin.TrainConfig.shard_optimizer=True"],
    );
    assert_losses_close(&losses(&alone), &losses(&sharded), "sharded, 2 ranks");
    let checkpoint = format!("checkpoint_{STEPS:08}");
    assert_parameters_close(&alone.join(&checkpoint), &sharded.join(&checkpoint));
    // Gathered on rank 0 in the one-process format: every slot, the same values.
    assert_tensors_close(
        &alone.join(&checkpoint),
        &sharded.join(&checkpoint),
        "optimizer.safetensors",
    );
    // A sharded run resumes unsharded on one rank, and the other way round.
    let mixed = tmp.path().join("mixed");
    train_launched_with(3, &mixed, 6, &["--gin.TrainConfig.shard_optimizer=True"]);
    train_alone(&mixed, 9);
    train_launched_with(
        2,
        &mixed,
        STEPS,
        &["--gin.TrainConfig.shard_optimizer=True"],
    );
    assert_losses_close(&losses(&alone), &losses(&mixed), "3 sharded, 1, 2 sharded");
}

#[test]
fn a_run_resumes_with_another_world_size() {
    let tmp = tempfile::tempdir().unwrap();
    let straight = tmp.path().join("straight");
    train_alone(&straight, 12);
    // One process, then two.
    let grown = tmp.path().join("grown");
    train_alone(&grown, 6);
    train_launched(2, &grown, 12);
    assert_losses_close(&losses(&straight), &losses(&grown), "1 then 2 ranks");
    // Two processes, then one.
    let shrunk = tmp.path().join("shrunk");
    train_launched(2, &shrunk, 6);
    train_alone(&shrunk, 12);
    assert_losses_close(&losses(&straight), &losses(&shrunk), "2 ranks then 1");
}

/// Rank `rank` of 2, started by hand as torchrun would, with a short collective timeout.
fn rank_process(rank: usize, port: u16, dir: &Path, extra: &[&str]) -> Reaped {
    Reaped::spawn(
        hint()
            .arg("train")
            .args(args(dir, 100_000))
            .arg("--gin.Run.dist_timeout_seconds=5")
            .args(extra)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", "2")
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env("HINT_PROGRESS", "log")
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_dead_rank_ends_the_other_with_the_collective_named_and_the_checkpoints_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let port = free_port();
    let mut rank0 = rank_process(0, port, &dir, &[]);
    let mut rank1 = rank_process(1, port, &dir, &[]);
    let deadline = Instant::now() + LIMIT;
    while !dir.join("checkpoint_00000003").is_dir() {
        assert!(Instant::now() < deadline, "the run never checkpointed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = rank1.kill(); // SIGKILL, mid-step
    let _ = rank1.wait();
    let killed = Instant::now();
    let code = wait_within(&mut rank0, Duration::from_secs(60));
    assert_ne!(code, Some(0));
    assert!(
        killed.elapsed() < Duration::from_secs(30),
        "{:?}",
        killed.elapsed()
    );
    let stderr = std::io::read_to_string(rank0.stderr.take().unwrap()).unwrap_or_default();
    assert!(
        stderr.contains("rank 0 of 2")
            && (stderr.contains("all_reduce")
                || stderr.contains("barrier")
                || stderr.contains("all_gather")),
        "{stderr}"
    );
    // What rank 0 wrote is whole: every checkpoint loads, and the run resumes alone.
    let mut newest = 0;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(step) = name.strip_prefix("checkpoint_") {
            tch::Tensor::read_safetensors(entry.path().join("model.safetensors"))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            newest = newest.max(step.parse::<u64>().unwrap());
        }
    }
    assert!(newest >= 3);
    train_alone(&dir, newest + 2);
    assert_eq!(losses(&dir).len() as u64, newest + 2);
}

#[test]
fn ranks_with_different_configurations_are_refused_at_start_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let port = free_port();
    let mut rank0 = rank_process(0, port, &dir, &[]);
    let mut rank1 = rank_process(1, port, &dir, &["--gin.LEARNING_RATE=0.5"]);
    let code1 = wait_within(&mut rank1, Duration::from_secs(60));
    let code0 = wait_within(&mut rank0, Duration::from_secs(60));
    assert_ne!(code1, Some(0));
    assert_ne!(code0, Some(0));
    let stderr = std::io::read_to_string(rank1.stderr.take().unwrap()).unwrap_or_default();
    assert!(
        stderr.contains("rank 1 has another configuration (digest of config.gin) than rank 0"),
        "{stderr}"
    );
    assert!(!dir.join("checkpoint_00000003").exists(), "nothing trained");
}

#[test]
fn ctrl_c_on_hint_launch_stops_every_rank_at_one_checkpointed_step() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let mut launcher = Reaped::spawn(
        hint()
            .args(["launch", "--nproc_per_node", "2", "train"])
            .args(args(&dir, 100_000))
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let deadline = Instant::now() + LIMIT;
    while losses_so_far(&dir) < 5 {
        assert!(Instant::now() < deadline, "the run never trained");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args(["-INT", &launcher.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let asked = Instant::now();
    assert_eq!(
        wait_within(&mut launcher, Duration::from_secs(30)),
        Some(130)
    );
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    let stdout = std::io::read_to_string(launcher.stdout.take().unwrap()).unwrap_or_default();
    let step: u64 = stdout
        .split("interrupted at step ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        dir.join(format!("checkpoint_{step:08}")).is_dir(),
        "{stdout}"
    );
    assert_eq!(
        losses(&dir).len() as u64,
        step,
        "rank 0 logged every step up to the stop"
    );
}

fn losses_so_far(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}
