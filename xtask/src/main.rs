//! `cargo xtask setup | train | test | ci | bench`: provisions libtorch, then runs cargo
//! with the environment it needs. Every command except `setup` runs `setup` first.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool talks to its user

mod gloo_env;
mod torch_env;

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Context, Result};

const USAGE: &str = "usage: cargo xtask <command> [args…]

commands:
  setup [--nccl]  install torch 2.13.0 into HINT_TORCH_DIR (default ~/.cache/hint/torch-2.13.0)
                  unless LIBTORCH or LIBTORCH_USE_PYTORCH is set, and Gloo's headers
                  (Debian's libgloo-dev, as root) unless GLOO_INCLUDE is set; idempotent.
                  --nccl: also the CUDA headers that `--features nccl` builds need
  train [ARGS…]   build the `hint` binary (release) and train on the embedded default
                  (configs/builtin.gin); ARGS go to `hint train`, e.g. --gin.TRAIN_STEPS=100
  test [ARGS…]    the whole workspace test suite; with HINT_SHARED_DATA set, the tests
                  that need the shared data run too
  ci              cargo fmt --check, clippy -D warnings, cargo doc, then `test`
  bench [ARGS…]   criterion benches (release)";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let command = args.next();
    let rest: Vec<String> = args.collect();
    let result = match command.as_deref() {
        Some("setup") => setup().and_then(|_| {
            if rest.iter().any(|a| a == "--nccl") {
                torch_env::ensure_nccl_headers()?;
                eprintln!("xtask: NCCL's build headers are in place: build with `--features nccl`");
            }
            Ok(())
        }),
        Some("train") => train(&rest),
        Some("test") => test(&rest),
        Some("ci") => ci(),
        Some("bench") => bench(&rest),
        Some("-h" | "--help" | "help") | None => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("xtask: unknown command `{other}`\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The environment for cargo, after making sure libtorch is there.
fn setup() -> Result<Vec<(String, String)>> {
    let started = Instant::now();
    let mut vars = torch_env::ensure()?;
    let gloo = gloo_env::ensure()?;
    vars.push(("GLOO_INCLUDE".into(), gloo.display().to_string()));
    eprintln!(
        "xtask: libtorch from {}, Gloo headers from {} (checked in {:.1} s)",
        torch_env::describe()?,
        gloo.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(vars)
}

fn cargo(vars: &[(String, String)], args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("cannot run {cargo}"))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

fn test_with(vars: &[(String, String)], extra: &[String]) -> Result<()> {
    let mut args = vec!["test", "--workspace"];
    args.extend(extra.iter().map(String::as_str));
    if std::env::var_os("HINT_SHARED_DATA").is_some() {
        // Tests that need the shared data are #[ignore]d without it; with it they must run.
        if !extra.iter().any(|a| a == "--") {
            args.push("--");
        }
        args.push("--include-ignored");
        // The Super-NI subset is optional in the shared folder: its tests are skipped by
        // name, and said so, when it is absent.
        let shared = PathBuf::from(std::env::var_os("HINT_SHARED_DATA").unwrap_or_default());
        if !shared.join("superni").is_dir() {
            eprintln!(
                "xtask: {}/superni is absent: skipping the tests named `superni_shared`",
                shared.display()
            );
            args.extend(["--skip", "superni_shared"]);
        }
    } else {
        eprintln!("xtask: HINT_SHARED_DATA is not set: tests that need ../shared/data are ignored (listed as such)");
    }
    cargo(vars, &args)
}

fn test(extra: &[String]) -> Result<()> {
    let vars = setup()?;
    test_with(&vars, extra)
}

fn ci() -> Result<()> {
    let started = Instant::now();
    let vars = setup()?;
    cargo(&vars, &["fmt", "--all", "--", "--check"])?;
    cargo(
        &vars,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    let mut doc_vars = vars.clone();
    doc_vars.push(("RUSTDOCFLAGS".into(), "-D warnings".into()));
    cargo(&doc_vars, &["doc", "--workspace", "--no-deps"])?;
    test_with(&vars, &[])?;
    eprintln!(
        "xtask: ci passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn bench(extra: &[String]) -> Result<()> {
    let vars = setup()?;
    let mut args = vec!["bench", "--workspace"];
    args.extend(extra.iter().map(String::as_str));
    cargo(&vars, &args)
}

/// Builds the release `hint` and trains on the embedded default (`configs/builtin.gin`);
/// extra arguments go to `hint train` (e.g. `--gin.TRAIN_STEPS=100`).
fn train(extra: &[String]) -> Result<()> {
    let vars = setup()?;
    cargo(&vars, &["build", "--release", "--package", "hint-cli"])?;
    let hint = workspace_root().join("target/release/hint");
    let status = Command::new(&hint)
        .arg("train")
        .args(extra)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .status()
        .with_context(|| format!("cannot run {}", hint.display()))?;
    if !status.success() {
        bail!("`hint train` failed ({status})");
    }
    Ok(())
}
