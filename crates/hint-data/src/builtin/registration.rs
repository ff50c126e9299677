//! Registering the built-in suite as tasks `builtin_<name>` and the mixtures
//! [`TRAIN_MIXTURE`] and [`HELD_OUT_MIXTURE`], and its gin configurable `hint.data.Builtin`
//! ([`BuiltinOptions`]).

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use super::{suite_vocabulary, BuiltinSplit, BuiltinSuite, SuiteConfig};
use crate::error::DataError;
use crate::feature_converter::FeatureLengths;
use crate::preprocessors::Tokenize;
use crate::source::MemorySource;
use crate::task::{Mixture, Task, TaskRegistry};
use crate::vocabulary::Vocabulary;

/// The mixture of the training tasks.
pub const TRAIN_MIXTURE: &str = "builtin_train";
/// The mixture of the held-out tasks.
pub const HELD_OUT_MIXTURE: &str = "builtin_heldout";

/// The lengths of `inputs`, `hyper_inputs`, `targets` of [`register_builtin_suite`] (every
/// example of the suite fits, see the tests).
pub const DEFAULT_LENGTHS: FeatureLengths = FeatureLengths::new(24, 32, 16);

/// The size of the tokenizer [`builtin_vocabulary`] trains on the suite.
pub const BUILTIN_VOCAB_SIZE: u32 = 1000;

/// `hint.data.Builtin`: the built-in instruction suite, the options of
/// [`register_builtin_suite_with`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BuiltinOptions {
    /// Register the suite (the only suite on by default: a run needs no download).
    pub enabled: bool,
    /// Seed of the suite's draws.
    pub seed: u64,
    /// Training instances per task.
    pub train_instances: usize,
    /// Evaluation instances per task.
    pub eval_instances: usize,
    /// Demonstrations put before the instruction in `hyper_inputs` (0 = instruction only).
    pub shots: usize,
}

impl Default for BuiltinOptions {
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

impl BuiltinOptions {
    /// What to draw: the seed and instance counts, with the default demonstrations.
    pub fn suite_config(&self) -> SuiteConfig {
        SuiteConfig {
            seed: self.seed,
            train_instances: self.train_instances,
            eval_instances: self.eval_instances,
            ..SuiteConfig::default()
        }
    }
}

/// Registers the gin configurable `hint.data.Builtin`.
pub fn register(registry: &mut hint_config::Registry) -> Result<(), hint_config::ConfigError> {
    registry.register_struct::<BuiltinOptions>("hint.data.Builtin")?;
    Ok(())
}

/// The tokenizer of the default registration, trained once per process (training takes a
/// moment and every `default_registry()` call would repeat it).
pub fn builtin_vocabulary() -> Result<Arc<Vocabulary>, DataError> {
    static VOCAB: OnceLock<Result<Arc<Vocabulary>, String>> = OnceLock::new();
    VOCAB
        .get_or_init(|| {
            let suite = BuiltinOptions::default().suite_config();
            suite_vocabulary(&BuiltinSuite::generate(suite), BUILTIN_VOCAB_SIZE)
                .map(Arc::new)
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| DataError::Config(format!("built-in suite vocabulary: {e}")))
}

/// Registers the default suite: every catalog task as `builtin_<name>` with splits `train`,
/// `validation` and `test` (the last two are the same evaluation instances), HINT-shaped
/// (instruction → `hyper_inputs`), tokenized with [`builtin_vocabulary`], metrics `rouge_l`
/// and `exact_match`, lengths [`DEFAULT_LENGTHS`]; and the mixtures `builtin_train` (training tasks, uniform) and
/// `builtin_heldout` (held-out tasks, uniform).
pub fn register_builtin_suite(registry: &mut TaskRegistry) -> Result<(), DataError> {
    register_builtin_suite_with(
        registry,
        &BuiltinOptions::default(),
        builtin_vocabulary()?,
        DEFAULT_LENGTHS,
    )
}

/// [`register_builtin_suite`] with other options, vocabulary and lengths (`enabled` is the
/// caller's to check).
pub fn register_builtin_suite_with(
    registry: &mut TaskRegistry,
    config: &BuiltinOptions,
    vocabulary: Arc<Vocabulary>,
    lengths: FeatureLengths,
) -> Result<(), DataError> {
    let suite = BuiltinSuite::generate(config.suite_config());
    let seed = config.seed;
    for task in &suite.tasks {
        let eval = task.examples(BuiltinSplit::Eval, config.shots, seed);
        let source = MemorySource::new()
            .split(
                "train",
                task.examples(BuiltinSplit::Train, config.shots, seed),
            )
            .split("validation", eval.clone())
            .split("test", eval);
        let t = Task::builder(task.registry_name(), source)
            .preprocessor(Tokenize::default())
            .hint_features(&vocabulary, lengths, true)
            .metric("rouge_l")
            .metric("exact_match")
            .build()?;
        registry.add_task(t)?;
    }
    registry.add_mixture(Mixture::uniform(
        TRAIN_MIXTURE,
        suite.train_tasks().map(|t| t.registry_name()),
    ))?;
    registry.add_mixture(Mixture::uniform(
        HELD_OUT_MIXTURE,
        suite.held_out_tasks().map(|t| t.registry_name()),
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::example::FeatureValue;

    #[test]
    fn mixtures_resolve_and_examples_fit_the_lengths() {
        let mut registry = TaskRegistry::new();
        let config = BuiltinOptions {
            train_instances: 40,
            eval_instances: 10,
            ..BuiltinOptions::default()
        };
        let vocab = builtin_vocabulary().unwrap();
        register_builtin_suite_with(&mut registry, &config, Arc::clone(&vocab), DEFAULT_LENGTHS)
            .unwrap();
        let train = registry.mixture(TRAIN_MIXTURE).unwrap();
        let held = registry.mixture(HELD_OUT_MIXTURE).unwrap();
        assert!(train.members.len() >= 32);
        assert!(held.members.len() >= 8);
        let FeatureLengths {
            inputs: li,
            hyper_inputs: lh,
            targets: lt,
        } = DEFAULT_LENGTHS;
        for (name, _) in train.members.iter().chain(&held.members) {
            let task = registry.task(name).unwrap();
            for split in ["train", "test"] {
                for example in task.open(split, &Default::default()).unwrap() {
                    let example = example.unwrap();
                    let len = |f: &str| match &example[f] {
                        FeatureValue::Tokens(t) => t.len(),
                        _ => usize::MAX,
                    };
                    assert!(len("inputs") <= li, "{name}: {example:?}");
                    assert!(len("hyper_inputs") <= lh, "{name}: {example:?}");
                    assert!(len("targets") <= lt, "{name}: {example:?}");
                    let targets = example["targets"].as_tokens().unwrap();
                    assert!(
                        !targets.contains(&Vocabulary::UNK_ID),
                        "{name}: {example:?}"
                    );
                }
            }
        }
    }
}
