//! The data of a run, from gin: which suites and files become tasks, the vocabulary they
//! share, and tasks and mixtures defined in the configuration itself.
//!
//! Configurables (all optional; each suite is off until it is given a path, except the
//! built-in suite, which is on unless `hint.data.Builtin.enabled = False`):
//!
//! | configurable | options | registers |
//! |---|---|---|
//! | `hint.data.Builtin` | [`BuiltinOptions`] | the built-in instruction suite: `builtin_train`, `builtin_heldout` |
//! | `hint.data.BigBench` | [`BigBenchOptions`] | every `task.json` under `path`: `bigbench_<id>`, `bigbench_list_functions_{train,unseen}` |
//! | `hint.data.SuperNI` | [`SuperNiOptions`] | a natural-instructions checkout: `natural_instructions`, … (per variant) |
//! | `hint.data.P3` | [`P3Options`] | P3 Parquet tasks: each task, `p3_train`, `p3_eval`; with `shots`, `{task}_{k}_shot`, `p3_train_{k}_shot`, `p3_eval_{k}_shot` |
//! | `hint.data.Corpus` | [`CorpusOptions`] | a pretraining corpus: `name` (default `pretrain_corpus`) |
//! | `hint.data.Registry` | [`RegistrySpec`] | `tasks = [@x/hint.data.Task(), …]`, `mixtures = [@m/hint.data.Mixture(), …]` |
//! | `hint.data.Vocabulary` | [`VocabularyOptions`] | `tokenizer_file`, or a tokenizer of `vocab_size` trained on the suites' text |

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hint_config::Config;
use serde::{Deserialize, Serialize};

use crate::bigbench::{self, BigBenchOptions};
use crate::builtin::{self, BuiltinOptions, BuiltinSuite};
use crate::corpus::{self, CorpusOptions};
use crate::error::DataError;
use crate::example::FeatureValue;
use crate::feature_converter::FeatureLengths;
use crate::p3::{self, P3Options};
use crate::spec::{self, RegistrySpec};
use crate::superni::{self, SuperNiOptions};
use crate::task::TaskRegistry;
use crate::tokenizer_training::{train_tokenizer, TokenizerTrainingConfig};
use crate::vocabulary::Vocabulary;

/// `hint.data.Vocabulary`: the tokenizer of every feature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VocabularyOptions {
    /// A `tokenizer.json` (e.g. the T5 one); empty to train one on the run's text.
    pub tokenizer_file: PathBuf,
    /// Size of a trained tokenizer.
    pub vocab_size: u32,
    /// `<extra_id_N>` sentinels appended to a trained tokenizer (T5 has 100; span corruption
    /// needs one per noise span of a segment).
    pub num_sentinels: u32,
}

impl Default for VocabularyOptions {
    fn default() -> Self {
        Self {
            tokenizer_file: PathBuf::new(),
            vocab_size: 1000,
            num_sentinels: 0,
        }
    }
}

/// Registers the gin configurable `hint.data.Vocabulary`.
fn register_vocabulary(
    registry: &mut hint_config::Registry,
) -> Result<(), hint_config::ConfigError> {
    registry.register_struct::<VocabularyOptions>("hint.data.Vocabulary")?;
    Ok(())
}

/// Registers every data configurable (see the [module docs](self)).
pub fn register(registry: &mut hint_config::Registry) -> Result<(), hint_config::ConfigError> {
    register_vocabulary(registry)?;
    builtin::register(registry)?;
    bigbench::register(registry)?;
    superni::register(registry)?;
    p3::register(registry)?;
    corpus::register(registry)?;
    spec::register(registry)
}

/// Everything that decides a run's data: the options of every suite.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DataConfig {
    /// `hint.data.Vocabulary`.
    pub vocabulary: VocabularyOptions,
    /// `hint.data.Builtin`.
    pub builtin: BuiltinOptions,
    /// `hint.data.BigBench`.
    pub bigbench: BigBenchOptions,
    /// `hint.data.SuperNI`.
    pub superni: SuperNiOptions,
    /// `hint.data.P3`.
    pub p3: P3Options,
    /// `hint.data.Corpus`.
    pub corpus: CorpusOptions,
    /// `hint.data.Registry`.
    pub registry: RegistrySpec,
}

/// The data of a run: the task registry and its vocabulary.
pub struct RunData {
    /// Tasks and mixtures.
    pub registry: TaskRegistry,
    /// The vocabulary of every feature.
    pub vocabulary: Arc<Vocabulary>,
}

/// Lines read from each corpus `.txt` file for tokenizer training: enough text for a small
/// vocabulary without reading a whole corpus into memory.
const CORPUS_LINES: usize = 20_000;

impl DataConfig {
    /// Reads the data configurables (defaults for those not bound).
    pub fn from_config(config: &Config) -> Result<Self, DataError> {
        fn get<T: serde::de::DeserializeOwned>(
            config: &Config,
            selector: &'static str,
        ) -> Result<T, DataError> {
            config.get(selector, "").map_err(|source| DataError::Gin {
                selector,
                source: Box::new(source),
            })
        }
        Ok(Self {
            vocabulary: get(config, "hint.data.Vocabulary")?,
            builtin: get(config, "hint.data.Builtin")?,
            bigbench: get(config, "hint.data.BigBench")?,
            superni: get(config, "hint.data.SuperNI")?,
            p3: get(config, "hint.data.P3")?,
            corpus: get(config, "hint.data.Corpus")?,
            registry: get(config, "hint.data.Registry")?,
        })
    }

    /// The text a tokenizer is trained on: the built-in suite's and BIG-bench's texts, the
    /// texts of the first records of every gin-defined task (`hint.data.Registry.tasks`), and
    /// the first lines of the corpus `.txt` files. Empty when no suite has text to offer.
    pub fn tokenizer_corpus(&self) -> Result<Vec<String>, DataError> {
        let mut texts = Vec::new();
        if self.builtin.enabled {
            texts.extend(BuiltinSuite::generate(self.builtin.suite_config()).corpus());
        }
        if self.bigbench.enabled() {
            // The template words and every digit, which few task texts would otherwise
            // cover, so that formatted examples and numbers stay encodable.
            texts.push("Input: Output: Definition: 0 1 2 3 4 5 6 7 8 9 [ ] ,".into());
            for task in bigbench::load_all(&self.bigbench.path)? {
                let all: Vec<usize> = (0..task.examples.len()).collect();
                for example in bigbench::to_examples(&task, &all, &all, 0, self.bigbench.seed) {
                    for field in ["hyper_inputs", "inputs", "targets"] {
                        if let Some(FeatureValue::Text(t)) = example.get(field) {
                            texts.push(t.clone());
                        }
                    }
                }
            }
        }
        for task in &self.registry.tasks {
            texts.extend(task.raw_texts(Path::new(""), CORPUS_LINES)?);
        }
        for path in &self.corpus.train_files {
            if path.extension().and_then(|e| e.to_str()) == Some("txt") && path.is_file() {
                let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
                texts.extend(text.lines().take(CORPUS_LINES).map(str::to_string));
            }
        }
        Ok(texts)
    }

    /// The vocabulary: `existing` (a run's own `tokenizer.json`) when it exists, else
    /// `tokenizer_file`, else one trained on the suites' text.
    pub fn vocabulary(&self, existing: Option<&Path>) -> Result<Arc<Vocabulary>, DataError> {
        let load = |path: &Path| -> Result<Arc<Vocabulary>, DataError> {
            Ok(Arc::new(Vocabulary::from_file(path)?))
        };
        if let Some(path) = existing.filter(|p| p.is_file()) {
            return load(path);
        }
        if !self.vocabulary.tokenizer_file.as_os_str().is_empty() {
            return load(&self.vocabulary.tokenizer_file);
        }
        let texts = self.tokenizer_corpus()?;
        if texts.is_empty() {
            return Err(DataError::Config(
                "no tokenizer: bind `hint.data.Vocabulary.tokenizer_file` (e.g. the T5 tokenizer.json), \
                 or enable a suite with text to train one on (builtin, BigBench, gin tasks, Corpus .txt files)"
                    .into(),
            ));
        }
        Ok(Arc::new(train_tokenizer(
            texts,
            &TokenizerTrainingConfig {
                vocab_size: self.vocabulary.vocab_size,
                num_sentinels: self.vocabulary.num_sentinels,
                ..Default::default()
            },
        )?))
    }

    /// Builds the task registry of a run: every enabled suite, then the gin-defined tasks
    /// and mixtures. `lengths` are those of `inputs`, `hyper_inputs`, `targets`;
    /// `existing_vocabulary` is the run's own `tokenizer.json`, reused on resume.
    pub fn build(
        &self,
        lengths: FeatureLengths,
        existing_vocabulary: Option<&Path>,
    ) -> Result<RunData, DataError> {
        let vocabulary = self.vocabulary(existing_vocabulary)?;
        let mut registry = TaskRegistry::new();
        if self.builtin.enabled {
            builtin::register_builtin_suite_with(
                &mut registry,
                &self.builtin,
                Arc::clone(&vocabulary),
                lengths,
            )?;
        }
        if self.bigbench.enabled() {
            bigbench::register_bigbench(
                &mut registry,
                &self.bigbench,
                Arc::clone(&vocabulary),
                lengths,
            )?;
        }
        if self.superni.enabled() {
            superni::register_superni(
                &mut registry,
                &self.superni,
                Arc::clone(&vocabulary),
                lengths,
            )?;
        }
        if self.p3.enabled() {
            p3::register_p3(&mut registry, &self.p3, Arc::clone(&vocabulary), lengths)?;
        }
        if self.corpus.enabled() {
            corpus::register_text_corpus(
                &mut registry,
                &self.corpus,
                Arc::clone(&vocabulary),
                lengths,
            )?;
        }
        self.registry
            .register_into(&mut registry, &vocabulary, lengths, Path::new(""))?;
        Ok(RunData {
            registry,
            vocabulary,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::superni::SuperNiVariant;

    fn read(gin: &str) -> Result<DataConfig, String> {
        let mut registry = hint_config::Registry::new();
        register(&mut registry).map_err(|e| e.to_string())?;
        let config = hint_config::ConfigBuilder::new()
            .registry(registry)
            .source("test.gin", gin)
            .build()
            .map_err(|e| e.to_string())?;
        DataConfig::from_config(&config).map_err(|e| e.to_string())
    }

    #[test]
    fn unbound_configurables_take_the_defaults() {
        assert_eq!(read("").unwrap(), DataConfig::default());
        let defaults = DataConfig::default();
        assert!(defaults.builtin.enabled);
        assert!(!defaults.bigbench.enabled());
        assert!(!defaults.superni.enabled());
        assert!(!defaults.p3.enabled());
        assert!(!defaults.corpus.enabled());
    }

    #[test]
    fn gin_bindings_reach_the_options() {
        let config = read(
            r#"
hint.data.Builtin.enabled = False
hint.data.Vocabulary.tokenizer_file = "t5/tokenizer.json"
hint.data.SuperNI:
  path = "natural-instructions"
  variants = ["natural_instructions", "natural_instructions_def_pos_2"]
hint.data.Corpus.train_files = ["c4/*.txt"]
"#,
        )
        .unwrap();
        assert!(!config.builtin.enabled);
        assert_eq!(
            config.vocabulary.tokenizer_file,
            PathBuf::from("t5/tokenizer.json")
        );
        assert_eq!(config.superni.path, PathBuf::from("natural-instructions"));
        assert_eq!(
            config.superni.variants,
            [SuperNiVariant::HintDef, SuperNiVariant::TkDefPos(2)]
        );
        assert_eq!(config.superni.seed, 42);
        assert_eq!(config.corpus.train_files, [PathBuf::from("c4/*.txt")]);
    }

    #[test]
    fn bad_bindings_are_errors_naming_them() {
        let err = read("hint.data.SuperNI.variants = [\"natural_instrucions\"]").unwrap_err();
        assert!(err.contains("natural_instrucions"), "{err}");
        assert!(read("hint.data.P3.max_exemples = 3").is_err());
    }

    #[test]
    fn without_text_or_tokenizer_there_is_no_vocabulary() {
        let config = DataConfig {
            builtin: BuiltinOptions {
                enabled: false,
                ..BuiltinOptions::default()
            },
            ..DataConfig::default()
        };
        let err = config
            .build((8, 8, 8).into(), None)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("hint.data.Vocabulary.tokenizer_file"), "{err}");
    }
}
