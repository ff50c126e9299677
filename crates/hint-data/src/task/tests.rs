use std::io::Write;

use super::*;
use crate::example::FeatureValue;
use crate::preprocessors::{Template, Tokenize};
use crate::registry::toy_vocabulary;
use crate::source::{FileSource, Format};

/// A task without data whose source declares `n` training examples.
fn counted_task(name: &str, n: u64) -> Task {
    let vocab = Arc::new(toy_vocabulary().unwrap());
    let source = crate::source::FnSource::new(vec!["train".into()], |_, _| {
        Ok(Box::new(std::iter::empty()))
    })
    .with_num_examples("train", n);
    Task::builder(name, source)
        .output_feature("targets", Feature::new(vocab))
        .build()
        .unwrap()
}

#[test]
fn registry_lists_filters_and_refuses_duplicates() {
    let mut registry = TaskRegistry::new();
    registry
        .add_task(counted_task("super_glue_rte", 10))
        .unwrap();
    registry
        .add_task(counted_task("super_glue_cb", 10))
        .unwrap();
    registry.add_task(counted_task("anli_r1", 10)).unwrap();
    registry
        .add_mixture(Mixture::uniform(
            "glue_mix",
            ["super_glue_rte", "super_glue_cb"],
        ))
        .unwrap();
    let all: Vec<String> = registry.list(None).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        all,
        ["anli_r1", "glue_mix", "super_glue_cb", "super_glue_rte"]
    );
    let glue = registry.list(Some(&Regex::new("glue").unwrap()));
    assert_eq!(glue.len(), 3);
    assert_eq!(glue[0], ("glue_mix".to_string(), EntryKind::Mixture));
    let full = registry.tasks_matching(&Regex::new("super_glue_.*").unwrap());
    assert_eq!(full.len(), 2);
    assert!(registry
        .tasks_matching(&Regex::new("glue").unwrap())
        .is_empty());
    assert!(matches!(
        registry.add_task(counted_task("anli_r1", 1)),
        Err(DataError::Duplicate(_))
    ));
}

#[test]
fn unknown_mixture_members_suggest_the_closest_name() {
    let mut registry = TaskRegistry::new();
    registry
        .add_task(counted_task("natural_instructions", 10))
        .unwrap();
    let err = registry
        .add_mixture(Mixture::uniform("m", ["natural_instruction"]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown task or mixture `natural_instruction` (did you mean `natural_instructions`?)"
    );
    let err = registry.task("zzz_nothing_like_it").unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown task or mixture `zzz_nothing_like_it`"
    );
}

/// The table of `seqio.md` §3: cap 500,000 and temperatures 1, 2, 4.
#[test]
fn example_proportional_rates_match_seqio() {
    let mut registry = TaskRegistry::new();
    for (name, n) in [("a", 1_000), ("b", 10_000), ("c", 1_000_000)] {
        registry.add_task(counted_task(name, n)).unwrap();
    }
    let expected = [
        (1.0, [0.0020, 0.0196, 0.9785]),
        (2.0, [0.0377, 0.1192, 0.8431]),
        (4.0, [0.1332, 0.2369, 0.6299]),
    ];
    for (temperature, proportions) in expected {
        let name = format!("t{temperature}");
        let rate = Rate::ExampleProportional {
            maximum: Some(500_000.0),
            scale: 1.0,
            temperature,
        };
        registry
            .add_mixture(Mixture::new(&name, [("a", rate), ("b", rate), ("c", rate)]))
            .unwrap();
        let resolved = registry.resolve(&name, "train", &[]).unwrap();
        for ((_, got), want) in resolved.iter().zip(proportions) {
            assert!(
                (got - want).abs() < 1e-4,
                "T={temperature}: {got} vs {want}"
            );
        }
    }
    assert_eq!(
        Rate::proportional(Some(500_000.0)).value(Some(1_000_000)),
        Some(500_000.0)
    );
}

#[test]
fn sub_mixtures_weight_their_members_and_sum_duplicates() {
    let mut registry = TaskRegistry::new();
    for name in ["a", "b", "c"] {
        registry.add_task(counted_task(name, 10)).unwrap();
    }
    registry
        .add_mixture(Mixture::new(
            "inner",
            [("a", Rate::Explicit(1.0)), ("b", Rate::Explicit(3.0))],
        ))
        .unwrap();
    registry
        .add_mixture(Mixture::new(
            "outer",
            [
                ("inner", Rate::Explicit(2.0)),
                ("c", Rate::Explicit(1.0)),
                ("a", Rate::Explicit(1.0)),
            ],
        ))
        .unwrap();
    let resolved: Vec<(String, f64)> = registry
        .resolve("outer", "train", &[])
        .unwrap()
        .into_iter()
        .map(|(t, r)| (t.name().to_string(), r))
        .collect();
    // inner = 2/4 split 1:3 → a 0.125, b 0.375; c 0.25; a += 0.25.
    let want = [("a", 0.375), ("b", 0.375), ("c", 0.25)];
    for ((name, rate), (want_name, want_rate)) in resolved.iter().zip(want) {
        assert_eq!(name, want_name);
        assert!((rate - want_rate).abs() < 1e-12);
    }
    assert!(registry
        .add_mixture(Mixture::new("bad", [("a", Rate::Explicit(-1.0))]))
        .is_err());
}

fn jsonl_task(dir: &std::path::Path, lines: &str) -> Arc<Task> {
    let path = dir.join("data.jsonl");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let vocab = Arc::new(toy_vocabulary().unwrap());
    Arc::new(
        Task::builder(
            "jsonl_task",
            FileSource::new(Format::JsonLines).split("train", vec![path]),
        )
        .preprocessor(Template::new("inputs", "copy {input}").unwrap())
        .preprocessor(Tokenize::default())
        .output_feature("inputs", Feature::new(vocab))
        .build()
        .unwrap(),
    )
}

#[test]
fn task_errors_name_task_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let task = jsonl_task(
        dir.path(),
        "{\"input\": \"1 2\"}\n{\"inpt\": \"3\"}\n{\"input\": \"4\"}\n",
    );
    let items: Vec<_> = task
        .open("train", &ReadOptions::default())
        .unwrap()
        .collect();
    assert_eq!(items.len(), 3);
    assert_eq!(
        items[0].as_ref().unwrap()["inputs"],
        FeatureValue::Tokens(vec![13, 4, 5, 1])
    );
    let err = items[1].as_ref().unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("task `jsonl_task`, split `train`, "),
        "{text}"
    );
    assert!(
        text.contains("data.jsonl line 2: field `input`: missing"),
        "{text}"
    );
    assert_eq!(err.field_name(), Some("input"));

    let mut stream = task
        .open(
            "train",
            &ReadOptions {
                skip_bad_records: true,
                ..ReadOptions::default()
            },
        )
        .unwrap();
    let kept: Vec<_> = stream.by_ref().collect::<Result<_, _>>().unwrap();
    assert_eq!(kept.len(), 2);
    assert_eq!(stream.skipped(), 1);

    let err = task.open("test", &ReadOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "task `jsonl_task` has no split `test` (it has: train)"
    );
}

#[test]
fn preprocessing_is_the_same_in_parallel_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let lines: String = (0..200)
        .map(|i| format!("{{\"input\": \"{} {}\"}}\n", i % 10, i % 7))
        .collect();
    let task = jsonl_task(dir.path(), &lines);
    let all = |chunk: usize| -> Vec<Example> {
        task.open("train", &ReadOptions::default())
            .unwrap()
            .with_chunk_size(chunk)
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let sequential = all(1);
    assert_eq!(sequential.len(), 200);
    assert_eq!(sequential, all(64));
}
