//! Registering a folder of BIG-bench tasks as tasks and mixtures, and its gin configurable
//! `hint.data.BigBench` ([`BigBenchOptions`]).

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{
    hold_out_examples, list_functions_split, load_all, to_examples as bigbench_examples,
    to_examples_fixed_demos, ListFunctionsSplit, DEMONSTRATION_POOL_PER_TEST_TASK,
    HELD_OUT_PER_TRAIN_TASK,
};
use crate::error::DataError;
use crate::feature_converter::FeatureLengths;
use crate::preprocessors::Tokenize;
use crate::source::MemorySource;
use crate::task::{Mixture, Task, TaskRegistry};
use crate::vocabulary::Vocabulary;

/// The registry name of a BIG-bench task id with `shots` demonstrations:
/// `bigbench_list_functions_c001`, `bigbench_word_sorting_2shot`.
pub fn bigbench_task_name(id: &str, shots: usize) -> String {
    let base = format!("bigbench_{}", id.replace(['/', '-'], "_"));
    if shots == 0 {
        base
    } else {
        format!("{base}_{shots}shot")
    }
}

/// `hint.data.BigBench`: a folder of BIG-bench `task.json` files, the options of
/// [`register_bigbench`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BigBenchOptions {
    /// The folder (searched recursively); empty: off.
    pub path: PathBuf,
    /// Demonstrations drawn from the task's training examples into `hyper_inputs`.
    pub shots: usize,
    /// Whether names carry `_{k}shot` when `shots > 0` (so that several variants can share a
    /// registry); off, the k-shot data takes the plain names (one variant per registry, so
    /// that an experiment's few-shot arms evaluate the same mixture names as its zero-shot
    /// arms).
    pub suffix_shots: bool,
    /// Seed of the held-out choice and the demonstrations.
    pub seed: u64,
}

impl Default for BigBenchOptions {
    fn default() -> Self {
        Self {
            path: PathBuf::new(),
            shots: 0,
            suffix_shots: true,
            seed: 0,
        }
    }
}

impl BigBenchOptions {
    /// Whether a folder is named (the suite is off without one).
    pub fn enabled(&self) -> bool {
        !self.path.as_os_str().is_empty()
    }
}

/// Registers the gin configurable `hint.data.BigBench`.
pub fn register(registry: &mut hint_config::Registry) -> Result<(), hint_config::ConfigError> {
    registry.register_struct::<BigBenchOptions>("hint.data.BigBench")?;
    Ok(())
}

/// Registers every `task.json` under `options.path` as `bigbench_<id>` (with `_{k}shot` when
/// `shots > 0` and `suffix_shots`: k demonstrations go into `hyper_inputs`). `list_functions`
/// c001–c160 get splits `train` (24 examples, demonstrations drawn per example from the
/// other training examples) and `validation` (8 held out, the same k training examples as
/// demonstrations for all). c161–c200 and all other tasks get `test`: every example but
/// [`DEMONSTRATION_POOL_PER_TEST_TASK`] (at least k) reserved as the demonstration pool,
/// whatever k is, so that zero- and few-shot runs score the same examples.
/// Mixtures: `bigbench_list_functions_train`, `bigbench_list_functions_unseen` (suffixed
/// like the tasks), when such tasks exist.
pub fn register_bigbench(
    registry: &mut TaskRegistry,
    options: &BigBenchOptions,
    vocabulary: Arc<Vocabulary>,
    lengths: FeatureLengths,
) -> Result<Vec<String>, DataError> {
    let BigBenchOptions {
        ref path,
        shots,
        suffix_shots,
        seed,
    } = *options;
    let name_shots = if suffix_shots { shots } else { 0 };
    let tasks = load_all(path)?;
    let mut names = Vec::with_capacity(tasks.len());
    let mut train_members = Vec::new();
    let mut unseen_members = Vec::new();
    for task in &tasks {
        let split = task.list_function_number().map(list_functions_split);
        let source = if split == Some(ListFunctionsSplit::Train) {
            let (train, held) = hold_out_examples(task, HELD_OUT_PER_TRAIN_TASK, seed);
            MemorySource::new()
                .split(
                    "train",
                    bigbench_examples(task, &train, &train, shots, seed),
                )
                .split(
                    "validation",
                    to_examples_fixed_demos(task, &held, &train, shots, seed),
                )
        } else {
            let (evaluated, pool) =
                hold_out_examples(task, DEMONSTRATION_POOL_PER_TEST_TASK.max(shots), seed);
            MemorySource::new().split(
                "test",
                to_examples_fixed_demos(task, &evaluated, &pool, shots, seed),
            )
        };
        let name = bigbench_task_name(&task.id, name_shots);
        match split {
            Some(ListFunctionsSplit::Train) => train_members.push(name.clone()),
            Some(ListFunctionsSplit::Unseen) => unseen_members.push(name.clone()),
            _ => {}
        }
        let t = Task::builder(name.clone(), source)
            .preprocessor(Tokenize::default())
            .hint_features(&vocabulary, lengths, true)
            .metric("exact_match")
            .metric("rouge_l")
            // Scored on the examples with `target_scores` (answer choices), as BIG-bench's
            // multiple-choice metric; absent from the table when a task has none.
            .metric("rank_classification")
            .build()?;
        registry.add_task(t)?;
        names.push(name);
    }
    let suffix = if name_shots == 0 {
        String::new()
    } else {
        format!("_{name_shots}shot")
    };
    if !train_members.is_empty() {
        registry.add_mixture(Mixture::uniform(
            format!("bigbench_list_functions_train{suffix}"),
            train_members,
        ))?;
    }
    if !unseen_members.is_empty() {
        registry.add_mixture(Mixture::uniform(
            format!("bigbench_list_functions_unseen{suffix}"),
            unseen_members,
        ))?;
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_names_follow_hint() {
        assert_eq!(
            bigbench_task_name("list_functions/c001", 0),
            "bigbench_list_functions_c001"
        );
        assert_eq!(
            bigbench_task_name("word_sorting", 2),
            "bigbench_word_sorting_2shot"
        );
    }
}
