//! Multi-group behaviour: frozen groups, per-group settings, one global step, the
//! memory of factored state, dtypes and error paths.

use std::collections::HashMap;

use hint_optim::{Adafactor, AdafactorConfig, OptimError, ParamGroup, Schedule};
use tch::{Device, Kind, Tensor};

fn randn(shape: &[i64], seed: i64) -> Tensor {
    tch::manual_seed(seed);
    Tensor::randn(shape, (Kind::Float, Device::Cpu))
}

fn model() -> Vec<(String, Tensor)> {
    vec![
        (
            "encoder.block.0.q.weight".to_string(),
            randn(&[256, 384], 1),
        ),
        (
            "encoder.final_layer_norm.weight".to_string(),
            randn(&[384], 2),
        ),
        (
            "hyper.component_embedding".to_string(),
            randn(&[160, 256], 3),
        ),
        ("hyper.generator.wi".to_string(), randn(&[8, 16], 4)),
        ("shared.weight".to_string(), randn(&[300, 256], 5)),
    ]
}

fn grads_for(params: &[(String, Tensor)], seed: i64) -> HashMap<String, Tensor> {
    params
        .iter()
        .enumerate()
        .map(|(i, (name, t))| (name.clone(), randn(&t.size(), seed * 100 + i as i64)))
        .collect()
}

fn snapshot(params: &[(String, Tensor)]) -> Vec<Tensor> {
    params.iter().map(|(_, t)| t.copy()).collect()
}

#[test]
fn frozen_group_is_neither_updated_nor_stateful() {
    let params = model();
    let groups = vec![
        ParamGroup::new("hyper", ".*hyper.*", AdafactorConfig::default()),
        ParamGroup::frozen("t5", ".*hyper.*").inverted(),
    ];
    let mut opt = Adafactor::new(
        params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())),
        groups,
    )
    .unwrap();
    assert_eq!(
        opt.trainable(),
        vec!["hyper.component_embedding", "hyper.generator.wi"]
    );
    assert_eq!(
        opt.frozen(),
        vec![
            "encoder.block.0.q.weight",
            "encoder.final_layer_norm.weight",
            "shared.weight"
        ]
    );
    assert_eq!(opt.state_numel("shared.weight"), None);
    assert!(
        !params[0].1.requires_grad(),
        "frozen parameters stop requiring grad"
    );
    let before = snapshot(&params);
    opt.apply_gradients(&grads_for(&params, 1)).unwrap();
    for ((name, t), b) in params.iter().zip(&before) {
        let frozen = !name.contains("hyper");
        assert_eq!(t.equal(b), frozen, "{name}: frozen={frozen}");
    }
    let state: Vec<String> = opt.state_tensors().into_iter().map(|(k, _)| k).collect();
    assert!(
        state
            .iter()
            .all(|k| k == "state.step" || k.contains("hyper")),
        "{state:?}"
    );
}

#[test]
fn groups_use_their_own_settings_under_one_step() {
    let params = model();
    // Same gradients into a dual optimizer and into two single-group optimizers.
    let hyper = AdafactorConfig {
        step_offset: 3,
        multiply_by_parameter_scale: false,
        ..AdafactorConfig::with_learning_rate(2e-3)
    };
    let t5 = AdafactorConfig::with_learning_rate(1e-3);
    let dual_params: Vec<(String, Tensor)> =
        params.iter().map(|(n, t)| (n.clone(), t.copy())).collect();
    let mut dual = Adafactor::new(
        dual_params
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone())),
        ParamGroup::dual(hyper.clone(), t5.clone()),
    )
    .unwrap();
    dual.set_global_step(3);
    let (h, t): (Vec<_>, Vec<_>) = params
        .iter()
        .map(|(n, t)| (n.clone(), t.copy()))
        .partition(|(n, _)| n.contains("hyper"));
    let mut only_hyper =
        Adafactor::single(h.iter().map(|(n, t)| (n.clone(), t.shallow_clone())), hyper).unwrap();
    only_hyper.set_global_step(3);
    let mut only_t5 =
        Adafactor::single(t.iter().map(|(n, t)| (n.clone(), t.shallow_clone())), t5).unwrap();
    only_t5.set_global_step(3);
    for step in 0..3 {
        let grads = grads_for(&params, step);
        dual.apply_gradients(&grads).unwrap();
        let part = |keep: bool| {
            grads
                .iter()
                .filter(|(n, _)| n.contains("hyper") == keep)
                .map(|(n, g)| (n.clone(), g.shallow_clone()))
                .collect()
        };
        only_hyper.apply_gradients(&part(true)).unwrap();
        only_t5.apply_gradients(&part(false)).unwrap();
    }
    assert_eq!(dual.global_step(), 6);
    for (name, tensor) in &dual_params {
        let other = h.iter().chain(&t).find(|(n, _)| n == name).unwrap();
        assert!(
            tensor.equal(&other.1),
            "{name} differs from its single-group run"
        );
    }
    assert_eq!(dual.group_of("hyper.generator.wi"), Some("hyper"));
    assert_eq!(dual.group_of("shared.weight"), Some("t5"));
}

#[test]
fn factored_state_is_linear_in_the_dimensions() {
    let params = model();
    let opt = Adafactor::single(
        params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())),
        AdafactorConfig::default(),
    )
    .unwrap();
    assert_eq!(opt.state_numel("encoder.block.0.q.weight"), Some(256 + 384));
    assert_eq!(
        opt.slot("encoder.block.0.q.weight", "v_row")
            .unwrap()
            .size(),
        vec![256]
    );
    assert_eq!(
        opt.slot("encoder.block.0.q.weight", "v_col")
            .unwrap()
            .size(),
        vec![384]
    );
    assert!(opt.slot("encoder.block.0.q.weight", "v").is_none());
    assert_eq!(
        opt.state_numel("hyper.generator.wi"),
        Some(8 * 16),
        "8 < 128: unfactored"
    );
    assert_eq!(
        opt.state_numel("encoder.final_layer_norm.weight"),
        Some(384)
    );
    let with_momentum = Adafactor::single(
        params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())),
        AdafactorConfig {
            beta1: Some(0.9),
            ..AdafactorConfig::default()
        },
    )
    .unwrap();
    assert_eq!(
        with_momentum.state_numel("shared.weight"),
        Some(300 + 256 + 300 * 256)
    );
}

#[test]
fn schedule_drives_the_learning_rate_at_the_global_step() {
    // Unfactored, no parameter scale, no clipping, ρ = 0 on every step (fresh offset):
    // Δ = lr · G / sqrt(G² + ε1) = lr · sign(G), so the update reveals lr.
    let schedule = Schedule {
        factors: "constant * linear_warmup * rsqrt_decay".into(),
        base_learning_rate: 1.0,
        warmup_steps: 4,
        ..Schedule::default()
    };
    for (step, lr) in [(1u64, 0.125), (2, 0.25), (4, 0.5), (16, 0.25)] {
        let w = Tensor::zeros([3], (Kind::Float, Device::Cpu));
        let config = AdafactorConfig {
            learning_rate_schedule: Some(schedule.clone()),
            multiply_by_parameter_scale: false,
            clipping_threshold: None,
            step_offset: step,
            ..AdafactorConfig::default()
        };
        let mut opt = Adafactor::single([("w", w.shallow_clone())], config).unwrap();
        opt.set_global_step(step);
        let g = Tensor::from_slice(&[1.0f32, -2.0, 0.5]);
        opt.apply_gradients(&HashMap::from([("w".to_string(), g)]))
            .unwrap();
        let got: Vec<f32> = Vec::try_from(&w).unwrap();
        let lr = lr as f32;
        assert_eq!(got, vec![-lr, lr, -lr], "step {step}");
    }
}

#[test]
fn missing_gradient_counts_as_zero_and_bf16_is_updated_in_f32() {
    let w = Tensor::from_slice(&[1.0f32, -1.0, 0.5, 0.25]).to_kind(Kind::BFloat16);
    let u = Tensor::from_slice(&[0.5f32, 0.5]);
    let mut opt = Adafactor::single(
        [("w", w.shallow_clone()), ("u", u.shallow_clone())],
        AdafactorConfig::with_learning_rate(0.1),
    )
    .unwrap();
    let g = Tensor::from_slice(&[1.0f32, 1.0, -1.0, 0.0]).to_kind(Kind::BFloat16);
    opt.apply_gradients(&HashMap::from([("w".to_string(), g)]))
        .unwrap();
    assert_eq!(w.kind(), Kind::BFloat16);
    let got: Vec<f32> = Vec::try_from(w.to_kind(Kind::Float)).unwrap();
    // ρ = 0 so U = sign(G); RMS(U) = sqrt(3/4) < 1 leaves it unclipped; scale RMS(W) = sqrt(2.3125/4).
    let s = 0.1 * (2.3125f32 / 4.0).sqrt();
    let want: Vec<f32> = [1.0 - s, -1.0 - s, 0.5 + s, 0.25]
        .iter()
        .map(|x| {
            Tensor::from(*x)
                .to_kind(Kind::BFloat16)
                .to_kind(Kind::Float)
                .double_value(&[]) as f32
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        Vec::<f32>::try_from(&u).unwrap(),
        vec![0.5, 0.5],
        "zero gradient, no change"
    );
    assert_eq!(opt.slot("w", "v").unwrap().kind(), Kind::Float);
}

#[test]
fn errors_leave_the_optimizer_untouched() {
    let w = Tensor::ones([4], (Kind::Float, Device::Cpu));
    let mut opt = Adafactor::single(
        [("w", w.shallow_clone())],
        AdafactorConfig {
            step_offset: 5,
            ..AdafactorConfig::default()
        },
    )
    .unwrap();
    let grads = HashMap::from([(
        "w".to_string(),
        Tensor::ones([4], (Kind::Float, Device::Cpu)),
    )]);
    let err = opt.apply_gradients(&grads).unwrap_err();
    assert!(
        matches!(
            err,
            OptimError::StepBeforeOffset {
                step: 0,
                step_offset: 5,
                ..
            }
        ),
        "{err}"
    );
    opt.set_global_step(5);
    let wrong = HashMap::from([(
        "w".to_string(),
        Tensor::ones([2, 2], (Kind::Float, Device::Cpu)),
    )]);
    assert!(matches!(
        opt.apply_gradients(&wrong),
        Err(OptimError::GradientShape { .. })
    ));
    let unknown = HashMap::from([(
        "nope".to_string(),
        Tensor::ones([4], (Kind::Float, Device::Cpu)),
    )]);
    assert!(
        matches!(opt.apply_gradients(&unknown), Err(OptimError::UnknownGradients(names)) if names == vec!["nope"])
    );
    assert_eq!(opt.global_step(), 5);
    assert!(w.equal(&Tensor::ones([4], (Kind::Float, Device::Cpu))));
    let int = Tensor::ones([2], (Kind::Int64, Device::Cpu));
    assert!(matches!(
        Adafactor::single([("i", int)], AdafactorConfig::default()),
        Err(OptimError::NonFloatParameter { .. })
    ));
}

#[test]
fn step_reads_autograd_gradients_and_skip_nan_keeps_old_values() {
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let w = vs
        .root()
        .var_copy("w", &Tensor::from_slice(&[1.0f32, 2.0, 3.0]));
    let mut opt = Adafactor::from_var_store(
        &vs,
        vec![ParamGroup::new(
            "all",
            ".*",
            AdafactorConfig {
                skip_nan_updates: true,
                ..AdafactorConfig::default()
            },
        )],
    )
    .unwrap();
    let target = Tensor::from_slice(&[1.0f32, f32::NAN, 0.0]);
    (&w * &target).sum(Kind::Float).backward();
    opt.step().unwrap();
    opt.zero_grad();
    // One NaN gradient makes RMS(U), hence the whole update, NaN: t5x keeps every old value,
    // while the slot keeps its new value wherever that is not NaN.
    assert_eq!(Vec::<f32>::try_from(&w).unwrap(), vec![1.0, 2.0, 3.0]);
    assert_eq!(
        Vec::<f32>::try_from(opt.slot("w", "v").unwrap()).unwrap(),
        vec![1.0, 0.0, 1e-30]
    );
    assert_eq!(opt.global_step(), 1);
    (&w * Tensor::from_slice(&[1.0f32, 1.0, 1.0]))
        .sum(Kind::Float)
        .backward();
    opt.step().unwrap();
    let got: Vec<f32> = Vec::try_from(&w).unwrap();
    assert!(
        got.iter().zip([1.0, 2.0, 3.0]).all(|(a, b)| *a < b),
        "finite gradients move every value: {got:?}"
    );
}

/// Handles to the same tensors.
fn shared(params: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    params
        .iter()
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect()
}

/// Deep copies, so that two optimizers do not update the same tensors.
fn copies(params: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    params
        .iter()
        .map(|(n, t)| (n.clone(), t.detach().copy().set_requires_grad(true)))
        .collect()
}

#[test]
fn shards_that_split_the_parameters_update_them_as_one_optimizer_does() {
    let groups = || {
        vec![
            ParamGroup::new("hyper", "^hyper\\..*", AdafactorConfig::default()),
            ParamGroup::new("t5", "^(encoder|shared)\\..*", AdafactorConfig::default()),
        ]
    };
    let params = model();
    let whole_params = copies(&params);
    let mut whole = Adafactor::new(shared(&whole_params), groups()).unwrap();
    // Rank 0 owns the names of even index, rank 1 the rest.
    let names: Vec<String> = params.iter().map(|(n, _)| n.clone()).collect();
    let owner = |name: &str| names.iter().position(|n| n == name).unwrap() % 2;
    let shard_params = [copies(&params), copies(&params)];
    let mut shards: Vec<Adafactor> = (0..2)
        .map(|rank| {
            Adafactor::new_sharded(shared(&shard_params[rank]), groups(), &|n| owner(n) == rank)
                .unwrap()
        })
        .collect();
    for step in 0..3 {
        let grads = grads_for(&params, step + 7);
        whole.apply_gradients(&grads).unwrap();
        for shard in &mut shards {
            shard.apply_gradients(&grads).unwrap();
        }
    }
    for (i, (name, expected)) in whole_params.iter().enumerate() {
        let got = &shard_params[owner(name)][i].1;
        assert!(got.allclose(expected, 0.0, 0.0, false), "{name}");
    }
    assert_eq!(
        shards[0].owned().len() + shards[1].owned().len(),
        names.len()
    );
    assert_eq!(shards[0].trainable().len(), names.len());
    let state = |o: &Adafactor| o.state_tensors().len();
    // Each shard holds only its parameters' slots (plus the step).
    assert_eq!(state(&shards[0]) + state(&shards[1]) - 2, state(&whole) - 1);
    let clipping = ParamGroup::new(
        "all",
        ".*",
        AdafactorConfig {
            global_norm_clip_threshold: Some(1.0),
            ..AdafactorConfig::default()
        },
    );
    let err = Adafactor::new_sharded(copies(&params), vec![clipping], &|_| true).unwrap_err();
    assert!(
        err.to_string().contains("global_norm_clip_threshold"),
        "{err}"
    );
}
