//! A run loaded for inference (`load_run`, behind `hint infer / eval / serve / export`) has
//! frozen weights, so its products go through reordered weight copies
//! (`hint_model::packed_weight_bytes`). Its own binary: the byte count is process-wide.

use hint_train::{load_run, train_and_evaluate, NoHooks, Overrides, RunSettings, Unmonitored};

#[test]
fn a_loaded_run_is_frozen_and_infers_through_packed_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    // Wide enough that the products of a 4-input batch pass the packing cut-off.
    let bindings: Vec<String> = [
        format!("MODEL_DIR = {:?}", dir.display().to_string()),
        "TRAIN_STEPS = 1".into(),
        "BATCH_SIZE = 4".into(),
        "hint.model.T5Config.d_model = 256".into(),
        "hint.model.T5Config.d_kv = 32".into(),
        "hint.model.T5Config.num_heads = 8".into(),
        "hint.model.T5Config.d_ff = 512".into(),
        "hint.model.T5Config.vocab_size = 400".into(),
        "hint.data.Vocabulary.vocab_size = 400".into(),
        "hint.data.Builtin.train_instances = 8".into(),
        "hint.train.Run.eval_sets = ()".into(),
        "hint.train.Run.device = \"cpu\"".into(),
    ]
    .into();
    let builtin =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/builtin.gin");
    let settings = RunSettings::load(&[builtin], &bindings, &[], false).unwrap();
    train_and_evaluate(&settings, &mut NoHooks).unwrap();

    let run = load_run(&dir, None, &Overrides::default()).unwrap();
    let variables = run.vs.variables();
    assert!(!variables.is_empty());
    for (name, variable) in &variables {
        assert!(!variable.requires_grad(), "{name} is not frozen");
    }
    assert_eq!(hint_model::packed_weight_bytes(), 0);
    let inputs: Vec<String> = ["3 1 2", "8 2 5 1", "4 4", "9 7 1 3"]
        .map(String::from)
        .into();
    let answers = run
        .infer("Sort the list.", &inputs, &mut Unmonitored)
        .unwrap();
    assert_eq!(answers.len(), inputs.len());
    assert!(
        hint_model::packed_weight_bytes() > 0,
        "inference did not use packed weights"
    );
}
