use super::*;
use crate::example::FeatureValue;
use crate::feature_converter::{EncDecConverter, HintConverter};
use crate::features::Feature;
use crate::preprocessors::Tokenize;
use crate::registry::{default_registry, toy_vocabulary};
use crate::source::MemorySource;
use crate::task::{Mixture, Task};

fn hint() -> Arc<dyn FeatureConverter> {
    Arc::new(HintConverter::new(16, 16, 16))
}

fn take(iterator: &mut impl Iterator<Item = Result<Batch, DataError>>, n: usize) -> Vec<Batch> {
    iterator.take(n).collect::<Result<_, _>>().unwrap()
}

/// A registry with a small task (so epochs roll over quickly) next to the toy tasks.
fn registry_with_small_task() -> TaskRegistry {
    let mut registry = default_registry().unwrap();
    let vocab = Arc::new(toy_vocabulary().unwrap());
    let examples = (0..23)
        .map(|i| {
            let mut e = Example::new();
            e.insert(
                "inputs".into(),
                FeatureValue::Text(format!("{} {}", i % 10, (i / 10) % 10)),
            );
            e.insert("hyper_inputs".into(), FeatureValue::from("repeat it"));
            e.insert("targets".into(), FeatureValue::Text(format!("{}", i % 10)));
            e.insert("task_names".into(), FeatureValue::Int(99));
            e
        })
        .collect();
    let task = Task::builder("small_task", MemorySource::new().split("train", examples))
        .preprocessor(Tokenize::default())
        .output_feature("inputs", Feature::new(Arc::clone(&vocab)))
        .output_feature("hyper_inputs", Feature::new(Arc::clone(&vocab)))
        .output_feature("targets", Feature::new(vocab))
        .build()
        .unwrap();
    registry.add_task(task).unwrap();
    registry
        .add_mixture(Mixture::new(
            "small_mix",
            [
                ("small_task", crate::task::Rate::Explicit(2.0)),
                ("toy_mixture", crate::task::Rate::Explicit(1.0)),
            ],
        ))
        .unwrap();
    registry
}

fn config() -> DatasetConfig {
    DatasetConfig {
        seed: 5,
        shuffle_buffer: 16,
        batch_size: 6,
        ..DatasetConfig::default()
    }
}

#[test]
fn a_restored_state_yields_exactly_the_same_next_batches() {
    let registry = registry_with_small_task();
    for converter in [
        hint(),
        Arc::new(EncDecConverter::new(16, 16, true)) as Arc<dyn FeatureConverter>,
    ] {
        let mut original =
            BatchIterator::new(&registry, "small_mix", config(), Arc::clone(&converter)).unwrap();
        let first = take(&mut original, 15);
        let state = original.state();
        let rest = take(&mut original, 25);
        // Epochs of the 23-example task rolled over before and after the save point.
        assert!(state.members[0].epoch >= 1, "{:?}", state.members[0]);
        assert!(original.state().members[0].epoch > state.members[0].epoch);
        let saved = serde_json::to_string(&state).unwrap();
        let state: IteratorState = serde_json::from_str(&saved).unwrap();
        let mut resumed = BatchIterator::restore(
            &registry,
            "small_mix",
            config(),
            Arc::clone(&converter),
            &state,
        )
        .unwrap();
        assert_eq!(take(&mut resumed, 25), rest);
        // And a fresh iterator repeats the whole run.
        let mut again = BatchIterator::new(&registry, "small_mix", config(), converter).unwrap();
        assert_eq!(take(&mut again, 15), first);
    }
}

#[test]
fn prefetch_yields_the_same_batches_and_a_resumable_state() {
    let registry = registry_with_small_task();
    let plain: Vec<Batch> = take(
        &mut BatchIterator::new(&registry, "small_mix", config(), hint()).unwrap(),
        20,
    );
    let mut prefetch = BatchIterator::new(&registry, "small_mix", config(), hint())
        .unwrap()
        .prefetch(3);
    let head = take(&mut prefetch, 8);
    assert_eq!(head, plain[..8]);
    let state = prefetch.state().clone();
    assert_eq!(state.batches, 8);
    drop(prefetch);
    let mut resumed = BatchIterator::restore(&registry, "small_mix", config(), hint(), &state)
        .unwrap()
        .prefetch(2);
    assert_eq!(take(&mut resumed, 12), plain[8..]);
}

#[test]
fn different_seeds_shuffle_differently_and_rates_are_respected() {
    let registry = registry_with_small_task();
    let tasks = |seed: u64| -> Vec<String> {
        let config = DatasetConfig { seed, ..config() };
        take(
            &mut BatchIterator::new(&registry, "small_mix", config, hint()).unwrap(),
            100,
        )
        .into_iter()
        .flat_map(|b| b.tasks)
        .collect()
    };
    let a = tasks(1);
    assert_ne!(a, tasks(2));
    let small = a.iter().filter(|t| *t == "small_task").count() as f64 / a.len() as f64;
    assert!((small - 2.0 / 3.0).abs() < 0.05, "{small}");
}

#[test]
fn one_epoch_without_shuffle_reads_everything_once_across_shards() {
    let registry = registry_with_small_task();
    let targets = |shard: ShardInfo, batch_size: usize, drop_remainder: bool| -> Vec<i64> {
        let config = DatasetConfig {
            shuffle: false,
            num_epochs: Some(1),
            shard,
            batch_size,
            drop_remainder,
            ..config()
        };
        let batches = take(
            &mut BatchIterator::new(&registry, "small_task", config, hint()).unwrap(),
            1000,
        );
        batches
            .iter()
            .flat_map(|b| {
                let f = b.get("encoder_input_tokens").unwrap();
                (0..b.len())
                    .map(|i| f.row(i)[0] * 100 + f.row(i)[1])
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let all = targets(ShardInfo::default(), 5, false);
    assert_eq!(all.len(), 23);
    assert_eq!(targets(ShardInfo::default(), 5, true).len(), 20);
    let mut sharded: Vec<i64> = (0..3)
        .flat_map(|index| {
            targets(
                ShardInfo {
                    index,
                    num_shards: 3,
                },
                4,
                false,
            )
        })
        .collect();
    let mut sorted = all.clone();
    sorted.sort_unstable();
    sharded.sort_unstable();
    assert_eq!(sharded, sorted);
}

#[test]
fn grouped_batches_come_from_one_task() {
    let registry = default_registry().unwrap();
    let config = DatasetConfig {
        group_by_task: true,
        ..config()
    };
    let batches = take(
        &mut BatchIterator::new(&registry, "toy_mixture", config, hint()).unwrap(),
        12,
    );
    let mut seen = std::collections::BTreeSet::new();
    for batch in &batches {
        assert!(batch.tasks.iter().all(|t| *t == batch.tasks[0]));
        seen.insert(batch.tasks[0].clone());
        let (unique, _) = batch
            .get("hyper_encoder_input_tokens")
            .unwrap()
            .unique_rows();
        assert_eq!(unique.shape[0], 1, "one instruction per batch");
    }
    assert!(seen.len() > 1);
}

#[test]
fn restoring_into_another_configuration_is_refused() {
    let registry = registry_with_small_task();
    let mut iterator = BatchIterator::new(&registry, "small_mix", config(), hint()).unwrap();
    take(&mut iterator, 2);
    let state = iterator.state();
    let other = DatasetConfig {
        seed: 6,
        ..config()
    };
    let err = BatchIterator::restore(&registry, "small_mix", other, hint(), &state).unwrap_err();
    assert!(err.to_string().contains("the seed was 5, is 6"), "{err}");
    assert!(BatchIterator::restore(&registry, "toy_mixture", config(), hint(), &state).is_err());
}
