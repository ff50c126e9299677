//! `hint launch`: N local ranks of a `hint` command without Python, as
//! `torchrun --standalone --nproc-per-node=N --no-python hint …` would start them: the
//! same variables (`RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `LOCAL_WORLD_SIZE`, `GROUP_RANK`,
//! `MASTER_ADDR`, `MASTER_PORT`), rank 0 serving the store, one thread pool share per
//! rank. Across machines it is torchrun's static rendezvous: the same command on each,
//! with `--nnodes`, its own `--node_rank`, and the master's address and port.

use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::progress::StopFlag;

/// Arguments of `hint launch`.
#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// Processes on this machine (torchrun's `--nproc-per-node`).
    #[arg(long = "nproc_per_node", alias = "nproc-per-node", default_value_t = 2)]
    nproc_per_node: usize,
    /// Machines in the run, each running this same command (torchrun's `--nnodes`).
    #[arg(long = "nnodes", default_value_t = 1)]
    nnodes: usize,
    /// This machine's place among them, 0 for the one that serves the store
    /// (torchrun's `--node-rank`).
    #[arg(long = "node_rank", alias = "node-rank", default_value_t = 0)]
    node_rank: usize,
    /// The address of node 0, which serves the store (default 127.0.0.1; needed with
    /// `--nnodes` above 1).
    #[arg(long = "master_addr", alias = "master-addr")]
    master_addr: Option<String>,
    /// The store's port (default: a free one; needed with `--nnodes` above 1).
    #[arg(long = "master_port", alias = "master-port")]
    master_port: Option<u16>,
    /// The `hint` command each rank runs, e.g. `train --gin_file=…`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")
        .context("finding a free port for the store")?
        .local_addr()?
        .port())
}

fn signal(child: &Child, name: &str) {
    // `-s NAME -- PID`: the unambiguous form (procps-ng misreads negative ids after a
    // signal option; this id is positive, but the form costs nothing).
    let _ = Command::new("kill")
        .args(["-s", name, "--", &child.id().to_string()])
        .status();
}

/// `hint launch`: exits with the first failing rank's code (the others are stopped), or 0
/// once every rank succeeded.
pub fn launch(args: &LaunchArgs) -> Result<ExitCode> {
    let local = args.nproc_per_node;
    if local == 0 || args.nnodes == 0 {
        bail!("--nproc_per_node and --nnodes must be at least 1");
    }
    if args.node_rank >= args.nnodes {
        bail!(
            "--node_rank {} is not below --nnodes {}",
            args.node_rank,
            args.nnodes
        );
    }
    let world = local * args.nnodes;
    let port = match (args.master_port, args.nnodes) {
        (Some(port), _) => port,
        (None, 1) => free_port()?,
        (None, _) => bail!("a run on {} machines needs --master_port (and --master_addr): every machine must name the same store", args.nnodes),
    };
    let master = match (&args.master_addr, args.nnodes) {
        (Some(addr), _) => addr.clone(),
        (None, 1) => "127.0.0.1".to_string(),
        (None, _) => bail!(
            "a run on {} machines needs --master_addr, the address of node 0",
            args.nnodes
        ),
    };
    let exe = std::env::current_exe().context("finding the hint binary")?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / local).max(1).to_string();
    let stop = StopFlag::install()?;
    let mut children = Vec::with_capacity(local);
    for local_rank in 0..local {
        let rank = args.node_rank * local + local_rank;
        let mut command = Command::new(&exe);
        command
            .args(&args.command)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", local_rank.to_string())
            .env("GROUP_RANK", args.node_rank.to_string())
            .env("WORLD_SIZE", world.to_string())
            .env("LOCAL_WORLD_SIZE", local.to_string())
            .env("MASTER_ADDR", &master)
            .env("MASTER_PORT", port.to_string())
            .env_remove("TORCHELASTIC_USE_AGENT_STORE");
        if std::env::var_os("OMP_NUM_THREADS").is_none() {
            // As torchrun does: N ranks on one machine share its cores.
            command.env("OMP_NUM_THREADS", &threads);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting rank {rank}"))?;
        children.push(Some(child));
    }
    tracing::info!(world, node = args.node_rank, master = %master, port, "launched");
    let mut forwarded = false;
    let mut failed: Option<(usize, i32)> = None;
    loop {
        for (rank, slot) in children.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            if let Some(status) = child.try_wait()? {
                *slot = None;
                // After a forwarded Ctrl-C, 130 is each rank's clean "interrupted".
                let interrupted = forwarded && status.code() == Some(130);
                if !status.success() && !interrupted && failed.is_none() {
                    failed = Some((rank, status.code().unwrap_or(1)));
                }
            }
        }
        if children.iter().all(Option::is_none) {
            break;
        }
        if let Some((rank, code)) = failed {
            let rank = args.node_rank * local + rank;
            tracing::error!(rank, code, "a rank failed; stopping the others");
            stop_all(&mut children);
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
        }
        if stop.is_set() && !forwarded {
            // Each rank checkpoints at the same step (they agree on stopping).
            for child in children.iter().flatten() {
                signal(child, "INT");
            }
            forwarded = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(match failed {
        Some((_, code)) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None if forwarded => ExitCode::from(130),
        None => ExitCode::SUCCESS,
    })
}

/// SIGTERM, then SIGKILL for what is still running after a few seconds.
fn stop_all(children: &mut [Option<Child>]) {
    for child in children.iter().flatten() {
        signal(child, "TERM");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for child in children.iter_mut().flatten() {
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
