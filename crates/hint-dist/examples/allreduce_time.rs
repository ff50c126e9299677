//! How long a gradient all-reduce takes on its own: `ranks` processes (started by this
//! program, on 127.0.0.1, one thread each) sum `elements` f32 values, as one buffer and in
//! 25 MiB buckets (the gradient reducer's size), 5 times each. `benches/data_parallel.sh`
//! runs it at the sizes of its two workloads.
//!
//!     cargo run --release -p hint-dist --example allreduce_time -- [elements] [ranks]
#![allow(clippy::print_stdout)]

use std::process::Command;
use std::time::{Duration, Instant};

use hint_dist::{ProcessGroup, ReduceOp};
use tch::{Device, Kind, Tensor};

const ROUNDS: u32 = 5;
const BUCKET_ELEMENTS: i64 = (25 << 20) / 4;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let number = |i: usize, default: i64| {
        args.get(i)
            .map(|a| a.parse().expect("a whole number"))
            .unwrap_or(default)
    };
    let elements = number(1, 48_944_512);
    let ranks = number(2, 2) as usize;
    if std::env::var_os("RANK").is_none() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let children: Vec<_> = (0..ranks)
            .map(|rank| {
                Command::new(std::env::current_exe().expect("this program"))
                    .args(&args[1..])
                    .env("RANK", rank.to_string())
                    .env("WORLD_SIZE", ranks.to_string())
                    .env("MASTER_ADDR", "127.0.0.1")
                    .env("MASTER_PORT", port.to_string())
                    .spawn()
                    .expect("a rank")
            })
            .collect();
        for mut child in children {
            let status = child.wait().expect("a rank's exit");
            assert!(status.success(), "a rank failed: {status}");
        }
        return;
    }
    tch::set_num_threads(1);
    let group = ProcessGroup::from_env(Duration::from_secs(120), Device::Cpu).expect("the group");
    for bucket in [elements, BUCKET_ELEMENTS.min(elements)] {
        let mut buffers: Vec<Tensor> = (0..(elements + bucket - 1) / bucket)
            .map(|i| {
                Tensor::ones(
                    [bucket.min(elements - i * bucket)],
                    (Kind::Float, Device::Cpu),
                )
            })
            .collect();
        // Once untimed: the first collective sets up the connections' buffers.
        for buffer in buffers.iter_mut() {
            group
                .all_reduce(std::slice::from_mut(buffer), ReduceOp::Sum)
                .expect("all_reduce");
        }
        let started = Instant::now();
        for _ in 0..ROUNDS {
            for buffer in buffers.iter_mut() {
                group
                    .all_reduce(std::slice::from_mut(buffer), ReduceOp::Sum)
                    .expect("all_reduce");
            }
        }
        let seconds = started.elapsed().as_secs_f64() / f64::from(ROUNDS);
        if group.is_main() {
            println!(
                "all-reduce of {elements} f32 ({:.1} MB) over {ranks} ranks in {} bucket(s): {seconds:.3} s ({:.2} GB/s of gradients)",
                elements as f64 * 4e-6,
                buffers.len(),
                elements as f64 * 4e-9 / seconds
            );
        }
    }
}
