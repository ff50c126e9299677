//! `hint serve`: a trained run behind an HTTP API (hint-serve), until SIGTERM or Ctrl-C,
//! which drain the requests in flight.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use hint_serve::{Limits, ServeConfig, Server};
use hint_train::Overrides;

use crate::gin_args::GinArgs;

/// Arguments of `hint serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The model directory of a `hint train` run (HINT, or a concatenation baseline), or a
    /// Hugging Face T5 directory (`config.json`, `model.safetensors`, `tokenizer.json`),
    /// served as the concatenation baseline.
    #[arg(long = "model_dir")]
    model_dir: PathBuf,
    /// A checkpoint folder (default: the newest in the model directory).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// `cpu`, `cuda`, `cuda:N` or `auto` (default: the run's `Run.device`).
    #[arg(long)]
    device: Option<String>,
    /// Bytes of adaptations kept in memory, e.g. `1GB`.
    #[arg(long = "cache_bytes", value_parser = crate::plan_cmd::parse_bytes, default_value = "1GB")]
    cache_bytes: u64,
    /// A folder the adaptations are also written to, so that a restart starts warm.
    #[arg(long = "cache_dir")]
    cache_dir: Option<PathBuf>,
    /// Milliseconds a request waits for others to batch with.
    #[arg(long = "batch_window_ms", default_value_t = 5)]
    batch_window_ms: u64,
    /// The most input rows in one batched forward pass.
    #[arg(long = "max_batch_rows", default_value_t = 64)]
    max_batch_rows: usize,
    /// Inputs of one request.
    #[arg(long = "max_inputs", default_value_t = Limits::default().max_inputs)]
    max_inputs: usize,
    /// New tokens one request may ask for.
    #[arg(long = "max_new_tokens", default_value_t = Limits::default().max_new_tokens)]
    max_new_tokens: i64,
    /// New tokens when a request does not say.
    #[arg(long = "default_max_new_tokens", default_value_t = 64)]
    default_max_new_tokens: i64,
    /// Bytes of a request body.
    #[arg(long = "max_body_bytes", default_value_t = Limits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Requests waiting for the model before new ones get a 503.
    #[arg(long = "max_queue", default_value_t = Limits::default().max_queue)]
    max_queue: usize,
    /// Gin files and bindings applied after the run's `config.gin`, as `hint eval` takes.
    #[command(flatten)]
    gin: GinArgs,
}

/// Completes on SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the server still stops when killed.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining the requests in flight"),
        _ = int.recv() => tracing::info!("SIGINT: draining the requests in flight"),
    }
}

/// `hint serve`.
pub fn serve(args: &ServeArgs) -> Result<ExitCode> {
    let mut bindings = args.gin.gin_bindings.clone();
    if let Some(device) = &args.device {
        bindings.push(format!("hint.train.Run.device = \"{device}\""));
    }
    let overrides = Overrides {
        files: args.gin.gin_files.clone(),
        search_paths: args.gin.gin_search_paths.clone(),
        bindings,
    };
    let config = ServeConfig {
        limits: Limits {
            max_body_bytes: args.max_body_bytes,
            max_inputs: args.max_inputs,
            max_new_tokens: args.max_new_tokens,
            max_queue: args.max_queue,
            ..Limits::default()
        },
        batch_window: Duration::from_millis(args.batch_window_ms),
        max_batch_rows: args.max_batch_rows,
        cache_bytes: args.cache_bytes,
        cache_dir: args.cache_dir.clone(),
        default_max_new_tokens: args.default_max_new_tokens,
    };
    let server = Server::load(
        &args.model_dir,
        args.checkpoint.as_deref(),
        &overrides,
        config,
    )
    .with_context(|| format!("loading {}", args.model_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the server's runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.bind)
            .await
            .with_context(|| format!("listening on {}", args.bind))?;
        let address = listener.local_addr()?;
        tracing::info!(%address, model = server.model_key(), "serving");
        // One line on stdout for whoever started us (a bound port 0 says which it got).
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{address}")?;
        out.flush()?;
        drop(out);
        server.run(listener, stop_signal()).await?;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}
