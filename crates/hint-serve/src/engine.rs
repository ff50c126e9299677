//! The model's side of the server, on one thread (libtorch tensors are not shared between
//! threads here): adaptations made once per instruction and cached, and batches of
//! generation rows that may mix tasks.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use hint_data::{HintConverter, InstructionMode};
use hint_model::generation::GenerationConfig;
use hint_model::TaskAdaptation;
use hint_train::eval::pad_rows;
use hint_train::LoadedRun;
use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

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
            let made = self.hypernetwork_pass(&[&instruction])?;
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
        let seconds = started.elapsed().as_secs_f64();
        let adapted = self.keep_made(
            &task.id,
            &adaptation,
            tokens,
            seconds,
            looked.elapsed().as_secs_f64(),
        );
        Ok((adaptation, adapted))
    }

    /// Caches an adaptation just made (`seconds` of model time, `lookup_seconds` for the
    /// request's whole lookup) and says what its request learns.
    fn keep_made(
        &mut self,
        id: &str,
        adaptation: &Adaptation,
        tokens: usize,
        seconds: f64,
        lookup_seconds: f64,
    ) -> Adapted {
        self.cache.insert(id, adaptation, tokens);
        self.metrics
            .adaptation_seconds
            .with_label_values(&["false"])
            .observe(lookup_seconds);
        Adapted {
            id: id.to_string(),
            tokens,
            bytes: adaptation.bytes(),
            seconds,
            cached: false,
        }
    }

    /// Makes the adaptations of `tasks` that are neither cached nor in the cache folder,
    /// instructions of similar lengths in one pass of the hypernetwork (padded to the
    /// longest, each task's adaptation then cut to its own length), and caches them: a
    /// batch of requests for new tasks with short instructions costs about one pass
    /// instead of one each. Only for a model whose
    /// instruction encoder masks padding (`hyperencoder_mask_padding`, the default), where
    /// the padded pass gives each task the adaptation it gets alone, and only for two
    /// tasks or more; the rest are left to [`Engine::adaptation`]. Returns each task made
    /// here with what its request learns (its seconds: its share of the pass).
    pub fn adapt_new_tasks(
        &mut self,
        tasks: &[&TaskRef],
    ) -> Result<HashMap<String, (Adaptation, Adapted)>, ServeError> {
        let mut made = HashMap::new();
        if !self.is_hyper() || !self.run.model.config.hyperencoder_mask_padding {
            return Ok(made);
        }
        let mut new: Vec<(&str, Vec<i64>)> = Vec::new();
        for task in tasks {
            let Some(ids) = &task.instruction else {
                continue;
            };
            if self.cache.contains(&task.id) || new.iter().any(|(id, _)| *id == task.id) {
                continue;
            }
            let instruction = self.converter.model_inputs(&[1], ids).instruction;
            new.push((&task.id, instruction));
        }
        if new.len() < 2 {
            return Ok(made);
        }
        for group in similar_lengths(new) {
            self.adapt_in_one_pass(&group, &mut made)?;
        }
        Ok(made)
    }

    /// The adaptations of `instructions` (one row each, padded to the longest; an empty
    /// one reads the end-of-sequence token alone) from one pass of the hypernetwork, the
    /// fused instruction's cross-attention keys and values projected here, once per task,
    /// instead of in every request's first decoding step.
    fn hypernetwork_pass(&self, instructions: &[&[i64]]) -> Result<TaskAdaptation, ServeError> {
        let rows: Vec<&[i64]> = instructions
            .iter()
            .map(|&i| if i.is_empty() { &[1][..] } else { i })
            .collect();
        let rows = pad_rows(&rows, self.device);
        let model = &self.run.model;
        let made = guarded(|| {
            tch::no_grad(|| {
                let mut made = model.adapt(&rows, false).detach();
                model.project_instruction(&mut made);
                made
            })
        })?;
        self.metrics.adaptation_passes.inc();
        Ok(made)
    }

    /// One pass of the hypernetwork over `group`'s instructions (padded to the longest);
    /// each task's adaptation, cut to its own instruction, cached and added to `made`.
    fn adapt_in_one_pass(
        &mut self,
        group: &[(&str, Vec<i64>)],
        made: &mut HashMap<String, (Adaptation, Adapted)>,
    ) -> Result<(), ServeError> {
        let started = Instant::now();
        let instructions: Vec<&[i64]> = group.iter().map(|(_, i)| i.as_slice()).collect();
        let together = self.hypernetwork_pass(&instructions)?;
        let seconds = started.elapsed().as_secs_f64() / group.len() as f64;
        for (row, (id, instruction)) in group.iter().enumerate() {
            let index = Tensor::from_slice(&[row as i64]).to_device(self.device);
            let adaptation = Adaptation::Hyper(guarded(|| {
                together.select_rows(&index).without_instruction_padding()
            })?);
            self.metrics.cache_misses.inc();
            self.metrics.adaptations.inc();
            let adapted = self.keep_made(id, &adaptation, instruction.len(), seconds, seconds);
            made.insert(id.to_string(), (adaptation, adapted));
        }
        Ok(())
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

/// `tasks` (id, instruction) in groups of similar instruction lengths, shortest first: a
/// group takes the next (longer) instruction while padding every member to it adds at
/// most a quarter to the tokens the group reads, so that a short instruction is not
/// padded to a long one's length (a pass over padding costs as much as over tokens).
fn similar_lengths(mut tasks: Vec<(&str, Vec<i64>)>) -> Vec<Vec<(&str, Vec<i64>)>> {
    tasks.sort_by_key(|(_, instruction)| instruction.len());
    let mut groups: Vec<Vec<(&str, Vec<i64>)>> = Vec::new();
    let mut tokens = 0;
    for task in tasks {
        let len = task.1.len().max(1);
        match groups.last_mut() {
            Some(group) if 4 * (group.len() + 1) * len <= 5 * (tokens + len) => {
                tokens += len;
                group.push(task);
            }
            _ => {
                tokens = len;
                groups.push(vec![task]);
            }
        }
    }
    groups
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
    fn new_tasks_are_adapted_together_only_with_instructions_of_similar_lengths() {
        let tasks: Vec<(&str, Vec<i64>)> = [("a", 20), ("b", 5), ("c", 6), ("d", 5), ("e", 100)]
            .into_iter()
            .map(|(id, len)| (id, vec![7; len]))
            .collect();
        let groups: Vec<Vec<&str>> = similar_lengths(tasks)
            .iter()
            .map(|g| g.iter().map(|(id, _)| *id).collect())
            .collect();
        // 5, 5, 6 padded to 6 read 18 tokens for 16; 20 padded with them would read 80 for 36.
        assert_eq!(groups, [vec!["b", "d", "c"], vec!["a"], vec!["e"]]);
    }

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
