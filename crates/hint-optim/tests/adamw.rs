//! AdamW groups: `torch.optim.AdamW`'s trajectory (`scripts/adamw_golden.py`), and an
//! AdamW group beside an Adafactor group in one optimizer, saved and restored mid-run
//! with bit-identical continuation.

use std::collections::HashMap;

use hint_optim::{Adafactor, AdafactorConfig, AdamWConfig, ParamGroup, RestoreOptions, Schedule};
use serde_json::Value;
use tch::{Kind, Tensor};

const DATA: &str = include_str!("data/adamw_golden.json");

fn tensor(values: &Value, shape: &[i64]) -> Tensor {
    let values: Vec<f32> = values
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    Tensor::from_slice(&values).reshape(shape)
}

fn golden_config() -> AdamWConfig {
    AdamWConfig {
        learning_rate_schedule: Some(Schedule {
            factors: "constant * linear_warmup".into(),
            base_learning_rate: 1e-2,
            warmup_steps: 4,
            min_learning_rate: 0.0,
            ..Schedule::default()
        }),
        beta1: 0.9,
        beta2: 0.99,
        epsilon: 1e-6,
        weight_decay: 0.1,
        ..AdamWConfig::default()
    }
}

fn max_difference(a: &Tensor, b: &Tensor) -> f64 {
    f64::try_from((a - b).abs().max()).unwrap()
}

#[test]
fn an_adamw_group_follows_torch_adamw() {
    let data: Value = serde_json::from_str(DATA).unwrap();
    let shapes: Vec<(String, Vec<i64>)> = data["shapes"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, shape)| {
            let shape = shape
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_i64().unwrap())
                .collect();
            (name.clone(), shape)
        })
        .collect();
    let params: Vec<(String, Tensor)> = shapes
        .iter()
        .map(|(name, shape)| (name.clone(), tensor(&data["initial"][name], shape)))
        .collect();
    let shallow: Vec<(String, Tensor)> = params
        .iter()
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    let mut optimizer = Adafactor::new(
        shallow,
        vec![ParamGroup::adamw("all", ".*", golden_config())],
    )
    .unwrap();
    for (step, gradients) in data["gradients"].as_array().unwrap().iter().enumerate() {
        let expected_lr = data["learning_rates"][step].as_f64().unwrap();
        let lr = optimizer.groups()[0].learning_rate_at(step as u64).unwrap();
        assert!(
            (lr - expected_lr).abs() < 1e-12,
            "step {step}: {lr} vs {expected_lr}"
        );
        let grads: HashMap<String, Tensor> = shapes
            .iter()
            .map(|(name, shape)| (name.clone(), tensor(&gradients[name], shape)))
            .collect();
        optimizer.apply_gradients(&grads).unwrap();
        for (name, shape) in &shapes {
            let expected = tensor(&data["trajectory"][step][name], shape);
            let got = &params.iter().find(|(n, _)| n == name).unwrap().1;
            let difference = max_difference(got, &expected);
            assert!(difference < 2e-6, "step {step}, {name}: {difference}");
        }
    }
    for (name, shape) in &shapes {
        for slot in ["m", "v"] {
            let expected = tensor(&data["state"][name][slot], shape);
            let got = optimizer.slot(name, slot).unwrap();
            let difference = max_difference(&got, &expected);
            assert!(difference < 2e-6, "{name}.{slot}: {difference}");
        }
    }
    assert_eq!(optimizer.global_step(), 8);
}

/// One optimizer, an AdamW group and an Adafactor group: the state holds each group's
/// slots, a restore in a fresh optimizer continues bit for bit, and a bad setting is
/// refused naming the group.
#[test]
fn adamw_and_adafactor_groups_save_and_resume_exactly() {
    let make_params = || -> Vec<(String, Tensor)> {
        tch::manual_seed(3);
        vec![
            (
                "hyper.gen.weight".into(),
                Tensor::randn([6, 4], (Kind::Float, tch::Device::Cpu)),
            ),
            (
                "encoder.weight".into(),
                Tensor::randn([8, 6], (Kind::Float, tch::Device::Cpu)),
            ),
        ]
    };
    let groups = || {
        vec![
            ParamGroup::adamw("hyper", ".*hyper.*", AdamWConfig::default()),
            ParamGroup::new(
                "t5",
                ".*hyper.*",
                AdafactorConfig {
                    min_dim_size_to_factor: 4,
                    ..AdafactorConfig::with_learning_rate(1e-2)
                },
            )
            .inverted(),
        ]
    };
    let grads = |step: i64| -> HashMap<String, Tensor> {
        tch::manual_seed(100 + step);
        [("hyper.gen.weight", [6, 4]), ("encoder.weight", [8, 6])]
            .into_iter()
            .map(|(n, s)| {
                (
                    n.to_string(),
                    Tensor::randn(s, (Kind::Float, tch::Device::Cpu)),
                )
            })
            .collect()
    };
    let shallow = |p: &[(String, Tensor)]| -> Vec<(String, Tensor)> {
        p.iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect()
    };
    // Straight through 6 steps.
    let straight = make_params();
    let mut optimizer = Adafactor::new(shallow(&straight), groups()).unwrap();
    for step in 0..6 {
        optimizer.apply_gradients(&grads(step)).unwrap();
    }
    assert!(optimizer.slot("hyper.gen.weight", "m").is_some());
    assert!(optimizer.slot("hyper.gen.weight", "v").is_some());
    assert!(optimizer.slot("encoder.weight", "v_row").is_some());
    // AdamW keeps two full-size moments, Adafactor its factors.
    assert_eq!(optimizer.state_numel("hyper.gen.weight"), Some(2 * 24));
    assert_eq!(groups()[0].state_elements(&[6, 4]), 48);
    assert_eq!(optimizer.state_numel("encoder.weight"), Some(8 + 6));
    // 3 steps, save, restore into a fresh optimizer over copies, 3 more.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("optimizer.safetensors");
    let first = make_params();
    let mut optimizer = Adafactor::new(shallow(&first), groups()).unwrap();
    for step in 0..3 {
        optimizer.apply_gradients(&grads(step)).unwrap();
    }
    optimizer.save_state(&state).unwrap();
    let resumed: Vec<(String, Tensor)> = first.iter().map(|(n, t)| (n.clone(), t.copy())).collect();
    let mut optimizer = Adafactor::new(shallow(&resumed), groups()).unwrap();
    optimizer
        .load_state(&state, &RestoreOptions::default())
        .unwrap();
    assert_eq!(optimizer.global_step(), 3);
    for step in 3..6 {
        optimizer.apply_gradients(&grads(step)).unwrap();
    }
    for ((name, a), (_, b)) in straight.iter().zip(&resumed) {
        assert!(a.equal(b), "{name} differs after the resume");
    }
    // A setting AdamW cannot use is refused, naming the group.
    let bad = vec![ParamGroup::adamw(
        "hyper",
        ".*",
        AdamWConfig {
            beta2: 1.0,
            ..AdamWConfig::default()
        },
    )];
    let error = Adafactor::new(make_params(), bad).unwrap_err().to_string();
    assert!(
        error.contains("hyper") && error.contains("beta2"),
        "{error}"
    );
}
