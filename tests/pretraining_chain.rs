//! The pretraining chain of `configs/t5_pretrain.gin`, in miniature: T5 span corruption
//! from scratch on a text corpus, then HINT pretraining (`pretrain.gin`) from its checkpoint,
//! then fine-tuning with everything restored (`optim/restore_all.gin`). At each stage the
//! model a run starts from is checked variable by variable: stage 2 has stage 1's T5 and a
//! fresh hypernetwork, stage 3 has every variable of stage 2's checkpoint.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hint::data::task::ReadOptions;
use hint::data::{Example, FeatureValue, Vocabulary};
use hint::train::model::build_model;
use hint::train::{train_and_evaluate, CheckpointManager, NoHooks, RunSettings, TrainOutcome};
use tch::Tensor;

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs")
}

/// Sentences with some repetition, so a tokenizer trains and span corruption has text.
fn write_corpus(dir: &Path) -> PathBuf {
    let subjects = [
        "the cat",
        "a dog",
        "the old man",
        "my sister",
        "the teacher",
    ];
    let verbs = ["reads", "writes", "finds", "likes", "sees"];
    let objects = [
        "a long book",
        "the red letter",
        "an old map",
        "the small garden",
    ];
    let mut lines = Vec::new();
    for (i, subject) in subjects.iter().enumerate() {
        for (j, verb) in verbs.iter().enumerate() {
            let object = objects[(i + j) % objects.len()];
            lines.push(format!(
                "{subject} {verb} {object} every morning, and then {subject} goes home to rest."
            ));
        }
    }
    let path = dir.join("corpus.txt");
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

fn write_task(dir: &Path) -> PathBuf {
    let path = dir.join("task.jsonl");
    let lines: Vec<String> = (0..16)
        .map(|i| {
            serde_json::json!({
                "instruction": "write the sentence again",
                "input": format!("the cat reads {i} books"),
                "output": format!("the cat reads {i} books"),
            })
            .to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

fn settings(files: &[&str], bindings: &[String]) -> RunSettings {
    let files: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
    RunSettings::load(&files, bindings, &[configs_dir()], false).unwrap()
}

fn train(settings: &RunSettings) -> PathBuf {
    let summary = train_and_evaluate(settings, &mut NoHooks).unwrap();
    assert!(matches!(
        summary.outcome,
        TrainOutcome::Finished { step: 2 }
    ));
    let latest = CheckpointManager::new(&summary.model_dir, 1)
        .latest()
        .unwrap();
    let latest = latest.expect("a finished run leaves a checkpoint");
    assert_eq!(latest.step, 2);
    latest.path
}

fn checkpoint_tensors(checkpoint: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(checkpoint.join("model.safetensors"))
        .unwrap()
        .into_iter()
        .collect()
}

fn equal(a: &Tensor, b: &Tensor) -> bool {
    a.size() == b.size()
        && a.to_kind(tch::Kind::Float)
            .equal(&b.to_kind(tch::Kind::Float))
}

fn tokens<'a>(example: &'a Example, feature: &str) -> &'a [u32] {
    match &example[feature] {
        FeatureValue::Tokens(ids) => ids,
        other => panic!("{feature}: not tokens but {other:?}"),
    }
}

/// Stage 1 trained on T5's span corruption, not on the HINT split its corpus could also give:
/// the run's mixture is the corpus task with the span-corruption preprocessor, and its
/// examples are denoising pairs — noise spans in the inputs replaced by sentinels counted
/// down from the vocabulary's last id, the targets the sentinels each followed by its span.
fn assert_trained_on_span_corruption(settings: &RunSettings, tokenizer: &Path) {
    let data = settings
        .data
        .build(settings.run.lengths, Some(tokenizer))
        .unwrap();
    let task = data.registry.task(&settings.run.mixture).unwrap();
    let preprocessors = task.preprocessor_names();
    assert!(
        preprocessors
            .iter()
            .any(|name| name
                .starts_with("span_corruption(text, inputs 32, density 0.15, mean span 3)")),
        "{preprocessors:?}"
    );
    let first_sentinel = data.vocabulary.token_to_id("<extra_id_0>").unwrap();
    assert_eq!(first_sentinel as usize, data.vocabulary.vocab_size() - 1);
    let examples: Vec<Example> = task
        .open("train", &ReadOptions::default())
        .unwrap()
        .take(4)
        .map(Result::unwrap)
        .collect();
    assert_eq!(examples.len(), 4);
    let is_sentinel = |id: &u32| *id + 100 > first_sentinel && *id <= first_sentinel;
    for example in &examples {
        let (inputs, targets) = (tokens(example, "inputs"), tokens(example, "targets"));
        assert!(inputs.len() <= 32, "inputs fit their length");
        assert_eq!(inputs.last(), Some(&Vocabulary::EOS_ID));
        assert_eq!(targets.last(), Some(&Vocabulary::EOS_ID));
        assert_eq!(
            targets[0], first_sentinel,
            "targets start with <extra_id_0>"
        );
        let input_sentinels: Vec<u32> = inputs.iter().copied().filter(is_sentinel).collect();
        let target_sentinels: Vec<u32> = targets.iter().copied().filter(is_sentinel).collect();
        // One sentinel per noise span in the inputs, counted down from <extra_id_0>; the
        // targets have the same ones, each before the span it replaced.
        let counted_down: Vec<u32> = (0..input_sentinels.len() as u32)
            .map(|k| first_sentinel - k)
            .collect();
        assert!(!input_sentinels.is_empty());
        assert_eq!(input_sentinels, counted_down);
        assert!(target_sentinels.starts_with(&input_sentinels));
        let noise = targets.len() - target_sentinels.len() - 1;
        let kept = inputs.len() - input_sentinels.len() - 1;
        let density = noise as f64 / (noise + kept) as f64;
        assert!((0.1..0.2).contains(&density), "noise density {density}");
    }
}

/// Small shapes and 2 steps for every stage.
fn common(tokenizer: &str) -> Vec<String> {
    vec![
        "hint.model.T5Config.vocab_size = 400".into(),
        "TRAIN_STEPS = 2".into(),
        "BATCH_SIZE = 4".into(),
        "MICROBATCHES = 1".into(),
        "hint.train.TrainConfig.compute_dtype = 'float32'".into(),
        "hint.train.TrainConfig.checkpoint_every = 2".into(),
        "hint.train.Run.device = 'cpu'".into(),
        "hint.model.HyperConfig.adapter_size = 4".into(),
        "hint.model.HyperConfig.num_prefix_tokens = 2".into(),
        tokenizer.to_string(),
    ]
}

#[test]
fn span_corruption_then_hint_pretraining_then_fine_tuning_restore_the_right_variables() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = write_corpus(dir.path());
    let corpus_files = format!("CORPUS_FILES = [{:?}]", corpus.display().to_string());

    // Stage 1: T5 span corruption from scratch, a tokenizer with sentinels trained on the corpus.
    let mut stage1 = common("hint.data.Vocabulary.tokenizer_file = ''");
    stage1.extend([
        format!(
            "MODEL_DIR = {:?}",
            dir.path().join("t5").display().to_string()
        ),
        corpus_files.clone(),
        "TOKENIZER = ''".into(),
        "hint.data.Vocabulary.vocab_size = 200".into(),
        "hint.data.Vocabulary.num_sentinels = 100".into(),
        "INPUTS_LENGTH = 32".into(),
        "TARGETS_LENGTH = 8".into(),
    ]);
    let stage1 = settings(&["models/t5_tiny.gin", "t5_pretrain.gin"], &stage1);
    let t5_checkpoint = train(&stage1);
    let tokenizer = dir.path().join("t5").join("tokenizer.json");
    assert!(
        tokenizer.is_file(),
        "stage 1 keeps its tokenizer for the next stages"
    );
    assert_trained_on_span_corruption(&stage1, &tokenizer);
    let tokenizer_binding = format!("TOKENIZER = {:?}", tokenizer.display().to_string());
    let stage1_tensors = checkpoint_tensors(&t5_checkpoint);

    // Stage 2: HINT pretraining from stage 1's checkpoint.
    let mut stage2 = common(&tokenizer_binding);
    stage2.extend([
        format!(
            "MODEL_DIR = {:?}",
            dir.path().join("hint").display().to_string()
        ),
        corpus_files,
        format!(
            "INITIAL_CHECKPOINT = {:?}",
            t5_checkpoint.display().to_string()
        ),
        "hint.data.Corpus.segment_length = 30".into(),
        "hint.train.Run.lengths = (16, 16, 16)".into(),
    ]);
    let stage2 = settings(&["models/t5_tiny.gin", "pretrain.gin"], &stage2);
    let (vs, _) = build_model(&stage2).unwrap();
    let mut fresh_settings = stage2.clone();
    fresh_settings.run.initial_checkpoint.clear();
    let (fresh, _) = build_model(&fresh_settings).unwrap();
    let fresh = fresh.variables();
    let (mut t5_restored, mut hyper_fresh) = (0, 0);
    for (name, variable) in vs.variables() {
        if name.starts_with("hyper.") {
            assert!(
                equal(&variable, &fresh[&name]),
                "{name}: the hypernetwork starts fresh"
            );
            hyper_fresh += 1;
        } else {
            let trained = &stage1_tensors[&name];
            assert!(
                equal(&variable, trained),
                "{name}: T5 comes from the span-corruption run"
            );
            assert!(!equal(trained, &fresh[&name]), "{name}: stage 1 changed it");
            t5_restored += 1;
        }
    }
    assert!(
        t5_restored > 20 && hyper_fresh > 5,
        "{t5_restored} T5, {hyper_fresh} hyper"
    );
    drop(vs);
    let hint_checkpoint = train(&stage2);
    let stage2_tensors = checkpoint_tensors(&hint_checkpoint);

    // Stage 3: fine-tuning on a task with everything restored from stage 2.
    let task = write_task(dir.path());
    let rekey = r#"[{"type": "rekey", "key_map": {"inputs": "input", "hyper_inputs": "instruction", "targets": "output"}}]"#;
    let stage3_file = dir.path().join("finetune.gin");
    std::fs::write(
        &stage3_file,
        format!(
            r#"
include 'models/t5_tiny.gin'
include 'hint/instruction_embed.gin'
include 'optim/adafactor_dual.gin'
include 'optim/restore_all.gin'
hint.data.Builtin.enabled = False
hint.data.Vocabulary.tokenizer_file = %TOKENIZER
ft/hint.data.Task:
  name = "copy"
  splits = {{"train": [{task:?}]}}
  preprocessors = {rekey}
hint.data.Registry.tasks = [@ft/hint.data.Task()]
hint.train.Run:
  model_dir = {model_dir:?}
  mixture = "copy"
  eval_sets = []
  batch_size = %BATCH_SIZE
  lengths = (16, 16, 16)
hint.train.TrainConfig:
  steps = %TRAIN_STEPS
  microbatches = %MICROBATCHES
"#,
            task = task.display().to_string(),
            model_dir = dir.path().join("ft").display().to_string(),
        ),
    )
    .unwrap();
    let mut stage3 = common(&tokenizer_binding);
    stage3.push(format!(
        "INITIAL_CHECKPOINT = {:?}",
        hint_checkpoint.display().to_string()
    ));
    let stage3 = settings(&[stage3_file.to_str().unwrap()], &stage3);
    let (vs, _) = build_model(&stage3).unwrap();
    let variables = vs.variables();
    assert_eq!(variables.len(), stage2_tensors.len());
    for (name, variable) in &variables {
        assert!(
            equal(variable, &stage2_tensors[name]),
            "{name}: restored from stage 2"
        );
        if name.starts_with("hyper.") {
            assert!(
                !equal(variable, &fresh[name]),
                "{name}: HINT pretraining trained it"
            );
        }
    }
    drop(vs);
    train(&stage3);
}
