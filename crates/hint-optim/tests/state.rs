//! Saving, resuming and partially restoring the optimizer state.

use std::collections::HashMap;

use hint_optim::{Adafactor, AdafactorConfig, OptimError, ParamGroup, RestoreOptions};
use tch::{Device, Kind, Tensor};

fn randn(shape: &[i64], seed: i64) -> Tensor {
    tch::manual_seed(seed);
    Tensor::randn(shape, (Kind::Float, Device::Cpu))
}

const T5: [(&str, [i64; 2]); 3] = [
    ("encoder.block.0.q.weight", [256, 384]),
    ("encoder.relative_attention_bias", [32, 6]),
    ("shared.weight", [300, 256]),
];
const HYPER: [(&str, [i64; 2]); 2] = [
    ("hyper.component_embedding", [160, 256]),
    ("hyper.generator.wi", [8, 16]),
];

fn params(with_hyper: bool) -> Vec<(String, Tensor)> {
    T5.iter()
        .chain(if with_hyper { &HYPER[..] } else { &[] })
        .enumerate()
        .map(|(i, (name, shape))| (name.to_string(), randn(shape, i as i64)))
        .collect()
}

fn grads(params: &[(String, Tensor)], seed: i64) -> HashMap<String, Tensor> {
    params
        .iter()
        .enumerate()
        .map(|(i, (n, t))| (n.clone(), randn(&t.size(), 1000 * seed + i as i64)))
        .collect()
}

fn shallow(params: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    params
        .iter()
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect()
}

fn deep(params: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    params.iter().map(|(n, t)| (n.clone(), t.copy())).collect()
}

fn momentum() -> AdafactorConfig {
    AdafactorConfig {
        beta1: Some(0.9),
        ..AdafactorConfig::default()
    }
}

#[test]
fn resume_gives_bit_identical_updates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("optimizer.safetensors");
    let params_a = params(true);
    let groups = ParamGroup::dual(
        AdafactorConfig {
            step_offset: 2,
            ..momentum()
        },
        momentum(),
    );
    let mut a = Adafactor::new(shallow(&params_a), groups.clone()).unwrap();
    a.set_global_step(2);
    for step in 0..3 {
        a.apply_gradients(&grads(&params_a, step)).unwrap();
    }
    a.save_state(&path).unwrap();
    assert!(!dir.path().join("optimizer.safetensors.tmp").exists());

    let params_b = deep(&params_a);
    let mut b = Adafactor::new(shallow(&params_b), groups).unwrap();
    let report = b.load_state(&path, &RestoreOptions::default()).unwrap();
    assert_eq!(report.step, Some(5));
    assert!(
        report.initialised.is_empty() && report.unused.is_empty(),
        "{report:?}"
    );
    assert_eq!(
        report.restored.len(),
        3 * 3 + 2 * 2,
        "factored: v_row, v_col, m; unfactored: v, m"
    );
    assert_eq!(b.global_step(), 5);
    for step in 3..5 {
        let g = grads(&params_a, step);
        a.apply_gradients(&g).unwrap();
        b.apply_gradients(&g).unwrap();
    }
    for ((name, x), (_, y)) in params_a.iter().zip(&params_b) {
        assert!(x.equal(y), "{name} differs after resuming");
    }
    for ((ka, ta), (kb, tb)) in a.state_tensors().iter().zip(&b.state_tensors()) {
        assert_eq!(ka, kb);
        assert!(ta.equal(tb), "{ka} differs after resuming");
    }
}

/// A T5-only optimizer state, trained a few steps (the "LM-adapt checkpoint").
fn t5_state(dir: &std::path::Path) -> std::path::PathBuf {
    let t5 = params(false);
    let mut opt = Adafactor::single(shallow(&t5), AdafactorConfig::default()).unwrap();
    opt.set_global_step(1_100_000);
    for step in 0..2 {
        opt.apply_gradients(&grads(&t5, step)).unwrap();
    }
    let path = dir.join("t5.safetensors");
    opt.save_state(&path).unwrap();
    path
}

fn hint_optimizer() -> Adafactor {
    let hyper = AdafactorConfig {
        step_offset: 1_100_002,
        ..AdafactorConfig::default()
    };
    Adafactor::new(
        params(true),
        ParamGroup::dual(hyper, AdafactorConfig::default()),
    )
    .unwrap()
}

#[test]
fn partial_init_lists_exactly_the_missing_slots() {
    let dir = tempfile::tempdir().unwrap();
    let path = t5_state(dir.path());
    let mut opt = hint_optimizer();
    let options = RestoreOptions {
        fallback_to_scratch: true,
        ..RestoreOptions::default()
    };
    let report = opt.load_state(&path, &options).unwrap();
    assert_eq!(
        report.initialised,
        vec![
            "state.param_states.hyper.component_embedding.v_row",
            "state.param_states.hyper.component_embedding.v_col",
            "state.param_states.hyper.generator.wi.v",
        ]
    );
    assert_eq!(report.restored.len(), 2 + 1 + 2);
    assert_eq!(report.step, Some(1_100_002));
    let t5_v = opt.slot("encoder.relative_attention_bias", "v").unwrap();
    assert!(
        t5_v.abs().sum(Kind::Float).double_value(&[]) > 0.0,
        "T5 moments restored"
    );
    // The hyper group starts with ρ = 0 at the restored step thanks to its offset.
    let g = grads(&params(true), 7);
    opt.apply_gradients(&g).unwrap();
    let wi_v = opt.slot("hyper.generator.wi", "v").unwrap();
    let expected = g["hyper.generator.wi"].square() + 1e-30;
    assert!(wi_v.allclose(&expected, 1e-6, 0.0, false));

    let strict = hint_optimizer()
        .load_state(&path, &RestoreOptions::default())
        .unwrap_err();
    match strict {
        OptimError::MissingSlots(keys) => assert_eq!(keys, report.initialised),
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn assignment_rule_forces_fresh_slots() {
    let dir = tempfile::tempdir().unwrap();
    // A full HINT state, hyper slots included and non-zero.
    let mut trained = hint_optimizer();
    trained.set_global_step(1_100_002);
    trained.apply_gradients(&grads(&params(true), 1)).unwrap();
    let path = dir.path().join("hint.safetensors");
    trained.save_state(&path).unwrap();

    let mut opt = hint_optimizer();
    // Non-zero slots before the restore show that "skip" re-initialises rather than keeps.
    opt.set_global_step(1_100_002);
    opt.apply_gradients(&grads(&params(true), 2)).unwrap();
    let report = opt
        .load_state(&path, &RestoreOptions::hint_from_t5())
        .unwrap();
    assert_eq!(report.initialised.len(), 3);
    assert!(report.initialised.iter().all(|k| k.contains("hyper")));
    assert!(
        report.unused.iter().all(|k| k.contains("hyper")) && report.unused.len() == 3,
        "{:?}",
        report.unused
    );
    let v_row = opt.slot("hyper.component_embedding", "v_row").unwrap();
    assert_eq!(v_row.abs().sum(Kind::Float).double_value(&[]), 0.0);

    let unused_rule = RestoreOptions {
        assignment_map: vec![("^nothing$".into(), None)],
        fallback_to_scratch: true,
    };
    assert!(
        matches!(opt.load_state(&path, &unused_rule), Err(OptimError::UnusedAssignmentRule(p)) if p == "^nothing$")
    );

    // A rule with a replacement reads the slot from the key it expands to.
    let renamed = RestoreOptions {
        assignment_map: vec![(
            r"state\.param_states\.shared\.weight\.(.*)".into(),
            Some("state.param_states.shared.weight.$1".into()),
        )],
        fallback_to_scratch: false,
    };
    let report = opt.load_state(&path, &renamed).unwrap();
    assert!(report.initialised.is_empty());
}

#[test]
fn slot_shape_mismatch_names_the_slot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    let mut opt = hint_optimizer();
    let mut state = opt.state_tensors();
    for (key, tensor) in &mut state {
        if key == "state.param_states.shared.weight.v_col" {
            *tensor = Tensor::zeros([255], (Kind::Float, Device::Cpu));
        }
    }
    Tensor::write_safetensors(&state, &path).unwrap();
    let err = opt
        .load_state(&path, &RestoreOptions::default())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("state.param_states.shared.weight.v_col"),
        "{err}"
    );
    assert!(
        matches!(err, OptimError::SlotShapeMismatch { expected, found, .. } if expected == vec![300] && found == vec![255])
    );
}
