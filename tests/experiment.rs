//! A miniature experiment end to end: two arms (HINT and concatenation) trained a few
//! steps on two gin-defined tasks with a long instruction, evaluated on a seen and an
//! unseen task; the table has its shape, concatenation costs more FLOPs per instance than
//! HINT, and a second run reproduces every score exactly.

use std::path::{Path, PathBuf};

use hint::data::builtin::builtin_vocabulary;
use hint::train::experiment::{run_experiment, ExperimentOptions};
use hint::train::report::{markdown, ExperimentReport};
use hint::train::NoHooks;

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs")
}

const INSTRUCTION: &str = "Read the list of numbers that follows and write it again with the \
    numbers in reverse order, keeping every number exactly as it is written, separated by \
    single spaces, without adding any other word, sign or explanation before or after the \
    numbers, and without leaving any number out of the answer";

fn write_task(dir: &Path, name: &str, rows: std::ops::Range<usize>) -> PathBuf {
    let path = dir.join(format!("{name}.jsonl"));
    let lines: Vec<String> = rows
        .map(|i| {
            serde_json::json!({
                "instruction": INSTRUCTION,
                "input": format!("{} {} {}", i, i + 1, i + 2),
                "output": format!("{} {} {}", i + 2, i + 1, i),
            })
            .to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

fn suite(dir: &Path) -> PathBuf {
    let vocabulary = dir.join("tokenizer.json");
    builtin_vocabulary().unwrap().save(&vocabulary).unwrap();
    let train = write_task(dir, "a_train", 0..24);
    let validation = write_task(dir, "a_validation", 30..36);
    let unseen = write_task(dir, "b_test", 40..46);
    std::fs::create_dir_all(dir.join("arms")).unwrap();
    for arm in ["hint", "concat"] {
        std::fs::copy(
            configs_dir().join(format!("experiments/arms/{arm}.gin")),
            dir.join(format!("arms/{arm}.gin")),
        )
        .unwrap();
    }
    let rekey = r#"[{"type": "rekey", "key_map": {"inputs": "input", "hyper_inputs": "instruction", "targets": "output"}}]"#;
    let text = format!(
        r#"
include 'models/t5_tiny.gin'
include 'optim/adafactor_dual.gin'
SHOTS = 0
hint.experiment.Experiment:
  name = "miniature"
  output_dir = "unset"
  arms = ["hint", "concat"]
  seeds = 1
hint.data.Builtin.enabled = False
hint.data.Vocabulary.tokenizer_file = {vocabulary:?}
reverse/hint.data.Task:
  name = "reverse"
  splits = {{"train": [{train:?}], "validation": [{validation:?}]}}
  preprocessors = {rekey}
unseen/hint.data.Task:
  name = "reverse_unseen"
  splits = {{"test": [{unseen:?}]}}
  preprocessors = {rekey}
hint.data.Registry.tasks = [@reverse/hint.data.Task(), @unseen/hint.data.Task()]
hint.train.Run:
  mixture = "reverse"
  eval_sets = [("seen", "reverse", "validation"), ("unseen", "reverse_unseen", "test")]
  batch_size = 4
  lengths = (16, 96, 8)
  device = "cpu"
hint.train.TrainConfig:
  steps = 3
  checkpoint_every = 3
hint.train.EvalConfig.max_new_tokens = 8
hint.model.HyperConfig:
  adapter_size = 4
  num_prefix_tokens = 2
"#
    );
    let path = dir.join("suite.gin");
    std::fs::write(&path, text).unwrap();
    path
}

fn run(suite: &Path, output: &Path) -> ExperimentReport {
    let options = ExperimentOptions {
        suite: suite.to_path_buf(),
        search_paths: vec![configs_dir()],
        bindings: vec![format!(
            "hint.experiment.Experiment.output_dir = {:?}",
            output.display().to_string()
        )],
        arms: None,
        seeds: None,
    };
    run_experiment(
        &options,
        &mut NoHooks,
        &mut |_| {},
        &hint::train::plot::plot_experiment,
    )
    .unwrap()
    .expect("not interrupted")
}

#[test]
fn a_miniature_experiment_runs_end_to_end_and_reproduces() {
    let dir = tempfile::tempdir().unwrap();
    let suite = suite(dir.path());
    let first = run(&suite, &dir.path().join("first"));

    assert_eq!(first.sets, vec!["seen".to_string(), "unseen".to_string()]);
    let arms: Vec<&str> = first.arms.iter().map(|a| a.arm.as_str()).collect();
    assert_eq!(arms, ["hint", "concat"]);
    for arm in &first.arms {
        assert_eq!(arm.seeds, 1);
        for set in &first.sets {
            let scores = &arm.scores[set];
            assert!(scores.contains_key("exact_match") && scores.contains_key("rouge_l"));
        }
        assert!(arm.flops_per_instance > 0.0);
        assert!(arm.inference_ms_per_instance.mean > 0.0);
        assert!(arm.train_seconds.mean > 0.0);
    }
    let workload = &first.runs[0].workloads["unseen"];
    assert_eq!((workload.instances, workload.tasks), (6, 1));
    assert!(workload.instruction_len > 40.0, "{workload:?}");
    let (hint, concat) = (&first.arms[0], &first.arms[1]);
    assert!(
        concat.flops_per_instance > hint.flops_per_instance,
        "a long instruction concatenated to every input costs more: concat {} vs HINT {}",
        concat.flops_per_instance,
        hint.flops_per_instance
    );
    let table = markdown(&first);
    assert_eq!(table.lines().filter(|l| l.starts_with("| ")).count(), 3);
    assert!(table.contains("| seen EM | seen ROUGE-L | unseen EM | unseen ROUGE-L |"));
    let output = dir.path().join("first");
    for file in [
        "results.json",
        "results.md",
        "score_vs_flops_seen_exact_match.png",
        "score_vs_flops_unseen_rouge_l.png",
    ] {
        assert!(output.join(file).is_file(), "{file}");
    }

    let second = run(&suite, &dir.path().join("second"));
    for (a, b) in first.runs.iter().zip(&second.runs) {
        assert_eq!(a.scores, b.scores, "{}", a.arm);
        assert_eq!(a.flops_per_instance, b.flops_per_instance);
    }
}
