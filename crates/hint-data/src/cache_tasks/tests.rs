use std::sync::Arc;

use super::*;
use crate::cache::{read_info, read_json};
use crate::feature_converter::HintConverter;
use crate::features::Feature;
use crate::iterator::{BatchIterator, DatasetConfig};
use crate::registry::{default_registry, toy_vocabulary};
use crate::task::TaskRegistry;
use std::path::PathBuf;

fn batches(registry: &TaskRegistry, name: &str, cache_dirs: Vec<PathBuf>) -> Vec<crate::Batch> {
    let config = DatasetConfig {
        split: "validation".into(),
        seed: 3,
        shuffle_buffer: 32,
        num_epochs: Some(2),
        batch_size: 7,
        use_cached: !cache_dirs.is_empty(),
        cache_dirs,
        ..DatasetConfig::default()
    };
    BatchIterator::new(
        registry,
        name,
        config,
        Arc::new(HintConverter::new(16, 16, 16)),
    )
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

#[test]
fn a_cache_written_then_read_gives_identical_batches() {
    let registry = default_registry().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let task = registry.task("reverse_task").unwrap();
    let summary = cache_task(
        &task,
        dir.path(),
        &CacheOptions {
            min_shards: 3,
            rows_per_group: 16,
            ..CacheOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        summary.splits,
        vec![
            ("train".to_string(), 1000, 0),
            ("validation".to_string(), 100, 0)
        ]
    );
    let task_dir = dir.path().join("reverse_task");
    for file in [
        "COMPLETED",
        "info.train.json",
        "stats.validation.json",
        "validation-00000-of-00003.parquet",
        "validation-00002-of-00003.parquet",
    ] {
        assert!(task_dir.join(file).is_file(), "{file}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["reverse_task"], "no temporary folder left");

    let info = read_info(&task_dir, "train").unwrap();
    assert_eq!(info.num_shards, 3);
    assert_eq!(info.features["inputs"]["dtype"], "int32");
    assert_eq!(info.features["inputs"]["shape"], serde_json::json!([null]));
    assert_eq!(info.features["inputs_pretokenized"]["dtype"], "string");
    let stats = read_json(&task_dir.join("stats.validation.json")).unwrap();
    assert_eq!(stats["examples"], 100);
    assert!(stats["targets_tokens"].as_u64().unwrap() > 300);
    assert!(stats["targets_max_tokens"].as_u64().unwrap() <= 9);
    assert_eq!(
        task.num_examples("validation", &[dir.path().to_path_buf()]),
        Some(100)
    );

    let cached = batches(&registry, "reverse_task", vec![dir.path().to_path_buf()]);
    let direct = batches(&registry, "reverse_task", Vec::new());
    assert_eq!(cached.len(), 29);
    assert!(cached == direct, "cached batches differ");

    // The order of the examples is restored from the round-robin shards.
    let read: Vec<_> = task
        .open(
            "validation",
            &ReadOptions {
                use_cached: true,
                cache_dirs: vec![dir.path().to_path_buf()],
                ..ReadOptions::default()
            },
        )
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let original: Vec<_> = task
        .open("validation", &ReadOptions::default())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(read == original, "cached examples differ");
}

#[test]
fn a_cache_with_other_features_is_refused() {
    let registry = default_registry().unwrap();
    let dir = tempfile::tempdir().unwrap();
    cache_task(
        &registry.task("copy_task").unwrap(),
        dir.path(),
        &CacheOptions::default(),
    )
    .unwrap();
    // The same task, but targets without EOS.
    let vocab = Arc::new(toy_vocabulary().unwrap());
    let mut other = TaskRegistry::new();
    let original = registry.task("copy_task").unwrap();
    let mut builder = Task::builder_shared("copy_task", Arc::clone(original.source()));
    for name in original.output_features().keys() {
        let feature = Feature::new(Arc::clone(&vocab)).add_eos(name != "targets");
        builder = builder.output_feature(name.clone(), feature);
    }
    let changed = other.add_task(builder.build().unwrap()).unwrap();
    let options = ReadOptions {
        use_cached: true,
        cache_dirs: vec![dir.path().to_path_buf()],
        ..ReadOptions::default()
    };
    let err = changed.open("train", &options).unwrap_err().to_string();
    assert!(err.contains("do not match task `copy_task`"), "{err}");
    let missing = registry
        .task("sort_task")
        .unwrap()
        .open("train", &options)
        .unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("no completed cache of task `sort_task`"),
        "{missing}"
    );
    let no_split = original.open("test", &options).unwrap_err();
    assert!(
        no_split.to_string().contains("split `test` is not cached"),
        "{no_split}"
    );
}

#[test]
fn a_failed_cache_leaves_nothing_behind() {
    let vocab = Arc::new(toy_vocabulary().unwrap());
    let mut good = crate::Example::new();
    good.insert("inputs".into(), crate::FeatureValue::from("1 2"));
    let mut bad = crate::Example::new();
    bad.insert("inputs".into(), crate::FeatureValue::Int(3));
    let task = Arc::new(
        Task::builder(
            "broken:v1",
            crate::MemorySource::new().split("train", vec![good, bad]),
        )
        .preprocessor(crate::preprocessors::Tokenize::default())
        .output_feature("inputs", Feature::new(vocab))
        .build()
        .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let err = cache_task(&task, dir.path(), &CacheOptions::default()).unwrap_err();
    assert_eq!(err.field_name(), Some("inputs"), "{err}");
    let parent = dir.path().join("broken");
    assert!(!parent.join("v1").exists());
    assert_eq!(
        std::fs::read_dir(&parent).unwrap().count(),
        0,
        "temporary folder removed"
    );

    // A writer killed mid-cache (SIGKILL, a full disk) leaves its temporary folder and
    // lock file; the next caching into the folder removes both.
    let killed = parent.join(".tmp-v1-999999");
    std::fs::create_dir(&killed).unwrap();
    std::fs::write(killed.join("train.parquet-00000-of-00001"), vec![0u8; 1024]).unwrap();
    std::fs::write(parent.join(".tmp-v1-999999.lock"), "").unwrap();
    let summary = cache_task(
        &task,
        dir.path(),
        &CacheOptions {
            skip_bad_records: true,
            ..CacheOptions::default()
        },
    )
    .unwrap();
    assert_eq!(summary.splits, vec![("train".to_string(), 1, 1)]);
    assert!(parent.join("v1").join("COMPLETED").is_file());
    let left: Vec<_> = std::fs::read_dir(&parent)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec!["v1"],
        "the killed writer's leftovers are removed"
    );
}

/// Stops once it has been told of `stop_at` examples.
struct StopAt {
    stop_at: u64,
    seen: Vec<(String, u64)>,
}

impl CacheMonitor for StopAt {
    fn on_examples(&mut self, _task: &str, split: &str, examples: u64) {
        self.seen.push((split.to_string(), examples));
    }
    fn should_stop(&self) -> bool {
        self.seen.last().is_some_and(|(_, n)| *n >= self.stop_at)
    }
}

#[test]
fn caching_reports_progress_and_stops_when_asked_leaving_nothing() {
    let registry = default_registry().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let task = registry.task("reverse_task").unwrap();
    let mut monitor = StopAt {
        stop_at: u64::MAX,
        seen: Vec::new(),
    };
    cache_task_monitored(&task, dir.path(), &CacheOptions::default(), &mut monitor).unwrap();
    assert_eq!(
        monitor.seen,
        vec![("train".to_string(), 1000), ("validation".to_string(), 100)]
    );

    let other = tempfile::tempdir().unwrap();
    // Asked to stop before the first example (a Ctrl-C during the first split).
    let mut monitor = StopAt {
        stop_at: 0,
        seen: vec![("train".into(), 0)],
    };
    let err = cache_task_monitored(&task, other.path(), &CacheOptions::default(), &mut monitor)
        .unwrap_err();
    assert!(
        matches!(&err, DataError::Interrupted { task } if task == "reverse_task"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(other.path()).unwrap().count(),
        0,
        "an interrupted cache leaves nothing"
    );
}
