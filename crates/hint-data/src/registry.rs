//! The tasks and mixtures that exist without any configuration: what `hint tasks list`
//! shows and what `hint cache-tasks` can cache.
//!
//! [`default_registry`] calls one small `register_*` function per family, so that each
//! family (the toy tasks here, the built-in instruction suite, Super-NI or BIG-bench builders
//! when their data is configured) adds itself with one line.

use std::str::FromStr;
use std::sync::Arc;

use tokenizers::Tokenizer;

use crate::error::DataError;
use crate::example::{Example, FeatureValue};
use crate::features::Feature;
use crate::preprocessors::{HintSplit, Template, Tokenize};
use crate::rng::SplitMix64;
use crate::source::MemorySource;
use crate::task::{Mixture, Task, TaskRegistry};
use crate::vocabulary::Vocabulary;

/// A registry with every built-in family registered.
pub fn default_registry() -> Result<TaskRegistry, DataError> {
    let mut registry = TaskRegistry::new();
    register_toy_tasks(&mut registry)?;
    crate::builtin::register_builtin_suite(&mut registry)?;
    Ok(registry)
}

/// A word-level vocabulary of the ten digits and the toy tasks' words, with T5's special
/// ids (pad 0, eos 1, unk 2); it needs no file, so the toy tasks work anywhere.
pub fn toy_vocabulary() -> Result<Vocabulary, DataError> {
    let mut vocab = serde_json::Map::new();
    for (i, word) in ["<pad>", "</s>", "<unk>"]
        .into_iter()
        .map(str::to_string)
        .chain((0..10).map(|d| d.to_string()))
        .chain(
            [
                "copy",
                "reverse",
                "sort",
                "the",
                "list",
                "repeat",
                "it",
                "backwards",
                "in",
                "order",
                "ascending",
                ".",
            ]
            .into_iter()
            .map(str::to_string),
        )
        .enumerate()
    {
        vocab.insert(word, serde_json::json!(i));
    }
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    });
    let tokenizer = Tokenizer::from_str(&json.to_string())
        .map_err(|e| DataError::Config(format!("the toy vocabulary does not load: {e}")))?;
    Ok(Vocabulary::from_tokenizer(tokenizer))
}

/// The development tasks `copy_task`, `reverse_task` and `sort_task` over lists of digits
/// (HINT-shaped: the instruction goes to `hyper_inputs`), and the mixture `toy_mixture`.
pub fn register_toy_tasks(registry: &mut TaskRegistry) -> Result<(), DataError> {
    let vocab = Arc::new(toy_vocabulary()?);
    type Op = fn(&mut Vec<u64>);
    let tasks: [(&str, &str, Op); 3] = [
        ("copy_task", "copy the list .", |_| {}),
        ("reverse_task", "reverse the list .", |v| v.reverse()),
        ("sort_task", "sort the list in ascending order .", |v| {
            v.sort_unstable()
        }),
    ];
    for (t, (name, instruction, op)) in tasks.into_iter().enumerate() {
        let generate = |split: u64, n: usize| -> Vec<Example> {
            let mut rng = SplitMix64::derive(&[t as u64, split]);
            (0..n)
                .map(|_| {
                    let len = rng.range(3, 9) as usize;
                    let input: Vec<u64> = (0..len).map(|_| rng.range(0, 10)).collect();
                    let mut output = input.clone();
                    op(&mut output);
                    let join =
                        |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(" ");
                    let mut e = Example::new();
                    e.insert("instruction".into(), FeatureValue::from(instruction));
                    e.insert("input".into(), FeatureValue::Text(join(&input)));
                    e.insert("output".into(), FeatureValue::Text(join(&output)));
                    e.insert("task_names".into(), FeatureValue::Int(t as i64));
                    e
                })
                .collect()
        };
        let source = MemorySource::new()
            .split("train", generate(0, 1000))
            .split("validation", generate(1, 100));
        let task = Task::builder(name, source)
            .preprocessor(HintSplit::new("{instruction}", "{input}")?)
            .preprocessor(Template::new("targets", "{output}")?)
            .preprocessor(Tokenize::default())
            .output_feature("inputs", Feature::new(Arc::clone(&vocab)).length(16))
            .output_feature("hyper_inputs", Feature::new(Arc::clone(&vocab)).length(16))
            .output_feature("targets", Feature::new(Arc::clone(&vocab)).length(16))
            .metric("exact_match")
            .build()?;
        registry.add_task(task)?;
    }
    registry.add_mixture(Mixture::uniform(
        "toy_mixture",
        ["copy_task", "reverse_task", "sort_task"],
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toy_tasks_tokenize_with_the_toy_vocabulary() {
        let registry = default_registry().unwrap();
        let task = registry.task("reverse_task").unwrap();
        let example = task
            .open("train", &Default::default())
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let vocab = &task.output_features()["targets"].vocabulary;
        let inputs = example["inputs_pretokenized"].as_text().unwrap();
        let targets = vocab
            .decode(example["targets"].as_tokens().unwrap())
            .unwrap();
        let mut reversed: Vec<&str> = inputs.split(' ').collect();
        reversed.reverse();
        assert_eq!(targets, reversed.join(" "));
        assert_eq!(
            example["hyper_inputs"].as_tokens().unwrap().last(),
            Some(&1)
        );
    }
}
