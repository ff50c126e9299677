//! hint-serve: HINT's inference server. A task's instruction is adapted to once — the
//! hypernetwork runs, and the generated modules are cached (bounded in bytes, optionally on
//! disk) under an id that is a hash of the model and the instruction — and every instance
//! of the task reuses them. Requests are batched for a few milliseconds on the model's
//! thread; rows of one task share its adaptation, rows of several tasks get each their
//! own. A model trained to read the instruction concatenated to its input (the baseline),
//! or a plain Hugging Face T5 directory, is served by the same API, so the two compare
//! under one client.
//!
//! Endpoints: `POST /v1/adaptations`, `POST /v1/generate`, `POST /v1/score`,
//! `GET /health`, `GET /metrics` (Prometheus). Every request is checked field by field
//! (a 4xx names the field); limits bound what a request can make the server allocate; a
//! failure in one request answers 500 and the server goes on; [`Server::run`] drains
//! in-flight requests when its shutdown signal comes.

mod api;
mod cache;
mod config;
mod engine;
mod error;
mod metrics;
mod worker;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use hint_train::{load_run, Overrides};

pub use api::{
    instruction_text, AdaptRequest, AdaptResponse, Choices, Demonstration, GenerateOutput,
    GenerateRequest, GenerateResponse, ScoreRequest, ScoreResponse,
};
pub use config::{Limits, ServeConfig};
pub use error::ServeError;
pub use metrics::Metrics;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The model directory could not be loaded.
    #[error(transparent)]
    Model(#[from] hint_train::TrainError),
    /// The cache folder could not be made.
    #[error("cache folder {path}: {source}")]
    CacheDir {
        /// The folder.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The model's thread could not start, or the socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What the requests' side learns from the loaded model.
struct Known {
    model_key: String,
    vocabulary: Arc<hint_data::Vocabulary>,
    lengths: hint_data::FeatureLengths,
    hyper: bool,
}

/// A loaded model with its queue, ready to serve on a listener.
pub struct Server {
    state: api::AppState,
    thread: std::thread::JoinHandle<()>,
}

impl Server {
    /// Loads `checkpoint` (or the newest) of the `hint train` run in `model_dir` (or the
    /// Hugging Face T5 there, as the concatenation baseline: [`hint_train::load_run`]) —
    /// `overrides` as `hint eval` takes them, e.g. `hint.train.Run.device` — and starts
    /// the model's thread.
    pub fn load(
        model_dir: &Path,
        checkpoint: Option<&Path>,
        overrides: &Overrides,
        config: ServeConfig,
    ) -> Result<Self, StartError> {
        if let Some(dir) = &config.cache_dir {
            std::fs::create_dir_all(dir).map_err(|source| StartError::CacheDir {
                path: dir.clone(),
                source,
            })?;
        }
        let metrics = Metrics::new();
        let (model_dir, checkpoint, overrides) = (
            model_dir.to_path_buf(),
            checkpoint.map(Path::to_path_buf),
            overrides.clone(),
        );
        let engine_config = config.clone();
        let engine_metrics = metrics.clone();
        let build = move || -> Result<(engine::Engine, Known), StartError> {
            let run = load_run(&model_dir, checkpoint.as_deref(), &overrides)?;
            let known = Known {
                model_key: model_key(&run),
                vocabulary: Arc::clone(&run.data.vocabulary),
                lengths: run.settings.run.lengths,
                hyper: run.settings.run.instruction_mode == hint_data::InstructionMode::Hyper,
            };
            let engine = engine::Engine::new(run, &engine_config, engine_metrics);
            Ok((engine, known))
        };
        let (queue, known, thread) = worker::start(
            build,
            config.limits.max_queue,
            config.batch_window,
            config.max_batch_rows,
            metrics.clone(),
        )??;
        let Known {
            model_key,
            vocabulary,
            lengths,
            hyper,
        } = known;
        let state = api::AppState {
            queue,
            vocabulary,
            metrics,
            model_key,
            hyper,
            input_tokens: lengths.inputs,
            instruction_tokens: lengths.hyper_inputs,
            config: Arc::new(config),
        };
        Ok(Self { state, thread })
    }

    /// The model's identity in adaptation ids (a hash of its configuration and
    /// checkpoint).
    pub fn model_key(&self) -> &str {
        &self.state.model_key
    }

    /// Serves on `listener` until `shutdown` completes, then lets the requests in flight
    /// finish (new connections are refused) and stops the model's thread once its queue
    /// is empty.
    pub async fn run(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let app = api::router(self.state);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await?;
        // The router (and every queue handle with it) is gone: the model's thread ends
        // after what is queued.
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(std::io::Error::other)?
            .map_err(|_| std::io::Error::other("the model's thread panicked"))?;
        Ok(())
    }
}

/// A hash of what the model is: its configuration and checkpoint (name, size and time of
/// its parameters), so that another model never reads this one's cached adaptations.
fn model_key(run: &hint_train::LoadedRun) -> String {
    let parameters = run.checkpoint.join("model.safetensors");
    let stamp = std::fs::metadata(&parameters)
        .map(|m| {
            let modified = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            format!("{}:{modified}", m.len())
        })
        .unwrap_or_default();
    engine::Engine::id_of(
        &run.settings.config_text,
        &format!("{}|{stamp}", run.checkpoint.display()),
    )
}
