#![allow(missing_docs)]
// The bench says why it measures nothing when the tokenizer is absent.
#![allow(clippy::print_stderr)]
//! Data-pipeline throughput with the real T5 tokenizer: tokenize + convert short HINT
//! examples (goal: at least 50,000 examples/s on 2 cores), and reading a Parquet cache.
//!
//! The tokenizer comes from `$HINT_SHARED_DATA/t5-tokenizer/tokenizer.json`, else
//! `../shared/data/t5-tokenizer/tokenizer.json` next to the workspace; without it the bench
//! says so and measures nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hint_data::cache_tasks::{cache_task, CacheOptions};
use hint_data::feature_converter::HintConverter;
use hint_data::preprocessors::{HintSplit, Template, Tokenize};
use hint_data::{
    BatchIterator, DatasetConfig, Example, Feature, FeatureValue, MemorySource, Task, TaskRegistry,
    Vocabulary,
};

const N: usize = 20_000;

fn tokenizer_path() -> Option<PathBuf> {
    let shared = std::env::var_os("HINT_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    let path = shared.join("t5-tokenizer/tokenizer.json");
    path.is_file().then_some(path)
}

const WORDS: [&str; 16] = [
    "the", "list", "numbers", "reverse", "sort", "sentence", "answer", "question", "given",
    "output", "each", "word", "count", "letters", "first", "element",
];

fn sentence(seed: usize, len: usize) -> String {
    (0..len)
        .map(|j| WORDS[(seed * 31 + j * 17 + j * j) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

fn registry(vocab: Arc<Vocabulary>) -> TaskRegistry {
    let examples: Vec<Example> = (0..N)
        .map(|i| {
            let mut e = Example::new();
            e.insert(
                "definition".into(),
                FeatureValue::Text(format!("In this task, {}.", sentence(i % 50, 12))),
            );
            e.insert(
                "input".into(),
                FeatureValue::Text(format!("{} {}", sentence(i, 10), i)),
            );
            e.insert("output".into(), FeatureValue::Text(sentence(i + 1, 3)));
            e
        })
        .collect();
    let task = Task::builder("bench_task", MemorySource::new().split("train", examples))
        .preprocessor(HintSplit::new("{definition}", "{input}").unwrap())
        .preprocessor(Template::new("targets", "{output}").unwrap())
        .preprocessor(Tokenize {
            copy_pretokenized: false,
            ..Tokenize::default()
        })
        .output_feature("inputs", Feature::new(Arc::clone(&vocab)))
        .output_feature("hyper_inputs", Feature::new(Arc::clone(&vocab)))
        .output_feature("targets", Feature::new(vocab))
        .build()
        .unwrap();
    let mut registry = TaskRegistry::new();
    registry.add_task(task).unwrap();
    registry
}

fn run_epoch(registry: &TaskRegistry, config: &DatasetConfig) -> usize {
    let converter = Arc::new(HintConverter::new(64, 64, 16));
    BatchIterator::new(registry, "bench_task", config.clone(), converter)
        .unwrap()
        .map(|b| b.unwrap().len())
        .sum()
}

fn benches(c: &mut Criterion) {
    let Some(path) = tokenizer_path() else {
        eprintln!("data bench skipped: no t5-tokenizer/tokenizer.json (set HINT_SHARED_DATA)");
        return;
    };
    let vocab = Arc::new(Vocabulary::from_file(&path).unwrap());
    let registry = registry(vocab);
    let config = DatasetConfig {
        shuffle: false,
        shuffle_buffer: 4096,
        num_epochs: Some(1),
        batch_size: 256,
        ..DatasetConfig::default()
    };

    let mut group = c.benchmark_group("data");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("tokenize_convert_short_examples", |b| {
        b.iter(|| assert_eq!(run_epoch(&registry, &config), N))
    });

    let dir = tempfile::tempdir().unwrap();
    let task = registry.task("bench_task").unwrap();
    cache_task(
        &task,
        dir.path(),
        &CacheOptions {
            min_shards: 2,
            ..CacheOptions::default()
        },
    )
    .unwrap();
    let cached = DatasetConfig {
        use_cached: true,
        cache_dirs: vec![dir.path().to_path_buf()],
        ..config.clone()
    };
    group.bench_function("parquet_cache_read_convert", |b| {
        b.iter(|| assert_eq!(run_epoch(&registry, &cached), N))
    });
    group.finish();
}

criterion_group!(data, benches);
criterion_main!(data);
