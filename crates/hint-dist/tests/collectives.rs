//! Process groups of 2 and 3 processes on 127.0.0.1: every collective gives what it should
//! on every rank, and each failure a user can cause (a dead rank, a mismatched rank, a busy
//! port, a master that never comes) is a named error within seconds, never a hang.
//!
//! Each test spawns this test binary once per rank with torchrun's variables and
//! `HINT_DIST_WORKER` set; in a worker the same test function plays its rank.

// A worker reports what it saw on stdout, which the parent reads.
#![allow(clippy::print_stdout)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use hint_dist::{BucketConfig, DistError, GradientReducer, ProcessGroup, ReduceOp};
use tch::Tensor;

const WORKER: &str = "HINT_DIST_WORKER";
/// Short: the failure tests wait this long for what will never come.
const TIMEOUT: Duration = Duration::from_secs(4);
/// A whole test's processes must end within this, or the test fails.
const LIMIT: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_worker() -> bool {
    std::env::var_os(WORKER).is_some()
}

fn rank() -> usize {
    std::env::var("RANK").unwrap().parse().unwrap()
}

/// Starts `ranks` of a world of `world` processes running `test`.
fn spawn(test: &str, world: usize, ranks: &[usize], port: u16) -> Vec<(usize, Child)> {
    ranks
        .iter()
        .map(|&rank| {
            let child = Command::new(std::env::current_exe().unwrap())
                .args(["--exact", test, "--nocapture", "--test-threads=1"])
                .env(WORKER, "1")
                .env("RANK", rank.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("WORLD_SIZE", world.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (rank, child)
        })
        .collect()
}

/// Waits for every rank (killing all and failing after [`LIMIT`]): (rank, success,
/// output).
fn wait(children: Vec<(usize, Child)>) -> Vec<(usize, bool, String)> {
    let deadline = Instant::now() + LIMIT;
    let mut children = children;
    loop {
        let done = children
            .iter_mut()
            .all(|(_, c)| c.try_wait().unwrap().is_some());
        if done {
            break;
        }
        if Instant::now() > deadline {
            for (_, child) in &mut children {
                let _ = child.kill();
            }
            panic!("the ranks did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    children
        .into_iter()
        .map(|(rank, child)| {
            let output = child.wait_with_output().unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            (rank, output.status.success(), text)
        })
        .collect()
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
}

fn play_collectives() {
    let group = ProcessGroup::from_env(TIMEOUT, tch::Device::Cpu).unwrap();
    let (rank, world) = (group.rank(), group.world_size());
    assert_eq!(rank, self::rank());
    let mut tensors = [
        Tensor::from_slice(&[rank as f32 + 1.0; 4]),
        Tensor::from_slice(&[rank as f32 * 2.0, 1.0]).view([1, 2]),
    ];
    group.all_reduce(&mut tensors, ReduceOp::Sum).unwrap();
    let sum = (1..=world).sum::<usize>() as f32;
    assert_eq!(values(&tensors[0]), vec![sum; 4]);
    let doubled = (0..world).map(|r| r as f32 * 2.0).sum::<f32>();
    assert_eq!(values(&tensors[1]), vec![doubled, world as f32]);

    let mut highest = [Tensor::from_slice(&[rank as f32, -(rank as f32)])];
    group.all_reduce(&mut highest, ReduceOp::Max).unwrap();
    assert_eq!(values(&highest[0]), vec![world as f32 - 1.0, 0.0]);

    let mut to_one = [
        Tensor::from_slice(&[rank as f32 + 1.0]),
        Tensor::from_slice(&[1.0f32, 2.0]),
    ];
    group.reduce(&mut to_one, 1, ReduceOp::Sum).unwrap();
    if rank == 1 {
        assert_eq!(values(&to_one[0]), vec![sum]);
        assert_eq!(values(&to_one[1]), vec![world as f32, 2.0 * world as f32]);
    }

    let root = world - 1;
    let mut from_root = [Tensor::from_slice(&[rank as f32; 3])];
    group.broadcast(&mut from_root, root).unwrap();
    assert_eq!(values(&from_root[0]), vec![root as f32; 3]);

    let gathered = group
        .all_gather(&Tensor::from_slice(&[rank as f32, rank as f32 * 10.0]))
        .unwrap();
    assert_eq!(gathered.size(), vec![world as i64, 2]);
    let expected: Vec<f32> = (0..world)
        .flat_map(|r| [r as f32, r as f32 * 10.0])
        .collect();
    assert_eq!(values(&gathered), expected);

    let mine = "x".repeat(rank * 3 + 1);
    let all = group.all_gather_bytes(mine.as_bytes()).unwrap();
    let expected: Vec<Vec<u8>> = (0..world)
        .map(|r| "x".repeat(r * 3 + 1).into_bytes())
        .collect();
    assert_eq!(all, expected);

    // Slice r of the sum: rank r contributed r + 1 to every element of slice s as s + 1.
    let input = Tensor::from_slice(
        &(0..world * 2)
            .map(|i| (rank + 1) as f32 * (i / 2 + 1) as f32)
            .collect::<Vec<_>>(),
    )
    .view([world as i64 * 2]);
    let mine = group.reduce_scatter(&input, ReduceOp::Sum).unwrap();
    assert_eq!(values(&mine), vec![sum * (rank + 1) as f32; 2]);

    group
        .agree("hint version", env!("CARGO_PKG_VERSION"))
        .unwrap();
    group.barrier().unwrap();
    println!("rank {rank}: collectives ok");
}

#[test]
fn collectives_on_two_and_three_ranks_give_the_same_results_everywhere() {
    if is_worker() {
        play_collectives();
        return;
    }
    for world in [2, 3] {
        let ranks: Vec<usize> = (0..world).collect();
        let test = "collectives_on_two_and_three_ranks_give_the_same_results_everywhere";
        for (rank, ok, output) in wait(spawn(test, world, &ranks, free_port())) {
            assert!(ok, "world {world}, rank {rank}:\n{output}");
            assert!(
                output.contains(&format!("rank {rank}: collectives ok")),
                "{output}"
            );
        }
    }
}

/// Parameters `a` (3 values) and `b` (2), each rank's loss weighted by `rank + 1`.
fn parameters() -> Vec<(String, Tensor)> {
    ["a", "b"]
        .iter()
        .zip([3i64, 2])
        .map(|(name, n)| {
            let t = Tensor::arange(n, (tch::Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
            (name.to_string(), t)
        })
        .collect()
}

fn backward(params: &[(String, Tensor)], weight: f64) {
    let loss = params
        .iter()
        .map(|(_, p)| (p * p).sum(tch::Kind::Float))
        .fold(Tensor::from(0.0f32), |a, b| a + b)
        * weight;
    loss.backward();
}

fn play_gradient_reducer() {
    let group = ProcessGroup::from_env(TIMEOUT, tch::Device::Cpu).unwrap();
    let (rank, world) = (group.rank(), group.world_size());
    let weights: f64 = (1..=world).map(|r| r as f64).sum();
    // Tiny buckets: one parameter each, so that several buckets are reduced.
    let config = BucketConfig {
        bucket_bytes: 8,
        first_bucket_bytes: 4,
    };
    let params = parameters();
    let mut reducer = GradientReducer::new(&group, &params, &config).unwrap();
    // Steps 1-3 (the buckets are rebuilt after the first): two microbatches, the first
    // accumulated locally, the second's gradients summed over the ranks.
    for step in 0..3 {
        for (_, p) in &params {
            let mut grad = p.grad();
            if grad.defined() {
                // In place: the gradients are views of the buckets.
                let _ = grad.zero_();
            }
        }
        backward(&params, (rank + 1) as f64);
        reducer.prepare().unwrap();
        backward(&params, (rank + 1) as f64);
        reducer.finish().unwrap();
        for (name, p) in &params {
            // d/dp (w p²) = 2 w p, twice, summed over the ranks' weights.
            let expected: Vec<f32> = values(&p.detach())
                .iter()
                .map(|x| (4.0 * weights * *x as f64) as f32)
                .collect();
            assert_eq!(values(&p.grad()), expected, "step {step}, `{name}`");
        }
    }
    drop(reducer);

    // Sharded: `a` to rank 1, `b` to rank 0; only the owner's gradient is the sum.
    let params = parameters();
    let owners: BTreeMap<String, usize> = [("a".to_string(), 1), ("b".to_string(), 0)]
        .into_iter()
        .collect();
    let mut reducer = GradientReducer::sharded(&group, &params, &owners, &config).unwrap();
    reducer.prepare().unwrap();
    backward(&params, (rank + 1) as f64);
    reducer.finish().unwrap();
    for (name, p) in &params {
        if owners[name] == rank {
            let expected: Vec<f32> = values(&p.detach())
                .iter()
                .map(|x| (2.0 * weights * *x as f64) as f32)
                .collect();
            assert_eq!(values(&p.grad()), expected, "sharded `{name}`");
        }
    }
    // A parameter left out of the loss: the reduction cannot finish, and says which.
    let params = parameters();
    let mut reducer = GradientReducer::new(&group, &params, &BucketConfig::default()).unwrap();
    reducer.prepare().unwrap();
    (&params[0].1 * 2.0).sum(tch::Kind::Float).backward();
    match reducer.finish().unwrap_err() {
        DistError::UnusedParameters { names, .. } => assert_eq!(names, ["b"]),
        other => panic!("{other}"),
    }
    println!("rank {rank}: reducer ok");
}

#[test]
fn the_gradient_reducer_sums_gradients_in_the_backward_pass() {
    if is_worker() {
        play_gradient_reducer();
        return;
    }
    for world in [2, 3] {
        let ranks: Vec<usize> = (0..world).collect();
        let test = "the_gradient_reducer_sums_gradients_in_the_backward_pass";
        for (rank, ok, output) in wait(spawn(test, world, &ranks, free_port())) {
            assert!(ok, "world {world}, rank {rank}:\n{output}");
            assert!(
                output.contains(&format!("rank {rank}: reducer ok")),
                "{output}"
            );
        }
    }
}

#[test]
fn a_world_of_one_needs_no_environment() {
    if is_worker() {
        return;
    }
    let group = ProcessGroup::single();
    assert_eq!(
        group
            .all_gather(&Tensor::from_slice(&[3.0f32]))
            .unwrap()
            .size(),
        [1, 1]
    );
    group.barrier().unwrap();
    group.agree("anything", "x").unwrap();
}

#[test]
fn a_dead_rank_makes_the_others_fail_naming_the_collective() {
    if is_worker() {
        let group = ProcessGroup::from_env(TIMEOUT, tch::Device::Cpu).unwrap();
        if group.rank() == 1 {
            // Dies after the rendezvous, before the first collective.
            std::process::exit(3);
        }
        std::thread::sleep(Duration::from_millis(300));
        let started = Instant::now();
        let err = group
            .all_reduce(&mut [Tensor::from_slice(&[1.0f32])], ReduceOp::Sum)
            .unwrap_err();
        assert!(matches!(err, DistError::Collective { .. }), "{err}");
        println!("rank 0 failed after {:?}: {err}", started.elapsed());
        return;
    }
    let test = "a_dead_rank_makes_the_others_fail_naming_the_collective";
    let results = wait(spawn(test, 2, &[0, 1], free_port()));
    let (_, ok, output) = &results[0];
    assert!(*ok, "{output}");
    assert!(
        output.contains("all_reduce on rank 0 of 2 failed"),
        "{output}"
    );
}

#[test]
fn ranks_with_different_settings_are_refused() {
    if is_worker() {
        let group = ProcessGroup::from_env(TIMEOUT, tch::Device::Cpu).unwrap();
        let digest = if group.rank() == 0 { "a1b2" } else { "ffff" };
        let err = group.agree("operative configuration", digest).unwrap_err();
        println!("rank {}: {err}", group.rank());
        return;
    }
    let test = "ranks_with_different_settings_are_refused";
    let results = wait(spawn(test, 2, &[0, 1], free_port()));
    for (rank, ok, output) in &results {
        assert!(*ok, "rank {rank}:\n{output}");
    }
    assert!(
        results[1].2.contains(
            "rank 1 has another operative configuration than rank 0: ffff here, a1b2 on rank 0"
        ),
        "{}",
        results[1].2
    );
    assert!(
        results[0].2.contains("barrier on rank 0 of 2 failed"),
        "{}",
        results[0].2
    );
}

#[test]
fn a_busy_port_and_a_master_that_never_comes_are_rendezvous_errors() {
    if is_worker() {
        let err = ProcessGroup::from_env(TIMEOUT, tch::Device::Cpu).unwrap_err();
        assert!(matches!(err, DistError::Rendezvous { .. }), "{err}");
        println!("rank {}: {err}", rank());
        return;
    }
    let test = "a_busy_port_and_a_master_that_never_comes_are_rendezvous_errors";
    // Rank 0 cannot serve on a port another program holds.
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let results = wait(spawn(test, 2, &[0], port));
    assert!(results[0].1, "{}", results[0].2);
    assert!(
        results[0].2.contains(&format!(
            "rendezvous at 127.0.0.1:{port} as rank 0 of 2 failed"
        )),
        "{}",
        results[0].2
    );
    drop(busy);
    // Rank 1 alone: no master ever answers.
    let started = Instant::now();
    let results = wait(spawn(test, 2, &[1], free_port()));
    assert!(results[0].1, "{}", results[0].2);
    assert!(
        results[0].2.contains("as rank 1 of 2 failed"),
        "{}",
        results[0].2
    );
    assert!(started.elapsed() < LIMIT);
}
