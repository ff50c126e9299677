//! BIG-bench JSON tasks (`task.json`): reading, the plain-words instruction of the
//! `list_functions` tasks, HINT-shaped examples (instruction → `hyper_inputs`, input →
//! `inputs`), few-shot variants that put k demonstrations into the hypernetwork input, and the
//! `list_functions` splits (c001–c160 train with 8 held-out examples each, c161–c200 unseen).
//! [`register_bigbench`] registers a folder of them as tasks; [`BigBenchOptions`] is its gin
//! configurable `hint.data.BigBench`.

mod registration;

pub use registration::{bigbench_task_name, register, register_bigbench, BigBenchOptions};

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{DataError, Position};
use crate::example::{Example, FeatureValue};
use crate::rng::SplitMix64;

/// The target of one example: reference strings, or scored answer choices.
#[derive(Debug, Clone, PartialEq)]
pub enum BigBenchTarget {
    /// `target`: one string or a list of acceptable strings.
    Text(Vec<String>),
    /// `target_scores`: answer choice → score (the highest is correct), in key order.
    Scores(Vec<(String, f64)>),
}

/// One BIG-bench example.
#[derive(Debug, Clone, PartialEq)]
pub struct BigBenchExample {
    /// The input text.
    pub input: String,
    /// What the model should produce (or choose).
    pub target: BigBenchTarget,
}

impl BigBenchExample {
    /// The references: the target strings, or the best-scoring choices.
    pub fn references(&self) -> Vec<String> {
        match &self.target {
            BigBenchTarget::Text(t) => t.clone(),
            BigBenchTarget::Scores(scores) => {
                let best = scores
                    .iter()
                    .map(|(_, s)| *s)
                    .fold(f64::NEG_INFINITY, f64::max);
                scores
                    .iter()
                    .filter(|(_, s)| *s == best)
                    .map(|(c, _)| c.clone())
                    .collect()
            }
        }
    }

    /// The answer choices of a `target_scores` example (empty for text targets).
    pub fn choices(&self) -> Vec<String> {
        match &self.target {
            BigBenchTarget::Text(_) => Vec::new(),
            BigBenchTarget::Scores(s) => s.iter().map(|(c, _)| c.clone()).collect(),
        }
    }

    /// The first reference (the training target).
    pub fn first_target(&self) -> String {
        self.references().into_iter().next().unwrap_or_default()
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawTarget {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct RawExample {
    input: String,
    #[serde(default)]
    target: Option<RawTarget>,
    #[serde(default)]
    target_scores: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
struct RawTask {
    name: String,
    description: String,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    metrics: Vec<String>,
    #[serde(default)]
    preferred_score: Option<String>,
    #[serde(default)]
    task_prefix: Option<String>,
    #[serde(default)]
    example_input_prefix: Option<String>,
    #[serde(default)]
    example_output_prefix: Option<String>,
    #[serde(default)]
    output_regex: Option<String>,
    examples: Vec<RawExample>,
}

/// A BIG-bench JSON task.
#[derive(Debug, Clone, PartialEq)]
pub struct BigBenchTask {
    /// The task's `name` field (e.g. `c001`, `word_sorting`).
    pub name: String,
    /// The folder of the task relative to the root it was loaded from, with `/` separators
    /// (e.g. `list_functions/c001`); the file's parent folder name for a lone file.
    pub id: String,
    /// `description`.
    pub description: String,
    /// `keywords`.
    pub keywords: Vec<String>,
    /// `metrics`.
    pub metrics: Vec<String>,
    /// `preferred_score`.
    pub preferred_score: Option<String>,
    /// `task_prefix` (an instruction shown once before the examples).
    pub task_prefix: Option<String>,
    /// `example_input_prefix` as written; [`BigBenchTask::input_prefix`] applies the default.
    pub example_input_prefix: Option<String>,
    /// `example_output_prefix` as written; [`BigBenchTask::output_prefix`] applies the default.
    pub example_output_prefix: Option<String>,
    /// `output_regex`.
    pub output_regex: Option<String>,
    /// The examples, in file order.
    pub examples: Vec<BigBenchExample>,
}

impl BigBenchTask {
    /// Reads one `task.json`. Errors name the file and line, and the field (`examples[i].target`
    /// and the like) when the problem is in an example.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, DataError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        let id = path
            .parent()
            .and_then(Path::file_name)
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self::from_json_str(&text, path, id)
    }

    /// Parses a task from JSON text; `path` labels errors, `id` becomes [`BigBenchTask::id`].
    pub fn from_json_str(text: &str, path: &Path, id: String) -> Result<Self, DataError> {
        let raw: RawTask = serde_json::from_str(text).map_err(|e| DataError::Record {
            path: path.to_path_buf(),
            position: Position::Line(e.line() as u64),
            field: e
                .to_string()
                .split("missing field `")
                .nth(1)
                .and_then(|r| r.split('`').next())
                .map(str::to_string),
            message: e.to_string(),
        })?;
        let mut examples = Vec::with_capacity(raw.examples.len());
        for (i, ex) in raw.examples.into_iter().enumerate() {
            let bad = |field: &str, message: String| DataError::Format {
                path: path.to_path_buf(),
                message: format!("field `examples[{i}].{field}`: {message}"),
            };
            let target = match (ex.target, ex.target_scores) {
                (Some(RawTarget::One(t)), _) => BigBenchTarget::Text(vec![t]),
                (Some(RawTarget::Many(list)), _) if !list.is_empty() => BigBenchTarget::Text(list),
                (Some(RawTarget::Many(_)), None) => {
                    return Err(bad("target", "an empty list".into()));
                }
                (_, Some(map)) => {
                    let mut scores = Vec::with_capacity(map.len());
                    for (choice, score) in map {
                        let score = score.as_f64().ok_or_else(|| {
                            bad(
                                "target_scores",
                                format!("score of `{choice}` is not a number"),
                            )
                        })?;
                        scores.push((choice, score));
                    }
                    if scores.is_empty() {
                        return Err(bad("target_scores", "no choices".into()));
                    }
                    BigBenchTarget::Scores(scores)
                }
                (None, None) => {
                    return Err(bad(
                        "target",
                        "neither `target` nor `target_scores` is present".into(),
                    ));
                }
            };
            examples.push(BigBenchExample {
                input: ex.input,
                target,
            });
        }
        Ok(Self {
            name: raw.name,
            id,
            description: raw.description,
            keywords: raw.keywords,
            metrics: raw.metrics,
            preferred_score: raw.preferred_score,
            task_prefix: raw.task_prefix,
            example_input_prefix: raw.example_input_prefix,
            example_output_prefix: raw.example_output_prefix,
            output_regex: raw.output_regex,
            examples,
        })
    }

    /// `example_input_prefix`, defaulting to BIG-bench's `"\nQ: "`.
    pub fn input_prefix(&self) -> &str {
        self.example_input_prefix.as_deref().unwrap_or("\nQ: ")
    }

    /// `example_output_prefix`, defaulting to BIG-bench's `"\nA: "`.
    pub fn output_prefix(&self) -> &str {
        self.example_output_prefix.as_deref().unwrap_or("\nA: ")
    }

    /// The instruction for the hypernetwork: the plain-words function of a `list_functions`
    /// task, else `task_prefix` (trimmed), else the description.
    pub fn instruction(&self) -> String {
        if let Some(f) = list_function_instruction(&self.description) {
            return f.to_string();
        }
        match &self.task_prefix {
            Some(p) if !p.trim().is_empty() => p.trim().to_string(),
            _ => self.description.trim().to_string(),
        }
    }

    /// The `list_functions` number (`c001` → 1), when this is such a task.
    pub fn list_function_number(&self) -> Option<u32> {
        list_function_number(&self.name)
    }
}

/// Every `task.json` under `root` (recursively), sorted by path, with ids relative to `root`.
pub fn load_all(root: impl AsRef<Path>) -> Result<Vec<BigBenchTask>, DataError> {
    let root = root.as_ref();
    let mut files = Vec::new();
    collect_task_files(root, &mut files)?;
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let mut task = BigBenchTask::from_file(&file)?;
            if let Some(rel) = file.parent().and_then(|p| p.strip_prefix(root).ok()) {
                let parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if !parts.is_empty() {
                    task.id = parts.join("/");
                }
            }
            Ok(task)
        })
        .collect()
}

fn collect_task_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let path = entry.path();
        if path.is_dir() {
            collect_task_files(&path, out)?;
        } else if path.file_name().is_some_and(|n| n == "task.json") {
            out.push(path);
        }
    }
    Ok(())
}

/// The plain-words target function of a `list_functions` description: the text between
/// `The target function is "` and the last `"` (e.g. c001 → `remove all but element 3`).
pub fn list_function_instruction(description: &str) -> Option<&str> {
    const MARKER: &str = "The target function is \"";
    let start = description.find(MARKER)? + MARKER.len();
    let rest = &description[start..];
    let end = rest.rfind('"')?;
    let f = rest[..end].trim();
    (!f.is_empty()).then_some(f)
}

/// `c001` → 1; `None` for other names.
pub fn list_function_number(name: &str) -> Option<u32> {
    let digits = name.strip_prefix('c')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The `list_functions` split of a task number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFunctionsSplit {
    /// c001–c160: training tasks (minus their held-out examples).
    Train,
    /// c161–c200: tasks never seen in training.
    Unseen,
    /// c201–c250 and anything else: kept apart (not in the shared data).
    Other,
}

/// c001–c160 train, c161–c200 unseen.
pub fn list_functions_split(number: u32) -> ListFunctionsSplit {
    match number {
        1..=160 => ListFunctionsSplit::Train,
        161..=200 => ListFunctionsSplit::Unseen,
        _ => ListFunctionsSplit::Other,
    }
}

/// The number of examples held out of each training task.
pub const HELD_OUT_PER_TRAIN_TASK: usize = 8;

/// Splits a task's example indices into (training, held-out): `n_held_out` indices chosen with
/// a seeded shuffle (per task), the rest for training; both lists in file order.
pub fn hold_out_examples(
    task: &BigBenchTask,
    n_held_out: usize,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..task.examples.len()).collect();
    let mut rng = SplitMix64::derive(&[seed, crate::rng::fnv1a(task.id.as_bytes())]);
    rng.shuffle(&mut order);
    let n = n_held_out.min(order.len());
    let mut held: Vec<usize> = order[..n].to_vec();
    let mut train: Vec<usize> = order[n..].to_vec();
    held.sort_unstable();
    train.sort_unstable();
    (train, held)
}

/// The hypernetwork text with `k` demonstrations: each `"Input: {input}\nOutput: {target}\n\n"`,
/// followed by `"Definition: {instruction}"` — the demonstrations first and the instruction
/// last, as HINT's Super-NI few-shot input ends with the definition.
pub fn few_shot_hyper_input(instruction: &str, demonstrations: &[&BigBenchExample]) -> String {
    let mut text = String::new();
    for ex in demonstrations {
        text.push_str(&format!(
            "Input: {}\nOutput: {}\n\n",
            ex.input,
            ex.first_target()
        ));
    }
    text.push_str(&format!("Definition: {instruction}"));
    text
}

/// Examples reserved from each test-only task (c161–c200 and the other BIG-bench tasks) as
/// its demonstration pool, and so never evaluated: every arm of an experiment, zero-shot or
/// k-shot with k ≤ 4, is scored on the same remaining examples.
pub const DEMONSTRATION_POOL_PER_TEST_TASK: usize = 4;

/// One HINT-shaped example with the given hypernetwork text.
fn hint_example(task: &BigBenchTask, ex: &BigBenchExample, hyper: String) -> Example {
    let mut e = Example::new();
    e.insert("hyper_inputs".into(), FeatureValue::Text(hyper));
    e.insert("inputs".into(), FeatureValue::Text(ex.input.clone()));
    e.insert("targets".into(), FeatureValue::Text(ex.first_target()));
    e.insert("references".into(), FeatureValue::Texts(ex.references()));
    let choices = ex.choices();
    if !choices.is_empty() {
        e.insert("answer_choices".into(), FeatureValue::Texts(choices));
    }
    e.insert("task_name".into(), FeatureValue::Text(task.id.clone()));
    e
}

/// The hypernetwork text with `k` demonstrations drawn (seeded shuffle) from `candidates`,
/// in the drawn order or, with `file_order`, in the order of the task file.
fn draw_demonstrations(
    task: &BigBenchTask,
    instruction: &str,
    mut candidates: Vec<usize>,
    k: usize,
    rng: &mut SplitMix64,
    file_order: bool,
) -> String {
    rng.shuffle(&mut candidates);
    candidates.truncate(k);
    if file_order {
        candidates.sort_unstable();
    }
    let demos: Vec<&BigBenchExample> = candidates
        .iter()
        .filter_map(|&j| task.examples.get(j))
        .collect();
    few_shot_hyper_input(instruction, &demos)
}

/// HINT-shaped examples of a task: `hyper_inputs` = the instruction (with `k` demonstrations
/// when `k > 0`, chosen per example with a seeded draw from `pool` minus the example itself —
/// varied demonstrations for training), `inputs` = the example input, `targets` = the first
/// reference, `references` = all, `answer_choices` for `target_scores` examples,
/// `task_name` = the task id.
pub fn to_examples(
    task: &BigBenchTask,
    indices: &[usize],
    pool: &[usize],
    k: usize,
    seed: u64,
) -> Vec<Example> {
    let instruction = task.instruction();
    let mut rng = SplitMix64::derive(&[seed, crate::rng::fnv1a(task.id.as_bytes()), 2]);
    indices
        .iter()
        .filter_map(|&i| task.examples.get(i).map(|ex| (i, ex)))
        .map(|(i, ex)| {
            let hyper = if k == 0 {
                instruction.clone()
            } else {
                let others: Vec<usize> = pool.iter().copied().filter(|&j| j != i).collect();
                draw_demonstrations(task, &instruction, others, k, &mut rng, false)
            };
            hint_example(task, ex, hyper)
        })
        .collect()
}

/// Like [`to_examples`], but every example gets the same `k` demonstrations, drawn once per
/// task from `pool` with a seeded shuffle: the evaluation setting, where the task's
/// instruction and demonstrations are encoded once for all its instances.
pub fn to_examples_fixed_demos(
    task: &BigBenchTask,
    indices: &[usize],
    pool: &[usize],
    k: usize,
    seed: u64,
) -> Vec<Example> {
    let instruction = task.instruction();
    let hyper = if k == 0 {
        instruction
    } else {
        let mut rng = SplitMix64::derive(&[seed, crate::rng::fnv1a(task.id.as_bytes()), 3]);
        draw_demonstrations(task, &instruction, pool.to_vec(), k, &mut rng, true)
    };
    indices
        .iter()
        .filter_map(|&i| task.examples.get(i))
        .map(|ex| hint_example(task, ex, hyper.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<BigBenchTask, DataError> {
        BigBenchTask::from_json_str(json, Path::new("bb/t/task.json"), "t".into())
    }

    #[test]
    fn instruction_extraction() {
        let d = "Infer and compute a function over lists of natural numbers for a given input given a predetermined set of examples The target function is \"remove all but element 3\".";
        assert_eq!(
            list_function_instruction(d),
            Some("remove all but element 3")
        );
        assert_eq!(list_function_instruction("Sort a list of words"), None);
        assert_eq!(list_function_number("c042"), Some(42));
        assert_eq!(list_function_number("cs_algorithms"), None);
        assert_eq!(list_functions_split(160), ListFunctionsSplit::Train);
        assert_eq!(list_functions_split(161), ListFunctionsSplit::Unseen);
        assert_eq!(list_functions_split(201), ListFunctionsSplit::Other);
    }

    #[test]
    fn targets_scores_and_errors() {
        let t = parse(
            r#"{"name": "t", "description": "d", "task_prefix": " Do it. ", "examples": [
            {"input": "a", "target": "x"}, {"input": "b", "target": ["y", "z"]},
            {"input": "c", "target_scores": {"Valid": 0, "Invalid": 1}}]}"#,
        )
        .unwrap();
        assert_eq!(t.instruction(), "Do it.");
        assert_eq!(t.input_prefix(), "\nQ: ");
        assert_eq!(t.examples[1].references(), vec!["y", "z"]);
        assert_eq!(t.examples[2].references(), vec!["Invalid"]);
        assert_eq!(t.examples[2].choices().len(), 2);
        let err = parse(r#"{"name": "t", "description": "d", "examples": [{"input": "a"}]}"#)
            .unwrap_err();
        assert!(err.to_string().contains("examples[0].target"), "{err}");
        let err = parse("{\"name\": \"t\",\n \"examples\": []}").unwrap_err();
        assert_eq!(err.field_name(), Some("description"));
        assert!(err.to_string().contains("bb/t/task.json line 2"), "{err}");
    }

    #[test]
    fn hold_out_and_few_shot_are_seeded() {
        let examples = (0..32)
            .map(|i| format!(r#"{{"input": "[{i}]", "target": "[{}]"}}"#, i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let t = parse(&format!(
            r#"{{"name": "c001", "description": "x The target function is \"add 1\".", "examples": [{examples}]}}"#
        ))
        .unwrap();
        let (train, held) = hold_out_examples(&t, 8, 0);
        assert_eq!((train.len(), held.len()), (24, 8));
        assert_eq!((train.clone(), held.clone()), hold_out_examples(&t, 8, 0));
        assert!(held.iter().all(|h| !train.contains(h)));
        let a = to_examples(&t, &held, &train, 2, 5);
        assert_eq!(a, to_examples(&t, &held, &train, 2, 5));
        let hyper = a[0]["hyper_inputs"].as_text().unwrap();
        assert!(hyper.ends_with("Definition: add 1"), "{hyper}");
        assert_eq!(hyper.matches("Input: ").count(), 2);
        let zero = to_examples(&t, &held, &train, 0, 5);
        assert_eq!(zero[0]["hyper_inputs"], FeatureValue::from("add 1"));
    }
}
