//! Runs that train from `hint cache-tasks` output (seqio's `use_cached`): the same losses
//! and scores as from the raw tasks, and a cache written for another vocabulary refused
//! before anything is written.

use std::path::{Path, PathBuf};

mod common;
use common::{hint, losses};

fn builtin_gin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/builtin.gin")
}

/// A few-second configuration of the built-in suite.
fn tiny_args(model_dir: &Path, vocab_size: u32) -> Vec<String> {
    vec![
        format!("--gin_file={}", builtin_gin().display()),
        format!("--gin.MODEL_DIR=\"{}\"", model_dir.display()),
        "--gin.TRAIN_STEPS=4".into(),
        "--gin.BATCH_SIZE=8".into(),
        "--gin.T5Config.d_model=32".into(),
        "--gin.T5Config.d_kv=8".into(),
        "--gin.T5Config.d_ff=64".into(),
        "--gin.T5Config.vocab_size=400".into(),
        format!("--gin.Vocabulary.vocab_size={vocab_size}"),
        "--gin.Builtin.train_instances=40".into(),
        "--gin.Builtin.eval_instances=3".into(),
        "--gin.Run.eval_examples_per_task=2".into(),
        "--gin.Run.device=\"cpu\"".into(),
        "--gin.EvalConfig.max_new_tokens=4".into(),
    ]
}

fn cached_args(cache: &Path) -> Vec<String> {
    vec![
        "--gin.Run.use_cached=True".into(),
        format!("--gin.Run.cache_dirs=[\"{}\"]", cache.display()),
    ]
}

fn scores(model_dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(model_dir.join("eval_results.json")).unwrap();
    let mut results: serde_json::Value = serde_json::from_str(&text).unwrap();
    // Timings differ run to run; everything else must not.
    for tasks in results.as_object_mut().unwrap().values_mut() {
        for task in tasks.as_array_mut().unwrap() {
            task.as_object_mut().unwrap().remove("seconds");
        }
    }
    results
}

fn run(args: &[String]) -> (bool, String) {
    let output = hint().args(args).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

#[test]
fn a_run_from_the_cache_equals_the_run_from_the_raw_tasks_and_a_stale_cache_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let mut args = vec![
        "cache-tasks".to_string(),
        "--tasks=.*".into(),
        format!("--output_cache_dir={}", cache.display()),
    ];
    args.extend(tiny_args(&tmp.path().join("unused"), 400));
    let (ok, stderr) = run(&args);
    assert!(ok, "{stderr}");

    let raw = tmp.path().join("raw");
    let mut args = vec!["train".to_string()];
    args.extend(tiny_args(&raw, 400));
    let (ok, stderr) = run(&args);
    assert!(ok, "{stderr}");

    let cached = tmp.path().join("cached");
    let mut args = vec!["train".to_string()];
    args.extend(tiny_args(&cached, 400));
    args.extend(cached_args(&cache));
    let (ok, stderr) = run(&args);
    assert!(ok, "{stderr}");
    let (raw_losses, cached_losses) = (losses(&raw), losses(&cached));
    assert_eq!(raw_losses.len(), 4);
    assert_eq!(
        raw_losses, cached_losses,
        "the cached run trained on other data"
    );
    assert_eq!(scores(&raw), scores(&cached));

    // Another vocabulary size trains another tokenizer: the cache no longer fits.
    let stale = tmp.path().join("stale");
    let mut args = vec!["train".to_string()];
    args.extend(tiny_args(&stale, 300));
    args.extend(cached_args(&cache));
    let (ok, stderr) = run(&args);
    assert!(!ok, "a stale cache was used");
    assert!(
        stderr.contains("do not match task") && stderr.matches("fingerprint").count() >= 2,
        "{stderr}"
    );
    assert!(stderr.contains("vocab_fingerprint"), "{stderr}");
    let written: Vec<_> = std::fs::read_dir(&stale)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        written.iter().all(|name| name == "HINT_MODEL_DIR"),
        "{written:?}"
    );
}
