//! Registering a Super-NaturalInstructions checkout as tasks, and its gin configurable
//! `hint.data.SuperNI` ([`SuperNiOptions`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{
    sample_train_instances, test_instances, to_examples_with_budget, SuperNiCheckout,
    SuperNiVariant,
};
use crate::error::{DataError, Position};
use crate::feature_converter::FeatureLengths;
use crate::preprocessors::Tokenize;
use crate::source::{FnSource, OpenOptions, Record, RecordStream};
use crate::task::{Task, TaskRegistry};
use crate::vocabulary::Vocabulary;

/// `hint.data.SuperNI`: a Super-NaturalInstructions checkout, the options of
/// [`register_superni`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SuperNiOptions {
    /// The checkout (holding `tasks/` and `splits/`); empty: off.
    pub path: PathBuf,
    /// The split folder under `splits/` (`default`).
    pub split: String,
    /// Training instances per train task (100, seeded).
    pub train_per_task: usize,
    /// Test instances per test task (the first 100).
    pub test_per_task: usize,
    /// Seed of the train sampling and the target choice (HINT uses 42).
    pub seed: u64,
    /// Variants by registration name: `natural_instructions` (definition),
    /// `natural_instruction_positive_example_hyper_{1,2}`, `natural_instructions_def`,
    /// `natural_instructions_def_pos_{1,2}` (Tk-Instruct concatenation),
    /// `natural_instructions_split_mimic_def`.
    pub variants: Vec<SuperNiVariant>,
}

impl Default for SuperNiOptions {
    fn default() -> Self {
        Self {
            path: PathBuf::new(),
            split: "default".into(),
            train_per_task: 100,
            test_per_task: 100,
            seed: 42,
            variants: vec![SuperNiVariant::HintDef],
        }
    }
}

impl SuperNiOptions {
    /// Whether a checkout is named (the suite is off without one).
    pub fn enabled(&self) -> bool {
        !self.path.as_os_str().is_empty()
    }
}

/// Registers the gin configurable `hint.data.SuperNI`.
pub fn register(registry: &mut hint_config::Registry) -> Result<(), hint_config::ConfigError> {
    registry.register_struct::<SuperNiOptions>("hint.data.SuperNI")?;
    Ok(())
}

impl Serialize for SuperNiVariant {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.registration_name())
    }
}

// By registration name, so that gin lists the names HINT's papers and configs use, and a
// misspelt one fails when the configuration is read, naming the known ones.
impl<'de> Deserialize<'de> for SuperNiVariant {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        SuperNiVariant::from_registration_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown Super-NI variant `{name}` (known: {})",
                SuperNiVariant::all()
                    .iter()
                    .map(SuperNiVariant::registration_name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }
}

/// Registers one task per variant of `options.variants` (named as HINT's registrations, e.g.
/// `natural_instructions`, `natural_instructions_def_pos_2`) with splits `train` (the train
/// tasks, `train_per_task` seeded instances each) and `test` (the test tasks, the first
/// `test_per_task` instances). Task files are read lazily, one at a time, when a split is
/// opened; a bad file is an error naming it.
pub fn register_superni(
    registry: &mut TaskRegistry,
    options: &SuperNiOptions,
    vocabulary: Arc<Vocabulary>,
    lengths: FeatureLengths,
) -> Result<(), DataError> {
    let checkout = SuperNiCheckout::open(&options.path)?;
    let split = checkout.split(&options.split)?;
    for &variant in &options.variants {
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
                                SuperNiVariant::HintPos(_) => lengths.hyper_inputs,
                                _ => lengths.inputs,
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
            .hint_features(&vocabulary, lengths, true)
            .metric("rouge_l")
            .metric("exact_match")
            .build()?;
        registry.add_task(task)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::example::FeatureValue;

    /// HINT's Super-NI lengths (inputs, hyper_inputs, targets), the lengths these tests were
    /// written for.
    const LENGTHS: FeatureLengths = FeatureLengths::new(1024, 1024, 256);

    #[test]
    fn variants_read_and_write_their_registration_names() {
        for variant in SuperNiVariant::all() {
            let json = serde_json::to_value(variant).unwrap();
            assert_eq!(json, serde_json::Value::from(variant.registration_name()));
            assert_eq!(
                serde_json::from_value::<SuperNiVariant>(json).unwrap(),
                variant
            );
        }
        let err = serde_json::from_value::<SuperNiVariant>("natural_instrucions".into())
            .unwrap_err()
            .to_string();
        assert!(err.contains("known: natural_instructions"), "{err}");
    }

    fn fixture() -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/superni"))
    }

    #[test]
    fn superni_variants_register_and_stream() {
        let vocab = crate::builtin::builtin_vocabulary().unwrap();
        let mut registry = TaskRegistry::new();
        let options = SuperNiOptions {
            path: fixture(),
            variants: SuperNiVariant::all().to_vec(),
            ..SuperNiOptions::default()
        };
        register_superni(&mut registry, &options, vocab, LENGTHS).unwrap();
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
            FeatureValue::from(
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
        let options = SuperNiOptions {
            path: "/nonexistent/superni".into(),
            variants: vec![SuperNiVariant::HintDef],
            ..SuperNiOptions::default()
        };
        let err = register_superni(&mut registry, &options, vocab, LENGTHS).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/superni"), "{err}");
    }
}
