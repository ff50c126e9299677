//! Registry builders for the downloaded benchmarks: a Super-NaturalInstructions checkout
//! ([`register_superni`]) and a folder of BIG-bench `task.json` files ([`register_bigbench`]).
//! They need a path (and a vocabulary), so `default_registry()` does not call them; a
//! training configuration that names the data does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::bigbench::{
    hold_out_examples, list_functions_split, load_all, to_examples as bigbench_examples,
    to_examples_fixed_demos, ListFunctionsSplit, DEMONSTRATION_POOL_PER_TEST_TASK,
    HELD_OUT_PER_TRAIN_TASK,
};
use crate::error::{DataError, Position};
use crate::preprocessors::{PretrainSplit, Tokenize};
use crate::source::{
    FileSource, FnSource, Format, MemorySource, OpenOptions, Record, RecordStream,
};
use crate::superni::{
    sample_train_instances, test_instances, to_examples_with_budget, SuperNiCheckout,
    SuperNiVariant,
};
use crate::task::{Mixture, Task, TaskRegistry};
use crate::vocabulary::Vocabulary;

/// Options of [`register_superni`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuperNiOptions {
    /// The split folder under `splits/` (`default`).
    pub split: String,
    /// Training instances per train task (100, seeded).
    pub train_per_task: usize,
    /// Test instances per test task (the first 100).
    pub test_per_task: usize,
    /// Seed of the train sampling and the target choice (HINT uses 42).
    pub seed: u64,
    /// Lengths of `inputs`, `hyper_inputs`, `targets` (HINT: 1024, 1024, 256); the inputs
    /// and hyper lengths also bound the number of examples put into a text.
    pub lengths: (usize, usize, usize),
}

impl Default for SuperNiOptions {
    fn default() -> Self {
        Self {
            split: "default".into(),
            train_per_task: 100,
            test_per_task: 100,
            seed: 42,
            lengths: (1024, 1024, 256),
        }
    }
}

/// Registers one task per variant (named as HINT's registrations, e.g.
/// `natural_instructions`, `natural_instructions_def_pos_2`) with splits `train` (the train
/// tasks, `train_per_task` seeded instances each) and `test` (the test tasks, the first
/// `test_per_task` instances). Task files are read lazily, one at a time, when a split is
/// opened; a bad file is an error naming it.
pub fn register_superni(
    registry: &mut TaskRegistry,
    root: impl Into<PathBuf>,
    variants: &[SuperNiVariant],
    vocabulary: Arc<Vocabulary>,
    options: &SuperNiOptions,
) -> Result<(), DataError> {
    let checkout = SuperNiCheckout::open(root)?;
    let split = checkout.split(&options.split)?;
    for &variant in variants {
        let checkout = checkout.clone();
        let lists = split.clone();
        let opts = options.clone();
        let vocab = Arc::clone(&vocabulary);
        let source = FnSource::new(
            vec!["train".into(), "test".into()],
            move |name: &str, open: &OpenOptions| -> Result<RecordStream, DataError> {
                let is_train = name == "train";
                let names = if is_train {
                    lists.train.clone()
                } else {
                    lists.test.clone()
                };
                let checkout = checkout.clone();
                let opts = opts.clone();
                let vocab = Arc::clone(&vocab);
                let shard = open.shard;
                let mut index = 0u64;
                let stream = names.into_iter().flat_map(move |task_name| {
                    let path = checkout.task_path(&task_name);
                    let records: Vec<Result<Record, DataError>> = match checkout.task(&task_name) {
                        Err(e) => vec![Err(e)],
                        Ok(task) => {
                            let instances = if is_train {
                                sample_train_instances(&task, opts.train_per_task, opts.seed)
                            } else {
                                test_instances(&task, opts.test_per_task)
                            };
                            let max_len = match variant {
                                SuperNiVariant::HintPos(_) => opts.lengths.1,
                                _ => opts.lengths.0,
                            };
                            // The budget counts tokens without EOS, as the reference
                            // tokenizers' `input_ids` include it: one less to be exact.
                            let count =
                                |s: &str| vocab.encode(s).map_or(usize::MAX, |ids| ids.len());
                            let examples = to_examples_with_budget(
                                &task, &instances, variant, opts.seed, count, max_len,
                            );
                            let path: Arc<Path> = Arc::from(path.as_path());
                            examples
                                .into_iter()
                                .enumerate()
                                .map(|(i, example)| {
                                    Ok(Record {
                                        example,
                                        path: Some(Arc::clone(&path)),
                                        // The i-th example drawn from this task file.
                                        position: Position::Row(i as u64),
                                    })
                                })
                                .collect()
                        }
                    };
                    records
                        .into_iter()
                        .filter(|_| {
                            let keep = shard.contains(index);
                            index += 1;
                            keep
                        })
                        .collect::<Vec<_>>()
                });
                Ok(Box::new(stream))
            },
        );
        let task = Task::builder(variant.registration_name(), source)
            .preprocessor(Tokenize::default())
            .hint_features(&vocabulary, options.lengths, true)
            .metric("rouge_l")
            .metric("exact_match")
            .build()?;
        registry.add_task(task)?;
    }
    Ok(())
}

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

/// Options of [`register_bigbench`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BigBenchOptions {
    /// Demonstrations drawn from the task's training examples into `hyper_inputs`.
    pub shots: usize,
    /// Whether names carry `_{k}shot` when `shots > 0` (so that several variants can share a
    /// registry); off, the k-shot data takes the plain names (one variant per registry, as
    /// an experiment's arms want).
    pub suffix_shots: bool,
    /// Seed of the held-out choice and the demonstrations.
    pub seed: u64,
    /// Lengths of `inputs`, `hyper_inputs`, `targets`.
    pub lengths: (usize, usize, usize),
}

impl Default for BigBenchOptions {
    fn default() -> Self {
        Self {
            shots: 0,
            suffix_shots: true,
            seed: 0,
            lengths: (64, 64, 32),
        }
    }
}

/// Registers every `task.json` under `root` as `bigbench_<id>` (with `_{k}shot` when
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
    root: impl AsRef<Path>,
    vocabulary: Arc<Vocabulary>,
    options: &BigBenchOptions,
) -> Result<Vec<String>, DataError> {
    let BigBenchOptions {
        shots,
        suffix_shots,
        seed,
        lengths,
    } = *options;
    let name_shots = if suffix_shots { shots } else { 0 };
    let tasks = load_all(root)?;
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

/// Registers `name`, the hypernetwork pretraining task over a text corpus (`hint.md` §12):
/// each text of `train_files` (and `validation_files`, when given) is cut into segments of
/// `segment_length` tokens, each split into hypernetwork input, encoder input and target
/// continuation ([`PretrainSplit`]). Files are plain text (one text per line) or JSON Lines,
/// Parquet or Arrow with a `text` field.
pub fn register_text_corpus(
    registry: &mut TaskRegistry,
    name: &str,
    train_files: &[PathBuf],
    validation_files: &[PathBuf],
    segment_length: usize,
    vocabulary: Arc<Vocabulary>,
    lengths: (usize, usize, usize),
) -> Result<(), DataError> {
    let first = train_files
        .first()
        .ok_or_else(|| DataError::Config(format!("text corpus `{name}`: no training files")))?;
    let format = Format::from_path(first).ok_or_else(|| {
        DataError::Config(format!(
            "text corpus `{name}`: cannot tell the format of {} (use .txt, .jsonl, .parquet or .arrow)",
            first.display()
        ))
    })?;
    let mut source = FileSource::new(format).split("train", train_files.to_vec());
    if !validation_files.is_empty() {
        source = source.split("validation", validation_files.to_vec());
    }
    let task = Task::builder(name, source)
        .preprocessor(PretrainSplit {
            field: "text".into(),
            segment_length,
        })
        .hint_features(&vocabulary, lengths, true)
        .build()?;
    registry.add_task(task)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::example::Value;

    fn fixture() -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/superni"))
    }

    #[test]
    fn superni_variants_register_and_stream() {
        let vocab = crate::builtin::builtin_vocabulary().unwrap();
        let mut registry = TaskRegistry::new();
        register_superni(
            &mut registry,
            fixture(),
            &SuperNiVariant::all(),
            vocab,
            &SuperNiOptions::default(),
        )
        .unwrap();
        let task = registry.task("natural_instructions").unwrap();
        let train: Vec<_> = task
            .open("train", &Default::default())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(train.len(), 3, "task063 has 3 instances");
        let test: Vec<_> = task
            .open("test", &Default::default())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(test.len(), 2);
        assert_eq!(
            test[0]["hyper_inputs_pretokenized"],
            Value::from(
                "In this task, you are given a list of integers. You need to reverse the order of the list."
            )
        );
        let def_pos = registry.task("natural_instructions_def_pos_2").unwrap();
        let first = def_pos
            .open("train", &Default::default())
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let inputs = first["inputs_pretokenized"].as_text().unwrap();
        assert!(inputs.starts_with("Definition: In this task"), "{inputs}");
        assert!(inputs.ends_with("Output:"), "{inputs}");
    }

    #[test]
    fn missing_checkout_is_an_error() {
        let vocab = crate::builtin::builtin_vocabulary().unwrap();
        let mut registry = TaskRegistry::new();
        let err = register_superni(
            &mut registry,
            "/nonexistent/superni",
            &[SuperNiVariant::HintDef],
            vocab,
            &SuperNiOptions::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/superni"), "{err}");
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
