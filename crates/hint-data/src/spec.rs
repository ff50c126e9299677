//! Tasks and mixtures described as data, so that a gin file can define them (seqio's
//! `TaskRegistry.add` / `MixtureRegistry.add` without Python):
//!
//! ```gin
//! my_task/hint.data.Task:
//!   name = "my_task"
//!   splits = {"train": ["data/train-*.jsonl"], "validation": ["data/dev.jsonl"]}
//!   preprocessors = [{"type": "hint_split", "instruction": "{definition}", "instance": "{input}"},
//!                    {"type": "rekey", "key_map": {"targets": "output", "inputs": "inputs", "hyper_inputs": "hyper_inputs"}},
//!                    {"type": "tokenize"}]
//! hint.data.Registry.tasks = [@my_task/hint.data.Task()]
//! hint.data.Registry.mixtures = [@mix/hint.data.Mixture()]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::example::FeatureValue;
use crate::feature_converter::FeatureLengths;
use crate::preprocessors::PreprocessorSpec;
use crate::source::{FileSource, Format, Source};
use crate::task::{Mixture, Rate, Task, TaskRegistry};
use crate::vocabulary::Vocabulary;

/// A task read from files: the splits, the preprocessors in order and the metrics. Output
/// features are `inputs`, `hyper_inputs` and `targets` with the run's lengths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskSpec {
    /// The registry name.
    pub name: String,
    /// `json_lines`, `json_array`, `parquet`, `arrow`, `text_lines`, or empty to guess from
    /// the first file's extension.
    pub format: String,
    /// Split name → files (`*` allowed in file names); relative paths are taken from the
    /// directory of the configuration's base (see [`TaskSpec::build`]).
    pub splits: BTreeMap<String, Vec<String>>,
    /// Preprocessors, each a dict with a `type` (`rekey`, `template`, `hint_split`, `strip`,
    /// `rank_classification`, `pretrain_split`, `tokenize`). Without a `tokenize`, one is
    /// appended.
    pub preprocessors: Vec<PreprocessorSpec>,
    /// Metric names (`exact_match`, `rouge_l`, `accuracy`, `rank_classification`).
    pub metrics: Vec<String>,
    /// Whether `inputs` and `hyper_inputs` get EOS (P3's do not; targets always do).
    pub inputs_eos: bool,
}

impl Default for TaskSpec {
    fn default() -> Self {
        Self {
            name: String::new(),
            format: String::new(),
            splits: BTreeMap::new(),
            preprocessors: Vec::new(),
            metrics: vec!["exact_match".into(), "rouge_l".into()],
            inputs_eos: true,
        }
    }
}

fn parse_format(name: &str, task: &str) -> Result<Format, DataError> {
    Ok(match name {
        "json_lines" | "jsonl" => Format::JsonLines,
        "json_array" | "json" => Format::JsonArray,
        "parquet" => Format::Parquet,
        "arrow" => Format::Arrow,
        "text_lines" | "text" => Format::TextLines {
            field: "text".into(),
        },
        other => {
            return Err(DataError::Config(format!(
                "task `{task}`: unknown format `{other}` (json_lines, json_array, parquet, arrow, text_lines)"
            )))
        }
    })
}

impl TaskSpec {
    /// The task's files as a source; relative file names are resolved against `base`.
    pub fn source(&self, base: &Path) -> Result<FileSource, DataError> {
        if self.name.is_empty() {
            return Err(DataError::Config("a hint.data.Task has no `name`".into()));
        }
        if self.splits.is_empty() {
            return Err(DataError::Config(format!(
                "task `{}` has no `splits` (e.g. {{\"train\": [\"train.jsonl\"]}})",
                self.name
            )));
        }
        let resolve = |f: &String| -> PathBuf {
            let path = PathBuf::from(f);
            if path.is_absolute() {
                path
            } else {
                base.join(path)
            }
        };
        // Without `format`, each file is read as its extension says (checked here, for
        // every file listed, so that a bad name fails before anything is read).
        let mut source = if self.format.is_empty() {
            let mut files = self.splits.values().flatten().map(resolve).peekable();
            if files.peek().is_none() {
                return Err(DataError::Config(format!(
                    "task `{}`: a split lists no files",
                    self.name
                )));
            }
            if let Some(unknown) = files.find(|file| Format::from_path(file).is_none()) {
                return Err(DataError::Config(format!(
                    "task `{}`: cannot tell the format of {} from its extension; set `format`",
                    self.name,
                    unknown.display()
                )));
            }
            FileSource::by_extension()
        } else {
            FileSource::new(parse_format(&self.format, &self.name)?)
        };
        for (split, files) in &self.splits {
            source = source.split(split.clone(), files.iter().map(resolve).collect());
        }
        Ok(source)
    }

    /// Every text of the first `limit` raw records of each split (before preprocessing):
    /// what a tokenizer trained for a run of gin-defined tasks learns from.
    pub fn raw_texts(&self, base: &Path, limit: usize) -> Result<Vec<String>, DataError> {
        let source = self.source(base)?;
        let mut texts = Vec::new();
        for split in source.splits() {
            let records = source.open(&split, &crate::source::OpenOptions::default())?;
            for record in records.take(limit) {
                for value in record?.example.values() {
                    match value {
                        FeatureValue::Text(text) => texts.push(text.clone()),
                        FeatureValue::Texts(all) => texts.extend(all.iter().cloned()),
                        _ => {}
                    }
                }
            }
        }
        Ok(texts)
    }

    /// Builds the task; relative file names are resolved against `base`.
    pub fn build(
        &self,
        vocabulary: &Arc<Vocabulary>,
        lengths: FeatureLengths,
        base: &Path,
    ) -> Result<Task, DataError> {
        let source = self.source(base)?;
        let mut builder = Task::builder(self.name.clone(), source);
        let mut tokenized = false;
        for spec in &self.preprocessors {
            tokenized |= matches!(spec, PreprocessorSpec::Tokenize { .. });
            builder = builder.shared_preprocessor(spec.build()?);
        }
        if !tokenized {
            builder = builder.shared_preprocessor(
                PreprocessorSpec::Tokenize {
                    copy_pretokenized: true,
                }
                .build()?,
            );
        }
        builder = builder.hint_features(vocabulary, lengths, self.inputs_eos);
        for metric in &self.metrics {
            builder = builder.metric(metric.clone());
        }
        builder.build()
    }
}

/// A mixture of registered tasks or mixtures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MixtureSpec {
    /// The registry name.
    pub name: String,
    /// Member task or mixture names.
    pub members: Vec<String>,
    /// Explicit rates, one per member; empty for uniform (or proportional) rates.
    pub rates: Vec<f64>,
    /// Rates proportional to the members' sizes (seqio's `mixing_rate_num_examples`).
    pub proportional: bool,
    /// The cap of a proportional rate (T0: 500,000).
    pub maximum: Option<f64>,
    /// The temperature of a proportional rate.
    pub temperature: f64,
}

impl Default for MixtureSpec {
    fn default() -> Self {
        Self {
            name: String::new(),
            members: Vec::new(),
            rates: Vec::new(),
            proportional: false,
            maximum: None,
            temperature: 1.0,
        }
    }
}

impl MixtureSpec {
    /// The mixture (members are checked when it is added to a registry).
    pub fn build(&self) -> Result<Mixture, DataError> {
        if self.name.is_empty() || self.members.is_empty() {
            return Err(DataError::Config(format!(
                "a hint.data.Mixture needs a `name` and `members` (got name `{}`, {} members)",
                self.name,
                self.members.len()
            )));
        }
        if !self.rates.is_empty() && self.rates.len() != self.members.len() {
            return Err(DataError::Config(format!(
                "mixture `{}`: {} rates for {} members",
                self.name,
                self.rates.len(),
                self.members.len()
            )));
        }
        if self.proportional && !self.rates.is_empty() {
            return Err(DataError::Config(format!(
                "mixture `{}`: `rates` and `proportional` exclude each other",
                self.name
            )));
        }
        let rate = |i: usize| {
            if self.proportional {
                Rate::ExampleProportional {
                    maximum: self.maximum,
                    scale: 1.0,
                    temperature: self.temperature,
                }
            } else {
                Rate::Explicit(self.rates.get(i).copied().unwrap_or(1.0))
            }
        };
        Ok(Mixture::new(
            self.name.clone(),
            self.members
                .iter()
                .enumerate()
                .map(|(i, m)| (m.clone(), rate(i))),
        ))
    }
}

/// `hint.data.Registry`: the tasks and mixtures defined in gin.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrySpec {
    /// Tasks, usually `[@name/hint.data.Task(), …]`.
    pub tasks: Vec<TaskSpec>,
    /// Mixtures, usually `[@name/hint.data.Mixture(), …]`, added after every task.
    pub mixtures: Vec<MixtureSpec>,
}

impl RegistrySpec {
    /// Builds every task, then every mixture, into `registry` (mixtures last, so that they
    /// may name the tasks defined here as well as those registered before). Relative file
    /// names are resolved against `base`.
    pub fn register_into(
        &self,
        registry: &mut TaskRegistry,
        vocabulary: &Arc<Vocabulary>,
        lengths: FeatureLengths,
        base: &Path,
    ) -> Result<(), DataError> {
        for spec in &self.tasks {
            registry.add_task(spec.build(vocabulary, lengths, base)?)?;
        }
        for spec in &self.mixtures {
            registry.add_mixture(spec.build()?)?;
        }
        Ok(())
    }
}

/// Registers the gin configurables `hint.data.Task`, `hint.data.Mixture` and
/// `hint.data.Registry`.
pub fn register(registry: &mut hint_config::Registry) -> Result<(), hint_config::ConfigError> {
    registry.register_struct::<TaskSpec>("hint.data.Task")?;
    registry.register_struct::<MixtureSpec>("hint.data.Mixture")?;
    registry.register_struct::<RegistrySpec>("hint.data.Registry")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jsonl_task_from_a_spec_streams_tokenized_examples() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("train.jsonl"),
            "{\"definition\": \"reverse the list\", \"input\": \"1 2 3\", \"output\": \"3 2 1\"}\n",
        )
        .unwrap();
        let spec: TaskSpec = serde_json::from_value(serde_json::json!({
            "name": "rev",
            "splits": {"train": ["train.jsonl"]},
            "preprocessors": [
                {"type": "hint_split", "instruction": "{definition}", "instance": "{input}"},
                {"type": "rekey", "key_map": {"inputs": "inputs", "hyper_inputs": "hyper_inputs", "targets": "output"}}
            ]
        }))
        .unwrap();
        let vocab = crate::builtin::builtin_vocabulary().unwrap();
        let task = Arc::new(spec.build(&vocab, (16, 16, 8).into(), dir.path()).unwrap());
        let examples: Vec<_> = task
            .open("train", &Default::default())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(examples.len(), 1);
        assert_eq!(
            examples[0]["hyper_inputs_pretokenized"].as_text(),
            Some("reverse the list")
        );
        assert!(matches!(
            examples[0]["targets"],
            crate::example::FeatureValue::Tokens(ref t) if t.last() == Some(&1)
        ));
    }

    #[test]
    fn bad_specs_name_the_task() {
        let vocab = crate::builtin::builtin_vocabulary().unwrap();
        let spec = TaskSpec {
            name: "t".into(),
            format: "yaml".into(),
            splits: [("train".to_string(), vec!["a.yaml".to_string()])].into(),
            ..TaskSpec::default()
        };
        let err = spec
            .build(&vocab, (8, 8, 8).into(), Path::new("."))
            .unwrap_err();
        assert!(
            err.to_string().contains("task `t`: unknown format `yaml`"),
            "{err}"
        );
        let mixture = MixtureSpec {
            name: "m".into(),
            members: vec!["a".into(), "b".into()],
            rates: vec![1.0],
            ..MixtureSpec::default()
        };
        assert!(mixture
            .build()
            .unwrap_err()
            .to_string()
            .contains("1 rates for 2 members"));
        let mut registry = TaskRegistry::new();
        let unknown = MixtureSpec {
            name: "m".into(),
            members: vec!["nope".into()],
            ..MixtureSpec::default()
        };
        assert!(registry.add_mixture(unknown.build().unwrap()).is_err());
    }
}
