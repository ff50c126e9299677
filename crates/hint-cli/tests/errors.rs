//! Each kind of error reaches the user with its context: what `hint` was doing, then the
//! cause with the file, binding or tensor it names. One test per kind; each fails before
//! a step is trained.

use std::path::Path;
use std::process::Command;

fn builtin_gin() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs/builtin.gin")
        .display()
        .to_string()
}

/// `hint train` on a tiny built-in run with `extra` flags: (success, stderr).
fn train(model_dir: &Path, extra: &[String]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_hint"))
        .arg("train")
        .arg(format!("--gin_file={}", builtin_gin()))
        .arg(format!("--gin.MODEL_DIR=\"{}\"", model_dir.display()))
        .args([
            "--gin.TRAIN_STEPS=2",
            "--gin.BATCH_SIZE=4",
            "--gin.T5Config.d_model=32",
            "--gin.T5Config.d_kv=8",
            "--gin.T5Config.d_ff=64",
            "--gin.T5Config.vocab_size=400",
            "--gin.Vocabulary.vocab_size=400",
            "--gin.Builtin.train_instances=20",
            "--gin.Builtin.eval_instances=2",
            "--gin.Run.device=\"cpu\"",
        ])
        .args(extra)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

fn expect_failure(extra: &[String], needles: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, stderr) = train(&tmp.path().join("run"), extra);
    assert!(!ok, "succeeded with {extra:?}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "`{needle}` missing from:\n{stderr}"
        );
    }
    assert!(
        !tmp.path().join("run").join("config.gin").exists(),
        "a refused run wrote its configuration"
    );
    stderr
}

#[test]
fn a_config_error_names_the_file_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let gin = tmp.path().join("bad.gin");
    std::fs::write(
        &gin,
        "hint.train.Run.batch_size = 4\nhint.train.Run.batchsize = 3\n",
    )
    .unwrap();
    let stderr = expect_failure(
        &[format!("--gin_file={}", gin.display())],
        &["reading the gin configuration", "batchsize", "bad.gin:2:"],
    );
    assert!(stderr.contains("batch_size"), "a suggestion: {stderr}");
}

#[test]
fn an_invalid_setting_names_the_binding_and_where_it_was_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let gin = tmp.path().join("lengths.gin");
    std::fs::write(&gin, "# a comment\nhint.train.Run.lengths = (24, 0, 16)\n").unwrap();
    expect_failure(
        &[format!("--gin_file={}", gin.display())],
        &[
            "hint.train.Run.lengths",
            "lengths.gin:2:",
            "`hyper_inputs` is 0",
        ],
    );
    // A flag has no file: the binding alone is named.
    expect_failure(
        &["--gin.Run.device=\"tpu\"".into()],
        &["hint.train.Run.device", "unknown device `tpu`"],
    );
}

#[test]
fn an_unusable_assignment_map_names_the_binding_and_the_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let gin = tmp.path().join("restore.gin");
    std::fs::write(
        &gin,
        "hint.train.Run.assignment_map = ((r\"hyper\\..*\", None),)\n",
    )
    .unwrap();
    expect_failure(
        &[format!("--gin_file={}", gin.display())],
        &[
            "hint.train.Run.assignment_map",
            "restore.gin:1:",
            "initial_checkpoint is empty",
        ],
    );
    expect_failure(
        &[
            "--gin.Run.initial_checkpoint=\"/nowhere\"".into(),
            "--gin.Run.assignment_map=((\"(\", None),)".into(),
        ],
        &["hint.train.Run.assignment_map", "rule 0 (`(`)"],
    );
}

#[test]
fn a_data_error_names_the_set_and_the_task() {
    expect_failure(
        &["--gin.Run.eval_sets=[(\"x\", \"no_such_task\", \"test\")]".into()],
        &["training in", "evaluation set `x`", "no_such_task"],
    );
}

#[test]
fn a_model_error_names_the_checkpoint_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("not-a-t5");
    std::fs::create_dir_all(&empty).unwrap();
    expect_failure(
        &[format!(
            "--gin.Run.initial_checkpoint=\"{}\"",
            empty.display()
        )],
        &["training in", "not-a-t5", "model.safetensors"],
    );
}

#[test]
fn an_optimizer_error_names_the_group_and_the_setting() {
    expect_failure(
        &["--gin.hyper/hint.optim.Adafactor.clipping_threshold=-1.0".into()],
        &["training in", "clipping_threshold must be positive"],
    );
}

#[test]
fn a_vocabulary_too_large_for_the_model_names_the_binding() {
    expect_failure(
        &["--gin.Vocabulary.vocab_size=500".into()],
        &["hint.model.T5Config.vocab_size", "at least 500"],
    );
}

#[test]
fn a_task_declaring_an_unknown_metric_fails_before_training_with_its_name() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("train.jsonl");
    std::fs::write(
        &data,
        "{\"inputs\": \"a b\", \"hyper_inputs\": \"copy\", \"targets\": \"a b\"}\n",
    )
    .unwrap();
    let gin = tmp.path().join("task.gin");
    std::fs::write(
        &gin,
        format!(
            "hint.data.Registry.tasks = [@my_task/hint.data.Task()]\n\
             my_task/hint.data.Task:\n  name = \"my_task\"\n  splits = {{\"train\": [\"{}\"]}}\n  \
             metrics = [\"exact_match\", \"bleu\"]\n",
            data.display()
        ),
    )
    .unwrap();
    expect_failure(
        &[format!("--gin_file={}", gin.display())],
        &["task `my_task`", "unknown metric `bleu`", "exact_match"],
    );
}
