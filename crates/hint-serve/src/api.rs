//! The HTTP API: JSON requests, checked field by field before anything reaches the model,
//! and JSON answers.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hint_data::Vocabulary;
use hint_model::generation::{DecodeStrategy, EarlyStopping, GenerationConfig};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::ServeConfig;
use crate::engine::{Adapted, Engine, TaskRef};
use crate::error::ServeError;
use crate::metrics::Metrics;
use crate::worker::{Done, Queue, Work};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub(crate) queue: Queue,
    pub(crate) vocabulary: Arc<Vocabulary>,
    pub(crate) config: Arc<ServeConfig>,
    pub(crate) metrics: Metrics,
    pub(crate) model_key: String,
    pub(crate) hyper: bool,
    /// Tokens of an input the model reads.
    pub(crate) input_tokens: usize,
    /// Tokens of an instruction the model reads (HINT: the hypernetwork's input length;
    /// concatenation: what fits in front of an input).
    pub(crate) instruction_tokens: usize,
}

/// The router of a server with `state`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/adaptations", post(adaptations))
        .route("/v1/generate", post(generate))
        .route("/v1/score", post(score))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(state.clone(), record))
        // A panic in a handler answers 500; the server goes on.
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        // The body is read against the limit by each handler, which answers in JSON.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

/// Counts every request by endpoint and status, and times it.
async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .latency
        .with_label_values(&[endpoint.as_str()])
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .requests
        .with_label_values(&[endpoint.as_str(), response.status().as_str()])
        .inc();
    response
}

/// Reads a body of at most `limit` bytes and parses it, naming the field that does not
/// parse (`inputs[2]: invalid type: integer …`).
async fn parse<T: DeserializeOwned>(body: Body, limit: usize) -> Result<T, Response> {
    let bytes: Bytes = to_bytes(body, limit).await.map_err(|_| {
        let error = ServeError::bad("", format!("the request body is larger than {limit} bytes"));
        (StatusCode::PAYLOAD_TOO_LARGE, error).into_response()
    })?;
    let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let field = if path == "." { String::new() } else { path };
        let message = err.inner().to_string();
        ServeError::bad(field, message).into_response()
    })
}

/// One demonstration of a task.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Demonstration {
    /// An input.
    pub input: String,
    /// Its answer.
    pub output: String,
}

/// `POST /v1/adaptations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptRequest {
    /// The task's instruction.
    pub instruction: String,
    /// Examples of the task, read by the hypernetwork before the instruction.
    #[serde(default)]
    pub demonstrations: Vec<Demonstration>,
}

/// The answer to `POST /v1/adaptations`.
#[derive(Debug, Serialize, Deserialize)]
pub struct AdaptResponse {
    /// The adaptation's id: a hash of the model and the instruction with its
    /// demonstrations, the same every time.
    pub id: String,
    /// Tokens of the instruction the model read.
    pub tokens: usize,
    /// Bytes the adaptation holds.
    pub bytes: u64,
    /// Milliseconds the model spent (0 when it was cached).
    pub ms: f64,
    /// Whether it was cached.
    pub cached: bool,
}

/// `POST /v1/generate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    /// The task's instruction (or `adaptation_id`).
    pub instruction: Option<String>,
    /// Its demonstrations.
    #[serde(default)]
    pub demonstrations: Vec<Demonstration>,
    /// An id from `POST /v1/adaptations` (or `instruction`).
    pub adaptation_id: Option<String>,
    /// The inputs, each answered.
    pub inputs: Vec<String>,
    /// At most this many new tokens.
    pub max_new_tokens: Option<i64>,
    /// At least this many new tokens.
    pub min_new_tokens: Option<i64>,
    /// Beam search with this many beams (1: greedy).
    pub num_beams: Option<i64>,
    /// Sampling temperature (sampling when given).
    pub temperature: Option<f64>,
    /// Sampling: keep the k most likely tokens.
    pub top_k: Option<i64>,
    /// Sampling: keep the most likely tokens up to this probability.
    pub top_p: Option<f64>,
    /// Sampling: the seed.
    pub seed: Option<i64>,
}

/// One generated answer.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct GenerateOutput {
    /// The text.
    pub text: String,
    /// Its token ids.
    pub tokens: Vec<i64>,
    /// Greedy and sampling: the summed log-probability; beams: the beam score.
    pub score: f64,
}

/// The answer to `POST /v1/generate`.
#[derive(Debug, Serialize, Deserialize)]
pub struct GenerateResponse {
    /// The task's adaptation.
    pub adaptation_id: String,
    /// One per input, in order.
    pub outputs: Vec<GenerateOutput>,
}

/// The choices of `POST /v1/score`: one list for every input, or a list per input.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Choices {
    /// The same choices for every input.
    Shared(Vec<String>),
    /// Each input's own.
    PerInput(Vec<Vec<String>>),
}

/// `POST /v1/score`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreRequest {
    /// The task's instruction (or `adaptation_id`).
    pub instruction: Option<String>,
    /// Its demonstrations.
    #[serde(default)]
    pub demonstrations: Vec<Demonstration>,
    /// An id from `POST /v1/adaptations` (or `instruction`).
    pub adaptation_id: Option<String>,
    /// The inputs.
    pub inputs: Vec<String>,
    /// Their answer choices.
    pub choices: Choices,
}

/// The answer to `POST /v1/score`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ScoreResponse {
    /// The task's adaptation.
    pub adaptation_id: String,
    /// Each input's choices' log-likelihoods (summed over their tokens).
    pub scores: Vec<Vec<f64>>,
    /// Each input's most likely choice (rank classification).
    pub best: Vec<usize>,
}

/// How the hypernetwork reads an instruction with demonstrations: each demonstration as
/// `Input: …\nOutput: …\n\n`, then `Definition: <instruction>` (the built-in suite's
/// few-shot format); without demonstrations, the instruction alone.
pub fn instruction_text(instruction: &str, demonstrations: &[Demonstration]) -> String {
    if demonstrations.is_empty() {
        return instruction.to_string();
    }
    let mut text = String::new();
    for demo in demonstrations {
        text.push_str(&format!(
            "Input: {}\nOutput: {}\n\n",
            demo.input, demo.output
        ));
    }
    text.push_str(&format!("Definition: {instruction}"));
    text
}

impl AppState {
    fn tokens(&self, field: &str, text: &str) -> Result<Vec<i64>, ServeError> {
        self.vocabulary
            .encode(text)
            .map(|ids| ids.into_iter().map(i64::from).collect())
            .map_err(|e| ServeError::bad(field, format!("cannot tokenize: {e}")))
    }

    /// The task's reference, with the instruction's ids when it came with the request.
    fn task(
        &self,
        instruction: &str,
        demonstrations: &[Demonstration],
    ) -> Result<TaskRef, ServeError> {
        let limits = &self.config.limits;
        if instruction.trim().is_empty() {
            return Err(ServeError::bad("instruction", "is empty"));
        }
        if demonstrations.len() > limits.max_demonstrations {
            return Err(ServeError::bad(
                "demonstrations",
                format!(
                    "{} demonstrations; at most {}",
                    demonstrations.len(),
                    limits.max_demonstrations
                ),
            ));
        }
        let text = instruction_text(instruction, demonstrations);
        let ids = self.tokens("instruction", &text)?;
        let most = self.instruction_tokens.min(limits.max_instruction_tokens);
        if ids.len() > most {
            return Err(ServeError::bad(
                "instruction",
                format!(
                    "{} tokens with its demonstrations; the model reads at most {most} (longer instructions are refused, not cut)",
                    ids.len()
                ),
            ));
        }
        Ok(TaskRef {
            id: Engine::id_of(&self.model_key, &text),
            instruction: Some(ids),
        })
    }

    /// The task of a request: an instruction (adapted to once, then cached) or a known
    /// adaptation.
    fn task_of(
        &self,
        instruction: &Option<String>,
        demonstrations: &[Demonstration],
        adaptation_id: &Option<String>,
    ) -> Result<TaskRef, ServeError> {
        match (instruction, adaptation_id) {
            (Some(instruction), None) => self.task(instruction, demonstrations),
            (None, Some(id)) => {
                if !demonstrations.is_empty() {
                    return Err(ServeError::bad(
                        "demonstrations",
                        "belong to an instruction; an adaptation_id already includes them",
                    ));
                }
                if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(ServeError::bad(
                        "adaptation_id",
                        "is not an adaptation id (32 hex digits)",
                    ));
                }
                Ok(TaskRef {
                    id: id.to_ascii_lowercase(),
                    instruction: None,
                })
            }
            (Some(_), Some(_)) => Err(ServeError::bad(
                "adaptation_id",
                "give either `instruction` or `adaptation_id`, not both",
            )),
            (None, None) => Err(ServeError::bad(
                "instruction",
                "missing: give `instruction` (with optional `demonstrations`) or `adaptation_id`",
            )),
        }
    }

    fn inputs(&self, inputs: &[String]) -> Result<Vec<Vec<i64>>, ServeError> {
        let limits = &self.config.limits;
        if inputs.is_empty() {
            return Err(ServeError::bad("inputs", "is empty"));
        }
        if inputs.len() > limits.max_inputs {
            return Err(ServeError::bad(
                "inputs",
                format!(
                    "{} inputs; at most {} per request",
                    inputs.len(),
                    limits.max_inputs
                ),
            ));
        }
        inputs
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let field = format!("inputs[{i}]");
                let ids = self.tokens(&field, text)?;
                if ids.len() > self.input_tokens {
                    return Err(ServeError::bad(
                        field,
                        format!(
                            "{} tokens; the model reads at most {} (hint.train.Run.lengths)",
                            ids.len(),
                            self.input_tokens
                        ),
                    ));
                }
                Ok(ids)
            })
            .collect()
    }

    fn generation(&self, request: &GenerateRequest) -> Result<GenerationConfig, ServeError> {
        let limits = &self.config.limits;
        let max_new_tokens = request.max_new_tokens.unwrap_or(
            self.config
                .default_max_new_tokens
                .min(limits.max_new_tokens),
        );
        if !(1..=limits.max_new_tokens).contains(&max_new_tokens) {
            return Err(ServeError::bad(
                "max_new_tokens",
                format!("{max_new_tokens}; between 1 and {}", limits.max_new_tokens),
            ));
        }
        let min_new_tokens = request.min_new_tokens.unwrap_or(0);
        if !(0..=max_new_tokens).contains(&min_new_tokens) {
            return Err(ServeError::bad(
                "min_new_tokens",
                format!("{min_new_tokens}; between 0 and max_new_tokens ({max_new_tokens})"),
            ));
        }
        let beams = request.num_beams.unwrap_or(1);
        if !(1..=limits.max_beams).contains(&beams) {
            return Err(ServeError::bad(
                "num_beams",
                format!("{beams}; between 1 and {}", limits.max_beams),
            ));
        }
        let sampling = request.temperature.is_some()
            || request.top_k.is_some()
            || request.top_p.is_some()
            || request.seed.is_some();
        let strategy =
            match (beams, sampling) {
                (1, false) => DecodeStrategy::Greedy,
                (_, false) => DecodeStrategy::Beam {
                    num_beams: beams,
                    length_penalty: 1.0,
                    early_stopping: EarlyStopping::Heuristic,
                },
                (1, true) => {
                    let temperature = request.temperature.unwrap_or(1.0);
                    if !(temperature > 0.0 && temperature.is_finite()) {
                        return Err(ServeError::bad(
                            "temperature",
                            format!("{temperature}; above 0"),
                        ));
                    }
                    let top_k = request.top_k.unwrap_or(0);
                    if top_k < 0 {
                        return Err(ServeError::bad(
                            "top_k",
                            format!("{top_k}; 0 (all) or more"),
                        ));
                    }
                    let top_p = request.top_p.unwrap_or(1.0);
                    if !(top_p > 0.0 && top_p <= 1.0) {
                        return Err(ServeError::bad(
                            "top_p",
                            format!("{top_p}; above 0, at most 1"),
                        ));
                    }
                    DecodeStrategy::Sample {
                        temperature,
                        top_k,
                        top_p,
                        seed: request.seed.unwrap_or(0),
                    }
                }
                (_, true) => return Err(ServeError::bad(
                    "num_beams",
                    "beam search does not sample: drop num_beams, or temperature/top_k/top_p/seed",
                )),
            };
        Ok(GenerationConfig {
            max_new_tokens,
            min_new_tokens,
            strategy,
        })
    }

    async fn run(&self, work: Work) -> Result<Done, ServeError> {
        let receiver = self.queue.submit(work)?;
        receiver.await.map_err(|_| ServeError::ShuttingDown)?
    }

    fn text(&self, tokens: &[i64]) -> String {
        let ids: Vec<u32> = tokens
            .iter()
            .filter_map(|&t| u32::try_from(t).ok())
            .collect();
        self.vocabulary.decode(&ids).unwrap_or_default()
    }
}

fn adapted_response(adapted: Adapted) -> AdaptResponse {
    AdaptResponse {
        id: adapted.id,
        tokens: adapted.tokens,
        bytes: adapted.bytes,
        ms: adapted.seconds * 1e3,
        cached: adapted.cached,
    }
}

fn unexpected(done: Done) -> ServeError {
    ServeError::Model(format!(
        "the model answered another request's kind: {done:?}"
    ))
}

async fn adaptations(State(state): State<AppState>, body: Body) -> Response {
    let request: AdaptRequest = match parse(body, state.config.limits.max_body_bytes).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let answer = async {
        let task = state.task(&request.instruction, &request.demonstrations)?;
        match state.run(Work::Adapt(task)).await? {
            Done::Adapted(adapted) => Ok(Json(adapted_response(adapted))),
            other => Err(unexpected(other)),
        }
    };
    answer.await.into_response()
}

async fn generate(State(state): State<AppState>, body: Body) -> Response {
    let request: GenerateRequest = match parse(body, state.config.limits.max_body_bytes).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let answer = async {
        let task = state.task_of(
            &request.instruction,
            &request.demonstrations,
            &request.adaptation_id,
        )?;
        let inputs = state.inputs(&request.inputs)?;
        let config = state.generation(&request)?;
        match state
            .run(Work::Generate {
                task,
                inputs,
                config,
            })
            .await?
        {
            Done::Generated(adapted, outputs) => Ok(Json(GenerateResponse {
                adaptation_id: adapted.id,
                outputs: outputs
                    .into_iter()
                    .map(|(tokens, score)| GenerateOutput {
                        text: state.text(&tokens),
                        tokens,
                        score,
                    })
                    .collect(),
            })),
            other => Err(unexpected(other)),
        }
    };
    answer.await.into_response()
}

async fn score(State(state): State<AppState>, body: Body) -> Response {
    let request: ScoreRequest = match parse(body, state.config.limits.max_body_bytes).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let answer = async {
        let task = state.task_of(
            &request.instruction,
            &request.demonstrations,
            &request.adaptation_id,
        )?;
        let inputs = state.inputs(&request.inputs)?;
        let per_input: Vec<(String, &Vec<String>)> = match &request.choices {
            Choices::Shared(choices) => (0..inputs.len())
                .map(|_| ("choices".to_string(), choices))
                .collect(),
            Choices::PerInput(lists) => {
                if lists.len() != inputs.len() {
                    return Err(ServeError::bad(
                        "choices",
                        format!(
                            "{} lists of choices for {} inputs",
                            lists.len(),
                            inputs.len()
                        ),
                    ));
                }
                lists
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (format!("choices[{i}]"), c))
                    .collect()
            }
        };
        let limits = &state.config.limits;
        let mut choices = Vec::with_capacity(per_input.len());
        for (field, list) in per_input {
            if list.is_empty() || list.len() > limits.max_choices {
                return Err(ServeError::bad(
                    field,
                    format!(
                        "{} choices; between 1 and {}",
                        list.len(),
                        limits.max_choices
                    ),
                ));
            }
            let ids = list
                .iter()
                .enumerate()
                .map(|(j, text)| state.tokens(&format!("{field}[{j}]"), text))
                .collect::<Result<Vec<_>, _>>()?;
            choices.push(ids);
        }
        match state
            .run(Work::Score {
                task,
                inputs,
                choices,
            })
            .await?
        {
            Done::Scored(adapted, scores) => {
                let best = scores
                    .iter()
                    .map(|row| {
                        row.iter()
                            .enumerate()
                            .max_by(|a, b| a.1.total_cmp(b.1))
                            .map_or(0, |(i, _)| i)
                    })
                    .collect();
                Ok(Json(ScoreResponse {
                    adaptation_id: adapted.id,
                    scores,
                    best,
                }))
            }
            other => Err(unexpected(other)),
        }
    };
    answer.await.into_response()
}

#[derive(Serialize)]
struct Health<'a> {
    status: &'static str,
    model: &'a str,
    mode: &'static str,
    queued: i64,
}

async fn health(State(state): State<AppState>) -> Response {
    Json(Health {
        status: "ok",
        model: &state.model_key,
        mode: if state.hyper { "hint" } else { "concatenation" },
        queued: state.metrics.queued.get(),
    })
    .into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
