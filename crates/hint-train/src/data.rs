//! The data of a run, from gin: which benchmarks and files become tasks, the vocabulary
//! they share, and tasks and mixtures defined in the configuration itself.
//!
//! Configurables (all optional; each source is off until it is given a path, except the
//! built-in suite, which is on unless `hint.data.Builtin.enabled = False`):
//!
//! | configurable | registers |
//! |---|---|
//! | `hint.data.Builtin` | the built-in instruction suite: `builtin_train`, `builtin_heldout` |
//! | `hint.data.BigBench` | every `task.json` under `path`: `bigbench_<id>`, `bigbench_list_functions_{train,unseen}` |
//! | `hint.data.SuperNI` | a natural-instructions checkout: `natural_instructions`, … (per variant) |
//! | `hint.data.P3` | P3 Parquet tasks: each task, `p3_train`, `p3_eval` |
//! | `hint.data.Corpus` | a pretraining corpus: `name` (default `pretrain_corpus`) |
//! | `hint.data.Registry` | `tasks = [@x/hint.data.Task(), …]`, `mixtures = [@m/hint.data.Mixture(), …]` |
//! | `hint.data.Vocabulary` | `tokenizer_file`, or a tokenizer of `vocab_size` trained on the suites' text |

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hint_config::Config;
use hint_data::benchmark_registry::{
    register_bigbench, register_superni, register_text_corpus, BigBenchOptions, SuperNiOptions,
};
use hint_data::bigbench::{load_all, to_examples as bigbench_examples};
use hint_data::builtin::{
    register_builtin_suite_with, BuiltinRegistration, BuiltinSuite, SuiteConfig,
};
use hint_data::p3::{parse_edited_prompts, register_p3, P3Options};
use hint_data::superni::SuperNiVariant;
use hint_data::tokenizer_training::{train_tokenizer, TokenizerTrainingConfig};
use hint_data::{MixtureSpec, TaskRegistry, TaskSpec, Value, Vocabulary};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// `hint.data.Vocabulary`: the tokenizer of every feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VocabularyConfig {
    /// A `tokenizer.json` (e.g. the T5 one); empty to train one on the run's text.
    pub tokenizer_file: String,
    /// Size of a trained tokenizer.
    pub vocab_size: u32,
}

impl Default for VocabularyConfig {
    fn default() -> Self {
        Self {
            tokenizer_file: String::new(),
            vocab_size: 1000,
        }
    }
}

/// `hint.data.Builtin`: the built-in instruction suite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BuiltinDataConfig {
    /// Register the suite.
    pub enabled: bool,
    /// Seed of the suite's draws.
    pub seed: u64,
    /// Training instances per task.
    pub train_instances: usize,
    /// Evaluation instances per task.
    pub eval_instances: usize,
    /// Demonstrations in the hypernetwork input.
    pub shots: usize,
}

impl Default for BuiltinDataConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            seed: 0,
            train_instances: 1000,
            eval_instances: 100,
            shots: 0,
        }
    }
}

/// `hint.data.BigBench`: a folder of BIG-bench `task.json` files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BigBenchDataConfig {
    /// The folder (searched recursively); empty: off.
    pub path: String,
    /// Demonstrations in the hypernetwork input.
    pub shots: usize,
    /// Whether k-shot names get `_{k}shot` (off: the plain names, so that an experiment's
    /// few-shot arms evaluate the same mixture names as its zero-shot arms).
    pub suffix_shots: bool,
    /// Seed of the held-out choice and the demonstrations.
    pub seed: u64,
}

impl Default for BigBenchDataConfig {
    fn default() -> Self {
        Self {
            path: String::new(),
            shots: 0,
            suffix_shots: true,
            seed: 0,
        }
    }
}

/// `hint.data.SuperNI`: a Super-NaturalInstructions checkout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SuperNiDataConfig {
    /// The checkout (holding `tasks/` and `splits/`); empty: off.
    pub path: String,
    /// The split folder.
    pub split: String,
    /// Training instances per train task.
    pub train_per_task: usize,
    /// Test instances per test task.
    pub test_per_task: usize,
    /// Seed (HINT: 42).
    pub seed: u64,
    /// Variants by registration name: `natural_instructions` (definition),
    /// `natural_instruction_positive_example_hyper_{1,2}`, `natural_instructions_def`,
    /// `natural_instructions_def_pos_{1,2}` (Tk-Instruct concatenation),
    /// `natural_instructions_split_mimic_def`.
    pub variants: Vec<String>,
}

impl Default for SuperNiDataConfig {
    fn default() -> Self {
        Self {
            path: String::new(),
            split: "default".into(),
            train_per_task: 100,
            test_per_task: 100,
            seed: 42,
            variants: vec!["natural_instructions".into()],
        }
    }
}

/// `hint.data.P3`: P3 Parquet tasks (`<path>/<task>/<split>-*.parquet`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct P3DataConfig {
    /// The P3 `data` folder; empty: off.
    pub path: String,
    /// HINT's `all_edited_prompts.txt` (the hypernetwork inputs); empty: no instruction.
    pub prompts_file: String,
    /// Tasks of `p3_train`.
    pub train_tasks: Vec<String>,
    /// Tasks of `p3_eval`.
    pub eval_tasks: Vec<String>,
    /// Example-proportional cap of `p3_train` (T0: 500,000).
    pub max_examples: f64,
}

impl Default for P3DataConfig {
    fn default() -> Self {
        Self {
            path: String::new(),
            prompts_file: String::new(),
            train_tasks: Vec::new(),
            eval_tasks: Vec::new(),
            max_examples: 500_000.0,
        }
    }
}

/// `hint.data.Corpus`: text for hypernetwork pretraining.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorpusDataConfig {
    /// The task name.
    pub name: String,
    /// Training files (`*` allowed in file names); empty: off.
    pub train_files: Vec<String>,
    /// Validation files.
    pub validation_files: Vec<String>,
    /// Tokens per segment.
    pub segment_length: usize,
}

impl Default for CorpusDataConfig {
    fn default() -> Self {
        Self {
            name: "pretrain_corpus".into(),
            train_files: Vec::new(),
            validation_files: Vec::new(),
            segment_length: 511,
        }
    }
}

/// `hint.data.Registry`: tasks and mixtures defined in gin.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Tasks, usually `[@name/hint.data.Task(), …]`.
    pub tasks: Vec<TaskSpec>,
    /// Mixtures, usually `[@name/hint.data.Mixture(), …]`, added after every task.
    pub mixtures: Vec<MixtureSpec>,
}

/// Everything that decides a run's data.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DataSettings {
    /// `hint.data.Vocabulary`.
    pub vocabulary: VocabularyConfig,
    /// `hint.data.Builtin`.
    pub builtin: BuiltinDataConfig,
    /// `hint.data.BigBench`.
    pub bigbench: BigBenchDataConfig,
    /// `hint.data.SuperNI`.
    pub superni: SuperNiDataConfig,
    /// `hint.data.P3`.
    pub p3: P3DataConfig,
    /// `hint.data.Corpus`.
    pub corpus: CorpusDataConfig,
    /// `hint.data.Registry`.
    pub registry: RegistryConfig,
}

/// Registers the data configurables.
pub fn register(
    registry: &mut hint_config::Registry,
) -> std::result::Result<(), hint_config::ConfigError> {
    registry.register_struct::<VocabularyConfig>("hint.data.Vocabulary")?;
    registry.register_struct::<BuiltinDataConfig>("hint.data.Builtin")?;
    registry.register_struct::<BigBenchDataConfig>("hint.data.BigBench")?;
    registry.register_struct::<SuperNiDataConfig>("hint.data.SuperNI")?;
    registry.register_struct::<P3DataConfig>("hint.data.P3")?;
    registry.register_struct::<CorpusDataConfig>("hint.data.Corpus")?;
    registry.register_struct::<TaskSpec>("hint.data.Task")?;
    registry.register_struct::<MixtureSpec>("hint.data.Mixture")?;
    registry.register_struct::<RegistryConfig>("hint.data.Registry")?;
    Ok(())
}

impl DataSettings {
    /// Reads the data configurables.
    pub fn from_config(config: &Config) -> Result<Self> {
        let get_err = TrainError::from;
        Ok(Self {
            vocabulary: config.get("hint.data.Vocabulary", "").map_err(get_err)?,
            builtin: config.get("hint.data.Builtin", "").map_err(get_err)?,
            bigbench: config.get("hint.data.BigBench", "").map_err(get_err)?,
            superni: config.get("hint.data.SuperNI", "").map_err(get_err)?,
            p3: config.get("hint.data.P3", "").map_err(get_err)?,
            corpus: config.get("hint.data.Corpus", "").map_err(get_err)?,
            registry: config.get("hint.data.Registry", "").map_err(get_err)?,
        })
    }

    fn suite_config(&self) -> SuiteConfig {
        SuiteConfig {
            seed: self.builtin.seed,
            train_instances: self.builtin.train_instances,
            eval_instances: self.builtin.eval_instances,
            ..SuiteConfig::default()
        }
    }

    /// The text a tokenizer is trained on: the built-in suite's and BIG-bench's texts and
    /// the first lines of the corpus files. Empty when no source has text to offer.
    fn tokenizer_corpus(&self) -> Result<Vec<String>> {
        let data_err = TrainError::from;
        let mut texts = Vec::new();
        if self.builtin.enabled {
            texts.extend(BuiltinSuite::generate(self.suite_config()).corpus());
        }
        if !self.bigbench.path.is_empty() {
            texts.push("Input: Output: Definition: 0 1 2 3 4 5 6 7 8 9 [ ] ,".into());
            for task in load_all(&self.bigbench.path).map_err(data_err)? {
                let all: Vec<usize> = (0..task.examples.len()).collect();
                for example in bigbench_examples(&task, &all, &all, 0, self.bigbench.seed) {
                    for field in ["hyper_inputs", "inputs", "targets"] {
                        if let Some(Value::Text(t)) = example.get(field) {
                            texts.push(t.clone());
                        }
                    }
                }
            }
        }
        const CORPUS_LINES: usize = 20_000;
        for pattern in &self.corpus.train_files {
            let path = Path::new(pattern);
            if path.extension().and_then(|e| e.to_str()) == Some("txt") && path.is_file() {
                let text = std::fs::read_to_string(path).map_err(crate::error::io_error(path))?;
                texts.extend(text.lines().take(CORPUS_LINES).map(str::to_string));
            }
        }
        Ok(texts)
    }

    /// The vocabulary: `existing` (a run's own `tokenizer.json`) when it exists, else
    /// `tokenizer_file`, else one trained on the sources' text.
    pub fn vocabulary(&self, existing: Option<&Path>) -> Result<Arc<Vocabulary>> {
        let load = |path: &Path| {
            Vocabulary::from_file(path)
                .map(Arc::new)
                .map_err(|e| {
                    TrainError::invalid(
                        "hint.data.Vocabulary.tokenizer_file",
                        format!("{}: {e}", path.display()),
                    )
                })
        };
        if let Some(path) = existing.filter(|p| p.is_file()) {
            return load(path);
        }
        if !self.vocabulary.tokenizer_file.is_empty() {
            return load(Path::new(&self.vocabulary.tokenizer_file));
        }
        let texts = self.tokenizer_corpus()?;
        if texts.is_empty() {
            return Err(TrainError::invalid(
                "hint.data.Vocabulary.tokenizer_file",
                "no tokenizer: bind `hint.data.Vocabulary.tokenizer_file` (e.g. the T5 tokenizer.json), \
                 or enable a source with text to train one on (builtin, BigBench, Corpus .txt files)",
            ));
        }
        train_tokenizer(
            texts,
            &TokenizerTrainingConfig {
                vocab_size: self.vocabulary.vocab_size,
                ..Default::default()
            },
        )
        .map(Arc::new)
        .map_err(|e| TrainError::Data(e.into()))
    }
}

/// Data of a run: the task registry and its vocabulary.
pub struct RunData {
    /// Tasks and mixtures.
    pub registry: TaskRegistry,
    /// The vocabulary of every feature.
    pub vocabulary: Arc<Vocabulary>,
}

fn superni_variant(name: &str) -> Result<SuperNiVariant> {
    SuperNiVariant::all()
        .into_iter()
        .find(|v| v.registration_name() == name)
        .ok_or_else(|| {
            TrainError::invalid(
                "hint.data.SuperNI.variants",
                format!(
                "unknown variant `{name}` (known: {})",
                SuperNiVariant::all()
                    .iter()
                    .map(|v| v.registration_name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// Builds the task registry of a run: every configured source, then the gin-defined tasks
/// and mixtures. `existing_vocabulary` is the run's own `tokenizer.json`, reused on resume.
pub fn build_data(
    data: &DataSettings,
    lengths: (usize, usize, usize),
    existing_vocabulary: Option<&Path>,
) -> Result<RunData> {
    let data_err = TrainError::from;
    let vocabulary = data.vocabulary(existing_vocabulary)?;
    let mut registry = TaskRegistry::new();
    if data.builtin.enabled {
        let registration = BuiltinRegistration {
            suite: data.suite_config(),
            shots: data.builtin.shots,
            vocab_size: data.vocabulary.vocab_size,
            lengths,
        };
        register_builtin_suite_with(&mut registry, &registration, Arc::clone(&vocabulary))
            .map_err(data_err)?;
    }
    if !data.bigbench.path.is_empty() {
        register_bigbench(
            &mut registry,
            &data.bigbench.path,
            Arc::clone(&vocabulary),
            &BigBenchOptions {
                shots: data.bigbench.shots,
                suffix_shots: data.bigbench.suffix_shots,
                seed: data.bigbench.seed,
                lengths,
            },
        )
        .map_err(data_err)?;
    }
    if !data.superni.path.is_empty() {
        let variants = data
            .superni
            .variants
            .iter()
            .map(|v| superni_variant(v))
            .collect::<Result<Vec<_>>>()?;
        register_superni(
            &mut registry,
            &data.superni.path,
            &variants,
            Arc::clone(&vocabulary),
            &SuperNiOptions {
                split: data.superni.split.clone(),
                train_per_task: data.superni.train_per_task,
                test_per_task: data.superni.test_per_task,
                seed: data.superni.seed,
                lengths,
            },
        )
        .map_err(data_err)?;
    }
    if !data.p3.path.is_empty() {
        let prompts = if data.p3.prompts_file.is_empty() {
            Default::default()
        } else {
            let path = Path::new(&data.p3.prompts_file);
            let text = std::fs::read_to_string(path).map_err(crate::error::io_error(path))?;
            parse_edited_prompts(&text, path).map_err(data_err)?
        };
        register_p3(
            &mut registry,
            Path::new(&data.p3.path),
            &data.p3.train_tasks,
            &data.p3.eval_tasks,
            Arc::clone(&vocabulary),
            &P3Options {
                prompts,
                max_examples: Some(data.p3.max_examples),
                lengths,
            },
        )
        .map_err(data_err)?;
    }
    if !data.corpus.train_files.is_empty() {
        let paths = |files: &[String]| files.iter().map(PathBuf::from).collect::<Vec<_>>();
        register_text_corpus(
            &mut registry,
            &data.corpus.name,
            &paths(&data.corpus.train_files),
            &paths(&data.corpus.validation_files),
            data.corpus.segment_length,
            Arc::clone(&vocabulary),
            lengths,
        )
        .map_err(data_err)?;
    }
    for spec in &data.registry.tasks {
        let task = spec
            .build(&vocabulary, lengths, Path::new(""))
            .map_err(data_err)?;
        registry.add_task(task).map_err(data_err)?;
    }
    for spec in &data.registry.mixtures {
        registry
            .add_mixture(spec.build().map_err(data_err)?)
            .map_err(data_err)?;
    }
    Ok(RunData {
        registry,
        vocabulary,
    })
}
