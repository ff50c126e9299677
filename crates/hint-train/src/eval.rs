//! Evaluation (t5x's `eval`): per task, the instruction is adapted once and the instances
//! are decoded in batches; predictions are scored by the metrics the task declares
//! (seqio's `metric_fns`): the Super-NaturalInstructions metrics (exact match, ROUGE-L),
//! accuracy, or rank classification over answer choices.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use hint_data::metrics::{argmax, evaluate_named};
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
    /// The task's category, when its suite has them (Super-NI's `Categories[0]`): scores
    /// are also reported per category.
    pub category: Option<String>,
    /// The metrics the task declares ([`hint_data::metrics::METRIC_NAMES`]); none: the
    /// predictions are made but not scored (inference).
    pub metrics: Vec<String>,
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
    /// The task's category ([`EvalTask::category`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Instances scored.
    pub examples: usize,
    /// Each metric the task declares, × 100 (`exact_match`, `rouge_l`, `accuracy`,
    /// `rank_classification`).
    #[serde(flatten)]
    pub scores: BTreeMap<String, f64>,
    /// Wall time of the task's inference, seconds.
    pub seconds: f64,
    /// The decoded predictions, in order.
    pub predictions: Vec<String>,
}

impl TaskResult {
    /// The score of one metric, if the task declared it.
    pub fn score(&self, metric: &str) -> Option<f64> {
        self.scores.get(metric).copied()
    }
}

/// How far an evaluation has come: reported after every decoding batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalProgress<'a> {
    /// The evaluation set (its label), or `""` outside a run's sets.
    pub set: &'a str,
    /// The task of the batch just done.
    pub task: &'a str,
    /// Instances of the set done so far, this batch included.
    pub done: usize,
    /// Instances in the set.
    pub total: usize,
}

/// What watches an evaluation: its progress, and whether to stop (SIGINT/SIGTERM).
/// Evaluation asks [`EvalMonitor::should_stop`] before every batch and stops with
/// [`TrainError::Interrupted`], so that Ctrl-C takes effect within one batch.
pub trait EvalMonitor {
    /// After every decoding batch.
    fn on_eval_progress(&mut self, _progress: &EvalProgress<'_>) {}
    /// Checked before every batch (and before every training step).
    fn should_stop(&self) -> bool {
        false
    }
}

/// A monitor that shows nothing and never stops.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unmonitored;

impl EvalMonitor for Unmonitored {}

/// Whether a metric scores generated text (rather than ranking answer choices).
fn scores_generation(metric: &str) -> bool {
    metric != "rank_classification"
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

/// Where an evaluation runs and what watches it.
pub struct EvalContext<'a> {
    /// Turns generated ids into text.
    pub decode: &'a dyn Fn(&[i64]) -> String,
    /// Batch size and answer length.
    pub config: &'a EvalConfig,
    /// The model's device.
    pub device: Device,
    /// Progress and interruption.
    pub monitor: &'a mut dyn EvalMonitor,
}

/// Evaluates every task of set `set` (its label, for progress only).
///
/// Fails with [`TrainError::Interrupted`] when the monitor asks to stop.
pub fn evaluate(
    model: &HyperT5,
    set: &str,
    tasks: &[EvalTask],
    context: &mut EvalContext<'_>,
) -> Result<Vec<TaskResult>> {
    evaluate_some(model, set, &tasks.iter().collect::<Vec<_>>(), context)
}

/// [`evaluate`] on some of a set's tasks (a rank's share), without copying them.
pub fn evaluate_some(
    model: &HyperT5,
    set: &str,
    tasks: &[&EvalTask],
    context: &mut EvalContext<'_>,
) -> Result<Vec<TaskResult>> {
    let mut progress = SetProgress {
        set,
        done: 0,
        total: tasks.iter().map(|t| t.examples.len()).sum(),
    };
    tasks
        .iter()
        .map(|task| evaluate_task(model, task, context, &mut progress))
        .collect()
}

struct SetProgress<'a> {
    set: &'a str,
    done: usize,
    total: usize,
}

fn evaluate_task(
    model: &HyperT5,
    task: &EvalTask,
    context: &mut EvalContext<'_>,
    progress: &mut SetProgress<'_>,
) -> Result<TaskResult> {
    let (decode, config, device) = (context.decode, context.config, context.device);
    let started = Instant::now();
    let instruction: &[i64] = if task.instruction.is_empty() {
        &[1]
    } else {
        &task.instruction
    };
    // Encode once per task: one adaptation row serves every batch of this task, and the
    // fused instruction's cross-attention keys and values are projected once, not per batch.
    let adaptation = tch::no_grad(|| {
        let mut adaptation = model.adapt(&pad_rows(&[instruction], device), false);
        model.project_instruction(&mut adaptation);
        adaptation
    });
    let generation = GenerationConfig {
        max_new_tokens: config.max_new_tokens,
        ..GenerationConfig::default()
    };
    let generate = task.metrics.is_empty() || task.metrics.iter().any(|m| scores_generation(m));
    let rank = task.metrics.iter().any(|m| m == "rank_classification");
    let mut predictions = Vec::new();
    let mut correct = Vec::new();
    for chunk in task.examples.chunks(config.batch_size.max(1)) {
        if context.monitor.should_stop() {
            return Err(TrainError::Interrupted {
                task: task.name.clone(),
            });
        }
        let rows: Vec<&[i64]> = chunk.iter().map(|e| e.input.as_slice()).collect();
        let inputs = pad_rows(&rows, device);
        let mask = inputs.ne(0).to_kind(Kind::Int64);
        if generate && chunk.iter().any(|e| !e.references.is_empty()) {
            let generated = model.generate(&inputs, &mask, &adaptation, &generation)?;
            predictions.extend(generated.tokens.iter().map(|t| decode(t)));
        }
        for (row, example) in chunk.iter().enumerate() {
            let Some((choices, answer)) = example.choices.as_ref().filter(|_| rank) else {
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
        progress.done += chunk.len();
        context.monitor.on_eval_progress(&EvalProgress {
            set: progress.set,
            task: &task.name,
            done: progress.done,
            total: progress.total,
        });
    }
    let references: Vec<Vec<String>> = task
        .examples
        .iter()
        .filter(|e| !e.references.is_empty())
        .map(|e| e.references.clone())
        .collect();
    let mut scores = BTreeMap::new();
    let generation_metrics: Vec<String> = task
        .metrics
        .iter()
        .filter(|m| scores_generation(m))
        .cloned()
        .collect();
    if !references.is_empty() && !generation_metrics.is_empty() {
        let named =
            evaluate_named(&generation_metrics, &predictions, &references).map_err(|source| {
                TrainError::Metric {
                    task: task.name.clone(),
                    source,
                }
            })?;
        scores.extend(named);
    }
    if !correct.is_empty() {
        scores.insert(
            "rank_classification".to_string(),
            100.0 * correct.iter().filter(|c| **c).count() as f64 / correct.len() as f64,
        );
    }
    Ok(TaskResult {
        task: task.name.clone(),
        category: task.category.clone(),
        examples: task.examples.len(),
        scores,
        seconds: started.elapsed().as_secs_f64(),
        predictions,
    })
}

/// Mean of each metric over tasks (tasks without the metric are left out).
pub fn average(results: &[TaskResult]) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for r in results {
        for (name, value) in &r.scores {
            let entry = sums.entry(name.clone()).or_insert((0.0, 0));
            entry.0 += value;
            entry.1 += 1;
        }
    }
    sums.into_iter()
        .map(|(k, (s, n))| (k, s / n as f64))
        .collect()
}

/// The column header of a metric.
fn metric_title(metric: &str) -> &str {
    match metric {
        "exact_match" => "exact match",
        "rouge_l" => "ROUGE-L",
        "rank_classification" => "rank classification",
        other => other,
    }
}

/// A Markdown table of per-task scores with the mean as the last row: one column per
/// metric some task declares, in [`hint_data::metrics::METRIC_NAMES`] order.
pub fn markdown_table(title: &str, results: &[TaskResult]) -> String {
    let metrics: Vec<&str> = hint_data::metrics::METRIC_NAMES
        .iter()
        .copied()
        .filter(|m| results.iter().any(|r| r.scores.contains_key(*m)))
        .collect();
    let cell = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.1}"));
    let mut out = format!("### {title}\n\n| task | n |");
    for metric in &metrics {
        out.push_str(&format!(" {} |", metric_title(metric)));
    }
    out.push_str(&format!("\n|---|---|{}\n", "---|".repeat(metrics.len())));
    for r in results {
        out.push_str(&format!("| {} | {} |", r.task, r.examples));
        for metric in &metrics {
            out.push_str(&format!(" {} |", cell(r.score(metric))));
        }
        out.push('\n');
    }
    let mean = average(results);
    out.push_str(&format!(
        "| **mean** | {} |",
        results.iter().map(|r| r.examples).sum::<usize>()
    ));
    for metric in &metrics {
        out.push_str(&format!(" {} |", cell(mean.get(*metric).copied())));
    }
    out.push('\n');
    out
}

/// Writes `eval_results.json` and `eval_results.md` into `dir` (each atomically); returns
/// the Markdown.
pub fn write_results(dir: &Path, results: &[(String, Vec<TaskResult>)]) -> Result<String> {
    let mut markdown = String::new();
    let mut json = serde_json::Map::new();
    for (label, tasks) in results {
        markdown.push_str(&markdown_table(label, tasks));
        markdown.push('\n');
        json.insert(
            label.clone(),
            serde_json::to_value(tasks).unwrap_or_default(),
        );
    }
    crate::atomic::write_atomically(
        &dir.join("eval_results.json"),
        serde_json::to_string_pretty(&json)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    crate::atomic::write_atomically(&dir.join("eval_results.md"), markdown.as_bytes())?;
    Ok(markdown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hint_model::{HyperConfig, T5Config};

    fn tiny_model() -> (tch::nn::VarStore, HyperT5) {
        tch::manual_seed(0);
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let t5 = T5Config {
            vocab_size: 40,
            ..T5Config::preset("tiny").unwrap()
        };
        let model = HyperT5::new(vs.root(), &t5, &HyperConfig::preset("tiny").unwrap());
        (vs, model)
    }

    fn task(metrics: &[&str]) -> EvalTask {
        let example = |input: Vec<i64>| EvalExample {
            input,
            references: vec!["a".into()],
            choices: Some((vec![vec![5, 1], vec![6, 1]], 0)),
        };
        EvalTask {
            name: "t".into(),
            category: None,
            metrics: metrics.iter().map(|m| m.to_string()).collect(),
            instruction: vec![7, 8, 1],
            examples: vec![example(vec![3, 4, 1]), example(vec![9, 1])],
        }
    }

    fn evaluated(metrics: &[&str]) -> TaskResult {
        let (_vs, model) = tiny_model();
        let config = EvalConfig {
            batch_size: 2,
            max_new_tokens: 3,
        };
        let decode = |ids: &[i64]| format!("{ids:?}");
        let mut context = EvalContext {
            decode: &decode,
            config: &config,
            device: Device::Cpu,
            monitor: &mut Unmonitored,
        };
        tch::no_grad(|| evaluate(&model, "set", &[task(metrics)], &mut context))
            .unwrap()
            .remove(0)
    }

    /// Stops after a given number of batches and records what it was told.
    struct StopAfter {
        batches: usize,
        seen: Vec<(String, String, usize, usize)>,
    }

    impl EvalMonitor for StopAfter {
        fn on_eval_progress(&mut self, p: &EvalProgress<'_>) {
            self.seen
                .push((p.set.into(), p.task.into(), p.done, p.total));
        }
        fn should_stop(&self) -> bool {
            self.seen.len() >= self.batches
        }
    }

    #[test]
    fn progress_is_reported_per_batch_and_a_stop_request_ends_evaluation() {
        let (_vs, model) = tiny_model();
        let config = EvalConfig {
            batch_size: 1,
            max_new_tokens: 2,
        };
        let decode = |ids: &[i64]| format!("{ids:?}");
        let mut second = task(&["exact_match"]);
        second.name = "u".into();
        let tasks = [task(&["exact_match"]), second];
        let mut monitor = StopAfter {
            batches: usize::MAX,
            seen: Vec::new(),
        };
        let mut context = EvalContext {
            decode: &decode,
            config: &config,
            device: Device::Cpu,
            monitor: &mut monitor,
        };
        tch::no_grad(|| evaluate(&model, "seen", &tasks, &mut context)).unwrap();
        let expected: Vec<(String, String, usize, usize)> =
            [("t", 1), ("t", 2), ("u", 3), ("u", 4)]
                .iter()
                .map(|(t, done)| ("seen".into(), t.to_string(), *done, 4))
                .collect();
        assert_eq!(monitor.seen, expected);

        let mut monitor = StopAfter {
            batches: 3,
            seen: Vec::new(),
        };
        context = EvalContext {
            decode: &decode,
            config: &config,
            device: Device::Cpu,
            monitor: &mut monitor,
        };
        let err = tch::no_grad(|| evaluate(&model, "seen", &tasks, &mut context)).unwrap_err();
        assert!(
            matches!(&err, TrainError::Interrupted { task } if task == "u"),
            "{err}"
        );
        assert_eq!(monitor.seen.len(), 3, "no batch after the stop request");
    }

    #[test]
    fn a_task_reports_exactly_the_metrics_it_declares() {
        let only_em = evaluated(&["exact_match"]);
        assert_eq!(only_em.scores.keys().collect::<Vec<_>>(), ["exact_match"]);
        assert_eq!(only_em.predictions.len(), 2);
        let ranked = evaluated(&["rank_classification"]);
        assert_eq!(
            ranked.scores.keys().collect::<Vec<_>>(),
            ["rank_classification"]
        );
        assert!(ranked.predictions.is_empty(), "nothing to generate for");
        let all = evaluated(&["exact_match", "rouge_l", "accuracy", "rank_classification"]);
        assert_eq!(all.scores.len(), 4);
        let table = markdown_table("set", &[only_em]);
        assert!(table.contains("| task | n | exact match |\n"), "{table}");
        assert!(!table.contains("ROUGE-L"), "{table}");
    }

    #[test]
    fn a_task_without_metrics_is_decoded_but_not_scored() {
        let result = evaluated(&[]);
        assert!(result.scores.is_empty());
        assert_eq!(result.predictions.len(), 2);
    }
}
