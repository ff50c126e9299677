//! The model's side of the server, on one thread (libtorch tensors are not shared between
//! threads here): adaptations made once per instruction and cached, and batches of
//! generation rows that may mix tasks.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use hint_data::{HintConverter, InstructionMode};
use hint_model::generation::GenerationConfig;
use hint_model::TaskAdaptation;
use hint_train::eval::pad_rows;
use hint_train::LoadedRun;
use sha2::{Digest, Sha256};
use tch::{Device, Kind};

use crate::cache::{Adaptation, AdaptationCache};
use crate::config::ServeConfig;
use crate::error::ServeError;
use crate::metrics::Metrics;

/// Which task a request is for: an adaptation id, and the instruction's ids when the
/// request brought the instruction (so that a miss makes the adaptation).
#[derive(Debug, Clone)]
pub struct TaskRef {
    /// The content hash of the model and the instruction text.
    pub id: String,
    /// The instruction's token ids (with its demonstrations), when known.
    pub instruction: Option<Vec<i64>>,
}

/// What an adaptation request learns.
#[derive(Debug, Clone, PartialEq)]
pub struct Adapted {
    /// Its id.
    pub id: String,
    /// Tokens of the instruction the model read.
    pub tokens: usize,
    /// Bytes of the adaptation.
    pub bytes: u64,
    /// Seconds the model took (0 when it was cached).
    pub seconds: f64,
    /// Whether it came from the cache.
    pub cached: bool,
}

/// One generated output: its token ids and score (see [`hint_model::generation::Generated`]).
pub type Output = (Vec<i64>, f64);

/// The model, its converter and the adaptation cache.
pub struct Engine {
    run: LoadedRun,
    converter: HintConverter,
    cache: AdaptationCache,
    metrics: Metrics,
    device: Device,
    max_batch_rows: usize,
    /// A concatenation model's (empty) adaptation, made once.
    empty: Option<TaskAdaptation>,
}

impl Engine {
    /// An engine over a loaded run.
    pub fn new(run: LoadedRun, config: &ServeConfig, metrics: Metrics) -> Self {
        let device = run.settings.device;
        let converter = hint_train::batches::converter(&run.settings);
        let cache = AdaptationCache::new(
            config.cache_bytes,
            config.cache_dir.clone(),
            device,
            metrics.clone(),
        );
        Self {
            run,
            converter,
            cache,
            metrics,
            device,
            max_batch_rows: config.max_batch_rows.max(1),
            empty: None,
        }
    }

    /// Whether the model reads instructions through its hypernetwork (else concatenated to
    /// every input).
    pub fn is_hyper(&self) -> bool {
        self.converter.mode == InstructionMode::Hyper
    }

    /// The id of an instruction's adaptation under this model.
    pub fn id_of(model_key: &str, instruction_text: &str) -> String {
        let mut hasher = Sha256::new();
        hasher.update(model_key.as_bytes());
        hasher.update([0u8]);
        hasher.update(instruction_text.as_bytes());
        hasher
            .finalize()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The adaptation of `task`: cached, read back from the cache folder, or made from
    /// its instruction (the hypernetwork runs once).
    pub fn adaptation(&mut self, task: &TaskRef) -> Result<(Adaptation, Adapted), ServeError> {
        let looked = Instant::now();
        if let Some((adaptation, tokens)) = self.cache.get(&task.id) {
            self.metrics
                .adaptation_seconds
                .with_label_values(&["true"])
                .observe(looked.elapsed().as_secs_f64());
            let bytes = adaptation.bytes();
            return Ok((
                adaptation,
                Adapted {
                    id: task.id.clone(),
                    tokens,
                    bytes,
                    seconds: 0.0,
                    cached: true,
                },
            ));
        }
        let Some(ids) = &task.instruction else {
            return Err(ServeError::UnknownAdaptation {
                id: task.id.clone(),
            });
        };
        let started = Instant::now();
        let instruction = self.converter.model_inputs(&[1], ids).instruction;
        let adaptation = if self.is_hyper() {
            let instruction: &[i64] = if instruction.is_empty() {
                &[1]
            } else {
                &instruction
            };
            let rows = pad_rows(&[instruction], self.device);
            let model = &self.run.model;
            // The fused instruction's cross-attention keys and values are projected here,
            // once per task, instead of in every request's first decoding step.
            let made = guarded(|| {
                tch::no_grad(|| {
                    let mut made = model.adapt(&rows, false).detach();
                    model.project_instruction(&mut made);
                    made
                })
            })?;
            self.metrics.adaptations.inc();
            Adaptation::Hyper(made)
        } else {
            Adaptation::Concat(ids.clone())
        };
        let tokens = if self.is_hyper() {
            instruction.len()
        } else {
            ids.len()
        };
        self.cache.insert(&task.id, &adaptation, tokens);
        self.metrics
            .adaptation_seconds
            .with_label_values(&["false"])
            .observe(looked.elapsed().as_secs_f64());
        let bytes = adaptation.bytes();
        Ok((
            adaptation,
            Adapted {
                id: task.id.clone(),
                tokens,
                bytes,
                seconds: started.elapsed().as_secs_f64(),
                cached: false,
            },
        ))
    }

    /// The encoder rows of `inputs` for an adaptation (a concatenation model's instruction
    /// goes in front of each input).
    fn encoder_rows(&self, adaptation: &Adaptation, inputs: &[Vec<i64>]) -> Vec<Vec<i64>> {
        inputs
            .iter()
            .map(|input| match adaptation {
                Adaptation::Hyper(_) => self.converter.model_inputs(input, &[1]).encoder,
                Adaptation::Concat(instruction) => {
                    self.converter.model_inputs(input, instruction).encoder
                }
            })
            .collect()
    }

    /// The (empty) adaptation a concatenation model runs under.
    fn empty_adaptation(&mut self) -> Result<TaskAdaptation, ServeError> {
        if self.empty.is_none() {
            let rows = pad_rows(&[&[1]], self.device);
            let model = &self.run.model;
            self.empty = Some(guarded(|| tch::no_grad(|| model.adapt(&rows, false)))?);
        }
        Ok(self.empty.as_ref().expect("made above").detach())
    }

    /// Generates for every row of `rows` — (index into `tasks`, input ids) — under one
    /// generation setting, in batches of at most `max_batch_rows`: rows of one task share
    /// its adaptation; rows of several tasks get each their own (gathered) row.
    pub fn generate(
        &mut self,
        tasks: &[Adaptation],
        rows: &[(usize, Vec<i64>)],
        config: &GenerationConfig,
    ) -> Result<Vec<Output>, ServeError> {
        let mut outputs = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(self.max_batch_rows) {
            outputs.extend(self.generate_batch(tasks, chunk, config)?);
        }
        Ok(outputs)
    }

    fn generate_batch(
        &mut self,
        tasks: &[Adaptation],
        rows: &[(usize, Vec<i64>)],
        config: &GenerationConfig,
    ) -> Result<Vec<Output>, ServeError> {
        self.metrics.batch_rows.observe(rows.len() as f64);
        let encoder: Vec<Vec<i64>> = rows
            .iter()
            .flat_map(|(task, input)| self.encoder_rows(&tasks[*task], std::slice::from_ref(input)))
            .collect();
        let adaptation = self.batch_adaptation(tasks, rows)?;
        let refs: Vec<&[i64]> = encoder.iter().map(Vec::as_slice).collect();
        let inputs = pad_rows(&refs, self.device);
        let mask = inputs.ne(0).to_kind(Kind::Int64);
        let model = &self.run.model;
        let generated = guarded(|| model.generate(&inputs, &mask, &adaptation, config))?
            .map_err(|e| ServeError::Model(e.to_string()))?;
        let tokens: usize = generated.tokens.iter().map(Vec::len).sum();
        self.metrics.generated_tokens.inc_by(tokens as u64);
        Ok(generated.tokens.into_iter().zip(generated.scores).collect())
    }

    /// One adaptation for a batch: the task's own row when every row is of one task, else
    /// each row its task's row, gathered.
    fn batch_adaptation(
        &mut self,
        tasks: &[Adaptation],
        rows: &[(usize, Vec<i64>)],
    ) -> Result<TaskAdaptation, ServeError> {
        let mut used: Vec<usize> = rows.iter().map(|(t, _)| *t).collect();
        used.sort_unstable();
        used.dedup();
        let hyper: Vec<&TaskAdaptation> = used
            .iter()
            .filter_map(|&t| match &tasks[t] {
                Adaptation::Hyper(a) => Some(a),
                Adaptation::Concat(_) => None,
            })
            .collect();
        if hyper.is_empty() {
            return self.empty_adaptation();
        }
        if hyper.len() == 1 {
            return Ok(hyper[0].detach());
        }
        let picks: Vec<(usize, i64)> = rows
            .iter()
            .map(|(t, _)| (used.iter().position(|u| u == t).unwrap_or(0), 0))
            .collect();
        guarded(|| TaskAdaptation::gather(&hyper, &picks))
    }

    /// The log-likelihood of each choice of each input (rank classification).
    pub fn score(
        &mut self,
        task: &Adaptation,
        inputs: &[Vec<i64>],
        choices: &[Vec<Vec<i64>>],
    ) -> Result<Vec<Vec<f64>>, ServeError> {
        let encoder = self.encoder_rows(task, inputs);
        let adaptation = self.batch_adaptation(std::slice::from_ref(task), &[(0, Vec::new())])?;
        let mut all = Vec::with_capacity(inputs.len());
        for (input, choices) in encoder.iter().zip(choices) {
            let n = choices.len() as i64;
            let rows = pad_rows(&[input.as_slice()], self.device);
            let input = rows.expand([n, -1], false);
            let mask = input.ne(0).to_kind(Kind::Int64);
            let targets: Vec<&[i64]> = choices.iter().map(Vec::as_slice).collect();
            let targets = pad_rows(&targets, self.device);
            let model = &self.run.model;
            let (sums, _) =
                guarded(|| model.score(&input, &mask, &targets, &targets.ne(0), &adaptation))?;
            let sums = Vec::<f64>::try_from(sums.to_kind(Kind::Double).to_device(Device::Cpu))
                .map_err(|e: tch::TchError| ServeError::Model(e.to_string()))?;
            self.metrics.batch_rows.observe(n as f64);
            all.push(sums);
        }
        Ok(all)
    }
}

/// Runs `f`, turning a panic (a libtorch failure surfaces as one in tch) into a 500 for
/// this request only.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, ServeError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic".into());
        tracing::error!(%message, "the model failed on a request");
        ServeError::Model(message.lines().next().unwrap_or_default().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_on_the_model_thread_is_this_request_s_500() {
        let failed = guarded(|| -> i32 { panic!("shape mismatch in a request") }).unwrap_err();
        assert_eq!(
            failed,
            ServeError::Model("shape mismatch in a request".into())
        );
        assert_eq!(
            failed.status(),
            axum::http::StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(guarded(|| 7).unwrap(), 7);
    }

    #[test]
    fn ids_depend_on_the_model_and_the_instruction_only() {
        let a = Engine::id_of("model-a", "Sort the numbers.");
        assert_eq!(a, Engine::id_of("model-a", "Sort the numbers."));
        assert_ne!(a, Engine::id_of("model-b", "Sort the numbers."));
        assert_ne!(a, Engine::id_of("model-a", "Sort the numbers"));
        assert_eq!(a.len(), 32);
    }
}
