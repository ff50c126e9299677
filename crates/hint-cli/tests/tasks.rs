//! `hint tasks` and `hint cache-tasks` as a user runs them.

use std::process::Command;

fn hint() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hint"))
}

fn run(args: &[&str]) -> (bool, String, String) {
    let output = hint().args(args).output().unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn tasks_list_shows_tasks_and_mixtures_and_filters_by_regex() {
    let (ok, stdout, stderr) = run(&["tasks", "list"]);
    assert!(ok, "{stderr}");
    assert!(stdout.lines().any(|l| l == "copy_task\ttask"), "{stdout}");
    assert!(
        stdout.lines().any(|l| l == "toy_mixture\tmixture"),
        "{stdout}"
    );
    let (ok, stdout, _) = run(&["tasks", "list", "--regex", "^rev"]);
    assert!(ok);
    assert_eq!(stdout, "reverse_task\ttask\n");
}

#[test]
fn tasks_show_renders_tokenized_examples_with_their_decoding() {
    let (ok, stdout, stderr) = run(&["tasks", "show", "sort_task", "--n", "2"]);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("task sort_task (train)\n"), "{stdout}");
    assert!(stdout.contains("preprocessors: hint_split"), "{stdout}");
    assert_eq!(stdout.matches("example ").count(), 2, "{stdout}");
    assert!(
        stdout.contains(
            "hyper_inputs: [15, 16, 17, 21, 23, 22, 24, 1] = \"sort the list in ascending order .\""
        ),
        "{stdout}"
    );
    let (ok, stdout, _) = run(&["tasks", "show", "toy_mixture", "--n", "1"]);
    assert!(ok);
    assert!(
        stdout.contains("copy_task") && stdout.contains("rate 0.3333"),
        "{stdout}"
    );
}

#[test]
fn an_unknown_task_fails_with_a_suggestion() {
    let (ok, _, stderr) = run(&["tasks", "show", "revers_task"]);
    assert!(!ok);
    assert!(stderr.contains("did you mean `reverse_task`?"), "{stderr}");
}

#[test]
fn cache_tasks_writes_a_completed_parquet_cache() {
    let dir = tempfile::tempdir().unwrap();
    let out = format!("--output_cache_dir={}", dir.path().display());
    let (ok, stdout, stderr) = run(&[
        "cache-tasks",
        "--tasks=(copy|sort)_task",
        &out,
        "--min_shards",
        "2",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("copy_task\ttrain\t1000 examples\t0 skipped"),
        "{stdout}"
    );
    for task in ["copy_task", "sort_task"] {
        let task_dir = dir.path().join(task);
        assert!(task_dir.join("COMPLETED").is_file());
        assert!(task_dir.join("train-00001-of-00002.parquet").is_file());
        assert!(task_dir.join("stats.validation.json").is_file());
    }
    assert!(!dir.path().join("reverse_task").exists());
    let (ok, _, stderr) = run(&["cache-tasks", "--tasks=nothing", &out]);
    assert!(!ok);
    assert!(stderr.contains("no task matches"), "{stderr}");
}

#[test]
fn tasks_show_tokenizes_with_the_vocabulary_hint_train_uses_by_default() {
    // The embedded default trains an 800-token vocabulary (configs/builtin.gin); another
    // vocabulary showed ids the model has no embedding for.
    let (ok, stdout, stderr) = run(&["tasks", "show", "builtin_pair_add", "--n", "3"]);
    assert!(ok, "{stderr}");
    let ids: Vec<u64> = stdout
        .lines()
        .filter_map(|l| l.split_once(": [")?.1.split_once(']').map(|(ids, _)| ids))
        .flat_map(|ids| ids.split(", ").filter_map(|id| id.parse().ok()))
        .collect();
    assert!(ids.len() > 10, "{stdout}");
    assert!(
        ids.iter().all(|&id| id < 800),
        "ids beyond the vocabulary: {stdout}"
    );
}
