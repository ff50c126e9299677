//! Saving and loading whole models and parameter files: round trips reproduce the logits
//! exactly, and bad input is a typed error that names the tensor or the file.

use std::path::Path;

use hint_model::{
    load_parameters, load_weights_mapped, save_parameters, AssignmentMap, HyperConfig, HyperT5,
    ModelError, Pretrained, T5Config, TaskAdaptation, T5,
};
use tch::{nn::VarStore, Device, Kind, Tensor};

fn tiny() -> T5Config {
    T5Config {
        vocab_size: 40,
        ..T5Config::preset("tiny").unwrap()
    }
}

fn fresh_t5(config: &T5Config, seed: i64) -> Pretrained<T5> {
    tch::manual_seed(seed);
    let vs = VarStore::new(Device::Cpu);
    let model = T5::new(vs.root(), config);
    Pretrained { vs, model }
}

fn fresh_hyper(hyper: &HyperConfig, seed: i64) -> Pretrained<HyperT5> {
    tch::manual_seed(seed);
    let vs = VarStore::new(Device::Cpu);
    let model = HyperT5::new(vs.root(), &tiny(), hyper);
    Pretrained { vs, model }
}

fn inputs() -> (Tensor, Tensor, Tensor) {
    let input_ids = Tensor::from_slice(&[5i64, 6, 7, 1, 8, 9, 1, 0]).view([2, 4]);
    let mask = input_ids.ne(0).to_kind(Kind::Int64);
    let decoder_input_ids = Tensor::from_slice(&[0i64, 3, 4, 0, 5, 6]).view([2, 3]);
    (input_ids, mask, decoder_input_ids)
}

fn t5_logits(model: &T5) -> Tensor {
    let (input_ids, mask, decoder_input_ids) = inputs();
    tch::no_grad(|| model.forward(&input_ids, Some(&mask), &decoder_input_ids, None, false))
}

fn hyper_logits(model: &HyperT5) -> Tensor {
    let (input_ids, mask, decoder_input_ids) = inputs();
    let instruction = Tensor::from_slice(&[20i64, 21, 22, 1]).view([1, 4]);
    tch::no_grad(|| {
        let adaptation: TaskAdaptation = model.adapt(&instruction, false);
        model.forward(&input_ids, &mask, &decoder_input_ids, &adaptation, false)
    })
}

fn no_temporary_files(dir: &Path) {
    let leftovers: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn t5_directory_round_trip_gives_identical_logits() {
    let saved = fresh_t5(&tiny(), 1);
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("nested/t5");
    saved.save_pretrained(&target).unwrap();
    no_temporary_files(&target);
    let loaded = T5::from_pretrained(&target, Device::Cpu).unwrap();
    assert_eq!(
        loaded.model.config,
        T5Config {
            num_decoder_layers: Some(2),
            ..tiny()
        }
    );
    assert!(t5_logits(&saved.model).equal(&t5_logits(&loaded.model)));
    // A different seed gives different logits: the equality above is not vacuous.
    assert!(!t5_logits(&saved.model).equal(&t5_logits(&fresh_t5(&tiny(), 2).model)));
}

#[test]
fn hint_directory_round_trip_gives_identical_logits() {
    let hyper = HyperConfig {
        use_lora: true,
        lora_ranks: [Some(2), None, Some(2), None],
        ..HyperConfig::preset("tiny").unwrap()
    };
    let saved = fresh_hyper(&hyper, 3);
    let dir = tempfile::tempdir().unwrap();
    saved.save_pretrained(dir.path()).unwrap();
    no_temporary_files(dir.path());
    let loaded = HyperT5::from_pretrained(dir.path(), Device::Cpu).unwrap();
    assert_eq!(loaded.model.config, hyper);
    assert!(hyper_logits(&saved.model).equal(&hyper_logits(&loaded.model)));
    // The hypernetwork's parameters were loaded, not freshly drawn.
    assert!(!hyper_logits(&saved.model).equal(&hyper_logits(&fresh_hyper(&hyper, 4).model)));
}

#[test]
fn a_hint_directory_reads_as_its_underlying_t5() {
    let saved = fresh_hyper(&HyperConfig::preset("tiny").unwrap(), 5);
    let dir = tempfile::tempdir().unwrap();
    saved.save_pretrained(dir.path()).unwrap();
    let backbone = T5::from_pretrained(dir.path(), Device::Cpu).unwrap();
    assert!(t5_logits(&saved.model.t5).equal(&t5_logits(&backbone.model)));
}

#[test]
fn hint_starts_from_a_hugging_face_t5_with_a_fresh_hypernetwork() {
    let t5 = fresh_t5(&tiny(), 6);
    let dir = tempfile::tempdir().unwrap();
    t5.save_pretrained(dir.path()).unwrap();
    // Zero-initialised generated modules without fusion compute exactly the plain T5.
    let hyper = HyperConfig {
        zero_init_generated: true,
        use_fusion_in_decoder: false,
        ..HyperConfig::preset("tiny").unwrap()
    };
    let hint = HyperT5::from_pretrained_t5(dir.path(), &hyper, Device::Cpu).unwrap();
    assert!(hint.model.hypernetwork.is_some());
    let plain = t5_logits(&t5.model);
    let adapted = hyper_logits(&hint.model);
    let diff = f64::try_from((plain - adapted).abs().max()).unwrap();
    assert!(diff < 1e-5, "{diff}");

    // A plain T5 directory is not a HINT one, and the error says what to use instead.
    let err = HyperT5::from_pretrained(dir.path(), Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::Config { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("config.json") && message.contains("from_pretrained_t5"),
        "{message}"
    );
}

#[test]
fn starting_hint_from_an_incomplete_t5_names_the_missing_parameters() {
    let t5 = fresh_t5(&tiny(), 7);
    let dir = tempfile::tempdir().unwrap();
    t5.save_pretrained(dir.path()).unwrap();
    let mut config = t5.model.config.clone();
    config.num_layers = 3;
    config.num_decoder_layers = Some(2);
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_string(&config.to_hf_json()).unwrap(),
    )
    .unwrap();
    let err = HyperT5::from_pretrained_t5(
        dir.path(),
        &HyperConfig::preset("tiny").unwrap(),
        Device::Cpu,
    )
    .unwrap_err();
    match err {
        ModelError::MissingWeights { names, .. } => {
            assert!(!names.is_empty());
            assert!(
                names.iter().all(|n| n.starts_with("encoder.block.2.")),
                "{names:?}"
            );
        }
        other => panic!("expected MissingWeights, got {other:?}"),
    }
}

#[test]
fn parameter_file_round_trip_gives_identical_logits() {
    let hyper = HyperConfig::preset("tiny").unwrap();
    let saved = fresh_hyper(&hyper, 8);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    save_parameters(&saved.vs, &path).unwrap();
    no_temporary_files(dir.path());
    let names: Vec<String> = Tensor::read_safetensors(&path)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names.len(), saved.vs.variables().len());
    assert!(names.iter().any(|n| n.starts_with("hyper.")));
    // Written in name order, the same model gives the same bytes.
    let again = dir.path().join("again.safetensors");
    save_parameters(&saved.vs, &again).unwrap();
    assert!(std::fs::read(&path).unwrap() == std::fs::read(&again).unwrap());

    let loaded = fresh_hyper(&hyper, 9);
    let report = load_parameters(&loaded.vs, &path).unwrap();
    assert!(
        report.missing.is_empty() && report.unexpected.is_empty(),
        "{report:?}"
    );
    assert!(hyper_logits(&saved.model).equal(&hyper_logits(&loaded.model)));
}

#[test]
fn loading_parameters_reports_extra_tensors_and_names_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let hint = fresh_hyper(&HyperConfig::preset("tiny").unwrap(), 10);
    save_parameters(&hint.vs, &path).unwrap();

    // A plain T5 takes its parameters from a HINT file and is told what it left alone.
    let t5 = fresh_t5(&tiny(), 11);
    let report = load_parameters(&t5.vs, &path).unwrap();
    assert!(report.missing.is_empty());
    assert!(!report.unexpected.is_empty());
    assert!(report.unexpected.iter().all(|n| n.starts_with("hyper.")));

    // The other way round, the hypernetwork's parameters are missing, each named.
    save_parameters(&t5.vs, &path).unwrap();
    let err = load_parameters(&hint.vs, &path).unwrap_err();
    match &err {
        ModelError::MissingWeights { dir, names } => {
            assert_eq!(dir, &path);
            assert!(!names.is_empty() && names.iter().all(|n| n.starts_with("hyper.")));
            let mut sorted = names.clone();
            sorted.sort();
            assert_eq!(names, &sorted);
        }
        other => panic!("expected MissingWeights, got {other:?}"),
    }
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

#[test]
fn a_shape_mismatch_names_the_tensor_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    save_parameters(&fresh_t5(&tiny(), 12).vs, &path).unwrap();
    let wider = fresh_t5(&T5Config { d_ff: 17, ..tiny() }, 13);
    let err = load_parameters(&wider.vs, &path).unwrap_err();
    match &err {
        ModelError::ShapeMismatch {
            file,
            name,
            found,
            expected,
        } => {
            assert_eq!(file, &path);
            assert!(name.contains("DenseReluDense"), "{name}");
            assert_ne!(found, expected);
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("model.safetensors") && message.contains("DenseReluDense"),
        "{message}"
    );

    // The same through a whole directory.
    let saved = fresh_t5(&tiny(), 14);
    saved.save_pretrained(dir.path()).unwrap();
    let mut config = tiny();
    config.d_model = 12;
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_string(&config.to_hf_json()).unwrap(),
    )
    .unwrap();
    let err = T5::from_pretrained(dir.path(), Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::ShapeMismatch { .. }), "{err:?}");
}

#[test]
fn a_missing_file_is_an_io_error_naming_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("nowhere/model.safetensors");
    let vs = fresh_t5(&tiny(), 15).vs;
    match load_parameters(&vs, &absent).unwrap_err() {
        ModelError::Io { path, source } => {
            assert_eq!(path, absent);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Io, got {other:?}"),
    }

    let missing_dir = dir.path().join("no-model");
    for err in [
        T5::from_pretrained(&missing_dir, Device::Cpu).unwrap_err(),
        HyperT5::from_pretrained(&missing_dir, Device::Cpu).unwrap_err(),
    ] {
        match &err {
            ModelError::Io { path, .. } => assert_eq!(path, &missing_dir.join("config.json")),
            other => panic!("expected Io, got {other:?}"),
        }
        assert!(err.to_string().contains("no-model"), "{err}");
    }

    // A configuration without weights beside it.
    std::fs::create_dir_all(&missing_dir).unwrap();
    std::fs::write(
        missing_dir.join("config.json"),
        serde_json::to_string(&tiny().to_hf_json()).unwrap(),
    )
    .unwrap();
    let err = T5::from_pretrained(&missing_dir, Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::NoWeights { .. }), "{err:?}");
}

#[test]
fn a_malformed_hint_configuration_names_the_file_and_line() {
    let saved = fresh_hyper(&HyperConfig::preset("tiny").unwrap(), 16);
    let dir = tempfile::tempdir().unwrap();
    saved.save_pretrained(dir.path()).unwrap();
    let config = dir.path().join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    // A misspelt switch: HyperConfig refuses unknown fields.
    std::fs::write(&config, text.replace("\"use_adapter\"", "\"use_adaptor\"")).unwrap();
    let err = HyperT5::from_pretrained(dir.path(), Device::Cpu).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, ModelError::Config { .. })
            && message.contains("config.json")
            && message.contains("line")
            && message.contains("use_adaptor"),
        "{message}"
    );
}

/// The reference's `separate_henc.gin` in hint's names: the separate instruction encoder
/// reads the T5 encoder's tensors, the rest of the hypernetwork stays fresh, the T5 reads
/// its own names; the report says which came from where.
#[test]
fn an_assignment_map_copies_the_t5_encoder_into_a_separate_instruction_encoder() {
    let t5 = fresh_t5(&tiny(), 1);
    let dir = tempfile::tempdir().unwrap();
    t5.save_pretrained(dir.path()).unwrap();
    let config = HyperConfig {
        share_hnet_encoder: false,
        ..HyperConfig::preset("tiny").unwrap()
    };
    let hint = fresh_hyper(&config, 2);
    let fresh_embedding = hint.vs.variables()["hyper.component_embedding"].copy();
    let map = AssignmentMap::new(&[
        (
            r"hyper\.hyper_encoder\.(.*)".into(),
            Some(r"encoder.\1".into()),
        ),
        (r"hyper\..*".into(), None),
    ])
    .unwrap();
    let report = load_weights_mapped(&hint.vs, dir.path(), &map, false).unwrap();
    let ours = hint.vs.variables();
    let theirs = t5.vs.variables();
    let q = "block.0.layer.0.SelfAttention.q.weight";
    assert!(ours[&format!("hyper.hyper_encoder.{q}")].equal(&theirs[&format!("encoder.{q}")]));
    assert!(ours[&format!("encoder.{q}")].equal(&theirs[&format!("encoder.{q}")]));
    assert!(ours["hyper.component_embedding"].equal(&fresh_embedding));
    assert_eq!(
        report.loaded[&format!("hyper.hyper_encoder.{q}")],
        format!("encoder.{q}")
    );
    assert!(report
        .skipped
        .contains(&"hyper.component_embedding".to_string()));
    assert!(report.kept_fresh.is_empty());
    // Every T5 variable and every instruction-encoder variable was read.
    let instruction_encoder = ours
        .keys()
        .filter(|n| n.starts_with("hyper.hyper_encoder."))
        .count();
    assert!(instruction_encoder > 0);
    assert_eq!(report.loaded.len(), theirs.len() + instruction_encoder);
}

/// What an assignment map cannot do is an error that names the rule, the tensor or the
/// variable; `fallback_to_scratch` keeps what the checkpoint lacks fresh and says so.
#[test]
fn assignment_map_errors_name_the_rule_the_tensor_and_the_variable() {
    let t5 = fresh_t5(&tiny(), 1);
    let dir = tempfile::tempdir().unwrap();
    t5.save_pretrained(dir.path()).unwrap();
    let hint = fresh_hyper(&HyperConfig::preset("tiny").unwrap(), 2);
    let before = hint.vs.variables()["shared.weight"].copy();
    // A rule for a variable this model does not have (no separate instruction encoder):
    // refused before anything is read.
    let map = AssignmentMap::new(&[
        (
            r"hyper\.hyper_encoder\.(.*)".into(),
            Some(r"encoder.\1".into()),
        ),
        (r"hyper\..*".into(), None),
    ])
    .unwrap();
    let error = load_weights_mapped(&hint.vs, dir.path(), &map, false).unwrap_err();
    assert!(
        matches!(&error, ModelError::AssignmentRule { index: 0, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("matches no variable"), "{error}");
    assert!(hint.vs.variables()["shared.weight"].equal(&before));
    // A tensor the checkpoint lacks: an error naming it and its reader…
    let map = AssignmentMap::new(&[
        (r"hyper\..*".into(), None),
        (
            r"(encoder\.final_layer_norm)\.weight".into(),
            Some(r"\1.scale".into()),
        ),
    ])
    .unwrap();
    let error = load_weights_mapped(&hint.vs, dir.path(), &map, false).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("encoder.final_layer_norm.scale (for encoder.final_layer_norm.weight)"),
        "{error}"
    );
    // …or, falling back to scratch, kept fresh and reported.
    let fresh = fresh_hyper(&HyperConfig::preset("tiny").unwrap(), 3);
    let norm_before = fresh.vs.variables()["encoder.final_layer_norm.weight"].copy();
    let report = load_weights_mapped(&fresh.vs, dir.path(), &map, true).unwrap();
    assert_eq!(
        report.kept_fresh["encoder.final_layer_norm.weight"],
        "encoder.final_layer_norm.scale"
    );
    assert!(fresh.vs.variables()["encoder.final_layer_norm.weight"].equal(&norm_before));
    assert!(report
        .unused
        .contains(&"encoder.final_layer_norm.weight".to_string()));
    // A tensor of another shape: named with the variable it was meant for.
    let map = AssignmentMap::new(&[
        (r"hyper\..*".into(), None),
        (
            r"encoder\.final_layer_norm\.weight".into(),
            Some("shared.weight".into()),
        ),
    ])
    .unwrap();
    let error = load_weights_mapped(&hint.vs, dir.path(), &map, false).unwrap_err();
    assert!(matches!(error, ModelError::ShapeMismatch { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("shared.weight` (for `encoder.final_layer_norm.weight`)"),
        "{error}"
    );
}
