//! Evaluation (t5x's `eval`): per task, the instruction is adapted once and the instances
//! are decoded in batches; predictions are scored with the Super-NaturalInstructions
//! metrics (exact match, ROUGE-L) or by rank classification over answer choices.

use std::collections::BTreeMap;
use std::time::Instant;

use hint_data::metrics::{argmax, superni_scores};
use hint_model::generation::GenerationConfig;
use hint_model::HyperT5;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::error::{Result, TrainError};

/// One instance to evaluate: token ids of the input, and either references (generation)
/// or answer choices (rank classification).
#[derive(Debug, Clone, PartialEq)]
pub struct EvalExample {
    /// Encoder input ids (EOS included).
    pub input: Vec<i64>,
    /// Reference answers (generation tasks).
    pub references: Vec<String>,
    /// Tokenized answer choices and the index of the right one (rank classification).
    pub choices: Option<(Vec<Vec<i64>>, usize)>,
}

/// The instances of one task with its instruction.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalTask {
    /// Task name.
    pub name: String,
    /// Instruction ids for the hypernetwork (EOS included); may be empty for models that
    /// take no instruction.
    pub instruction: Vec<i64>,
    /// Instances.
    pub examples: Vec<EvalExample>,
}

/// Evaluation settings, bindable from gin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Instances per decoding batch.
    pub batch_size: usize,
    /// Longest generated answer.
    pub max_new_tokens: i64,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            batch_size: 64,
            max_new_tokens: 32,
        }
    }
}

/// The scores of one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// Task name.
    pub task: String,
    /// Instances scored.
    pub examples: usize,
    /// Exact match × 100 (generation tasks).
    pub exact_match: Option<f64>,
    /// ROUGE-L F × 100 (generation tasks).
    pub rouge_l: Option<f64>,
    /// Rank-classification accuracy × 100 (tasks with choices).
    pub accuracy: Option<f64>,
    /// Wall time of the task's inference, seconds.
    pub seconds: f64,
    /// The decoded predictions, in order.
    pub predictions: Vec<String>,
}

/// Pads rows with 0 into a `[rows, max_len]` tensor.
pub fn pad_rows(rows: &[&[i64]], device: Device) -> Tensor {
    let width = rows.iter().map(|r| r.len()).max().unwrap_or(1).max(1);
    let mut flat = Vec::with_capacity(rows.len() * width);
    for row in rows {
        flat.extend_from_slice(row);
        flat.extend(std::iter::repeat_n(0, width - row.len()));
    }
    Tensor::from_slice(&flat)
        .view([rows.len() as i64, width as i64])
        .to_device(device)
}

/// Evaluates every task; `decode` turns generated ids into text.
pub fn evaluate(
    model: &HyperT5,
    tasks: &[EvalTask],
    decode: &dyn Fn(&[i64]) -> String,
    config: &EvalConfig,
    device: Device,
) -> Result<Vec<TaskResult>> {
    tasks
        .iter()
        .map(|task| evaluate_task(model, task, decode, config, device))
        .collect()
}

fn evaluate_task(
    model: &HyperT5,
    task: &EvalTask,
    decode: &dyn Fn(&[i64]) -> String,
    config: &EvalConfig,
    device: Device,
) -> Result<TaskResult> {
    let started = Instant::now();
    let instruction: &[i64] = if task.instruction.is_empty() {
        &[1]
    } else {
        &task.instruction
    };
    // Encode once per task: one adaptation row serves every batch of this task.
    let adaptation = tch::no_grad(|| model.adapt(&pad_rows(&[instruction], device), false));
    let generation = GenerationConfig {
        max_new_tokens: config.max_new_tokens,
        ..GenerationConfig::default()
    };
    let mut predictions = Vec::new();
    let mut correct = Vec::new();
    for chunk in task.examples.chunks(config.batch_size.max(1)) {
        let rows: Vec<&[i64]> = chunk.iter().map(|e| e.input.as_slice()).collect();
        let inputs = pad_rows(&rows, device);
        let mask = inputs.ne(0).to_kind(Kind::Int64);
        if chunk.iter().any(|e| !e.references.is_empty()) {
            let generated = model.generate(&inputs, &mask, &adaptation, &generation)?;
            predictions.extend(generated.tokens.iter().map(|t| decode(t)));
        }
        for (row, example) in chunk.iter().enumerate() {
            let Some((choices, answer)) = &example.choices else {
                continue;
            };
            let choice_rows: Vec<&[i64]> = choices.iter().map(Vec::as_slice).collect();
            let targets = pad_rows(&choice_rows, device);
            let n = targets.size()[0];
            let input = inputs.narrow(0, row as i64, 1).expand([n, -1], false);
            let input_mask = mask.narrow(0, row as i64, 1).expand([n, -1], false);
            let (scores, _) =
                model.score(&input, &input_mask, &targets, &targets.ne(0), &adaptation);
            let scores: Vec<f64> =
                Vec::try_from(scores.to_kind(Kind::Double)).map_err(|source| {
                    TrainError::Torch {
                        context: "reading scores".into(),
                        source,
                    }
                })?;
            correct.push(argmax(&scores) == Some(*answer));
        }
    }
    let references: Vec<Vec<String>> = task
        .examples
        .iter()
        .filter(|e| !e.references.is_empty())
        .map(|e| e.references.clone())
        .collect();
    let (exact_match, rouge_l) = if references.is_empty() {
        (None, None)
    } else {
        let scores = superni_scores(&predictions, &references)
            .map_err(|e| TrainError::Data(format!("{}: {e}", task.name)))?;
        (Some(scores.exact_match), Some(scores.rouge_l))
    };
    let accuracy = (!correct.is_empty())
        .then(|| 100.0 * correct.iter().filter(|c| **c).count() as f64 / correct.len() as f64);
    Ok(TaskResult {
        task: task.name.clone(),
        examples: task.examples.len(),
        exact_match,
        rouge_l,
        accuracy,
        seconds: started.elapsed().as_secs_f64(),
        predictions,
    })
}

/// Mean of each metric over tasks (tasks without the metric are left out).
pub fn average(results: &[TaskResult]) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for r in results {
        for (name, value) in [
            ("exact_match", r.exact_match),
            ("rouge_l", r.rouge_l),
            ("accuracy", r.accuracy),
        ] {
            if let Some(v) = value {
                let entry = sums.entry(name.to_string()).or_insert((0.0, 0));
                entry.0 += v;
                entry.1 += 1;
            }
        }
    }
    sums.into_iter()
        .map(|(k, (s, n))| (k, s / n as f64))
        .collect()
}

/// A Markdown table of per-task scores with the mean as the last row.
pub fn markdown_table(title: &str, results: &[TaskResult]) -> String {
    let cell = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.1}"));
    let mut out = format!(
        "### {title}\n\n| task | n | exact match | ROUGE-L | accuracy |\n|---|---|---|---|---|\n"
    );
    for r in results {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            r.task,
            r.examples,
            cell(r.exact_match),
            cell(r.rouge_l),
            cell(r.accuracy)
        ));
    }
    let mean = average(results);
    out.push_str(&format!(
        "| **mean** | {} | {} | {} | {} |\n",
        results.iter().map(|r| r.examples).sum::<usize>(),
        cell(mean.get("exact_match").copied()),
        cell(mean.get("rouge_l").copied()),
        cell(mean.get("accuracy").copied())
    ));
    out
}
