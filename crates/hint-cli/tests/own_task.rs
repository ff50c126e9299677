//! The README's own-task recipe, as written: a gin-defined task on top of the embedded
//! default's settings trains (its tokenizer learned from the task's own text), evaluates
//! and resumes.

mod common;
use common::{hint, losses};

/// The README's block, with `metrics` as the recipe says.
const REVERSE_GIN: &str = r#"
reverse/hint.data.Task:
  name = "reverse"
  splits = {"train": ["data/reverse-train-*.jsonl"], "validation": ["data/reverse-dev.jsonl"]}
  preprocessors = [{"type": "rekey", "key_map": {"inputs": "input", "hyper_inputs": "definition", "targets": "output"}}]
  metrics = ["exact_match"]
hint.data.Registry.tasks = [@reverse/hint.data.Task()]
"#;

fn write_records(path: &std::path::Path, range: std::ops::Range<u32>) {
    let mut text = String::new();
    for i in range {
        let words: Vec<String> = (0..3)
            .map(|k| format!("w{}", (i * 7 + k * 3) % 23))
            .collect();
        let reversed: Vec<String> = words.iter().rev().cloned().collect();
        text.push_str(
            &serde_json::json!({
                "definition": "Reverse the order of the words.",
                "input": words.join(" "),
                "output": reversed.join(" "),
            })
            .to_string(),
        );
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn the_readme_recipe_for_an_own_task_trains_as_written() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    write_records(&data.join("reverse-train-0.jsonl"), 0..60);
    write_records(&data.join("reverse-train-1.jsonl"), 60..120);
    write_records(&data.join("reverse-dev.jsonl"), 120..130);
    std::fs::write(tmp.path().join("reverse.gin"), REVERSE_GIN).unwrap();
    let builtin =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/builtin.gin");
    let run = |steps: u64| -> (bool, String, String) {
        let output = hint()
            .current_dir(tmp.path())
            .arg("train")
            .arg(format!("--gin_file={}", builtin.display()))
            .args([
                "--gin_file=reverse.gin",
                "--gin.Builtin.enabled=False",
                "--gin.Run.mixture=\"reverse\"",
                "--gin.Run.eval_sets=((\"dev\", \"reverse\", \"validation\"),)",
                "--gin.MODEL_DIR=\"run\"",
                // Small and short, the rest as the recipe has it.
                "--gin.BATCH_SIZE=8",
                "--gin.T5Config.d_model=32",
                "--gin.T5Config.d_kv=8",
                "--gin.T5Config.d_ff=64",
                "--gin.Run.device=\"cpu\"",
            ])
            .arg(format!("--gin.TRAIN_STEPS={steps}"))
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).to_string(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    let (ok, stdout, stderr) = run(4);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("| reverse | 10 |"), "{stdout}");
    assert!(stdout.contains("exact match"), "{stdout}");
    let tokenizer = std::fs::read_to_string(tmp.path().join("run/tokenizer.json")).unwrap();
    assert!(
        tokenizer.contains("Reverse"),
        "the tokenizer learned the task's text"
    );
    let (ok, _, stderr) = run(6);
    assert!(ok, "{stderr}");
    assert_eq!(losses(&tmp.path().join("run")).len(), 6);
}
