//! Registering the built-in suite as tasks `builtin_<name>` and the mixtures
//! [`TRAIN_MIXTURE`] and [`HELD_OUT_MIXTURE`].

use std::sync::{Arc, OnceLock};

use super::{suite_vocabulary, BuiltinSplit, BuiltinSuite, SuiteConfig};
use crate::error::DataError;
use crate::preprocessors::Tokenize;
use crate::source::MemorySource;
use crate::task::{Mixture, Task, TaskRegistry};
use crate::vocabulary::Vocabulary;

/// The mixture of the training tasks.
pub const TRAIN_MIXTURE: &str = "builtin_train";
/// The mixture of the held-out tasks.
pub const HELD_OUT_MIXTURE: &str = "builtin_heldout";

/// How the suite is registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltinRegistration {
    /// What to draw.
    pub suite: SuiteConfig,
    /// Demonstrations put before the instruction in `hyper_inputs` (0 = instruction only).
    pub shots: usize,
    /// Size of the tokenizer trained on the suite.
    pub vocab_size: u32,
    /// Lengths of `inputs`, `hyper_inputs`, `targets` (all examples fit, see the tests).
    pub lengths: (usize, usize, usize),
}

impl Default for BuiltinRegistration {
    fn default() -> Self {
        Self {
            suite: SuiteConfig::default(),
            shots: 0,
            vocab_size: 1000,
            lengths: (24, 32, 16),
        }
    }
}

/// The tokenizer of the default registration, trained once per process (training takes a
/// moment and every `default_registry()` call would repeat it).
pub fn builtin_vocabulary() -> Result<Arc<Vocabulary>, DataError> {
    static VOCAB: OnceLock<Result<Arc<Vocabulary>, String>> = OnceLock::new();
    VOCAB
        .get_or_init(|| {
            let config = BuiltinRegistration::default();
            suite_vocabulary(&BuiltinSuite::generate(config.suite), config.vocab_size)
                .map(Arc::new)
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| DataError::Config(format!("built-in suite vocabulary: {e}")))
}

/// Registers the default suite: every catalog task as `builtin_<name>` with splits `train`,
/// `validation` and `test` (the last two are the same evaluation instances), HINT-shaped
/// (instruction → `hyper_inputs`), tokenized with [`builtin_vocabulary`], metrics `rouge_l`
/// and `exact_match`; and the mixtures `builtin_train` (training tasks, uniform) and
/// `builtin_heldout` (held-out tasks, uniform).
pub fn register_builtin_suite(registry: &mut TaskRegistry) -> Result<(), DataError> {
    register_builtin_suite_with(
        registry,
        &BuiltinRegistration::default(),
        builtin_vocabulary()?,
    )
}

/// [`register_builtin_suite`] with another configuration and vocabulary.
pub fn register_builtin_suite_with(
    registry: &mut TaskRegistry,
    config: &BuiltinRegistration,
    vocabulary: Arc<Vocabulary>,
) -> Result<(), DataError> {
    let suite = BuiltinSuite::generate(config.suite);
    let seed = config.suite.seed;
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
            .hint_features(&vocabulary, config.lengths, true)
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
    use crate::example::Value;

    #[test]
    fn mixtures_resolve_and_examples_fit_the_lengths() {
        let mut registry = TaskRegistry::new();
        let config = BuiltinRegistration {
            suite: SuiteConfig {
                train_instances: 40,
                eval_instances: 10,
                ..SuiteConfig::default()
            },
            ..BuiltinRegistration::default()
        };
        let vocab = builtin_vocabulary().unwrap();
        register_builtin_suite_with(&mut registry, &config, Arc::clone(&vocab)).unwrap();
        let train = registry.mixture(TRAIN_MIXTURE).unwrap();
        let held = registry.mixture(HELD_OUT_MIXTURE).unwrap();
        assert!(train.members.len() >= 32);
        assert!(held.members.len() >= 8);
        let (li, lh, lt) = config.lengths;
        for (name, _) in train.members.iter().chain(&held.members) {
            let task = registry.task(name).unwrap();
            for split in ["train", "test"] {
                for example in task.open(split, &Default::default()).unwrap() {
                    let example = example.unwrap();
                    let len = |f: &str| match &example[f] {
                        Value::Tokens(t) => t.len(),
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
