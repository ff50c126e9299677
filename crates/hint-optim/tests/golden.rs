//! Trajectories of `scripts/adafactor_golden.py` (optax and a numpy transcription of
//! t5x): 20 steps over 1-D, small 2-D, factored 2-D, 3-D and tie-shaped parameters.

use std::collections::HashMap;

use hint_optim::{Adafactor, AdafactorConfig, ParamGroup, Schedule};
use serde_json::Value;
use tch::Tensor;

const DATA: &str = include_str!("data/adafactor_golden.json");

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
    z ^ (z >> 31)
}

/// The script's `stream`: uniform f32 in [-1, 1), exact.
fn stream(seed: u64, param: u64, step: u64, shape: &[i64]) -> Tensor {
    let n: i64 = shape.iter().product();
    let key = mix64(
        seed.wrapping_mul(1_000_003)
            .wrapping_add(param * 1009)
            .wrapping_add(step),
    );
    let values: Vec<f32> = (0..n as u64)
        .map(|j| {
            let x = mix64(key.wrapping_add(j.wrapping_mul(0x9E3779B97F4A7C15)));
            2.0 * ((x >> 40) as f32 * 2f32.powi(-24)) - 1.0
        })
        .collect();
    Tensor::from_slice(&values).reshape(shape)
}

fn grad(seed: u64, param: u64, step: u64, shape: &[i64]) -> Tensor {
    stream(seed, param, step, shape) * f64::from(2f32.powi(-((step % 4) as i32)))
}

fn sample_indices(n: usize, samples: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..samples)
        .map(|k| (k * 7919 + (k * n) / samples) % n)
        .collect();
    idx.sort_unstable();
    idx.dedup();
    idx
}

fn run_case(case: &str, groups: Vec<ParamGroup>) {
    let data: Value = serde_json::from_str(DATA).unwrap();
    let seed = data["seed"].as_u64().unwrap();
    let steps = data["steps"].as_u64().unwrap();
    let samples = data["samples"].as_u64().unwrap() as usize;
    let params: Vec<(String, Vec<i64>)> = data["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let shape = p["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_i64().unwrap())
                .collect();
            (p["name"].as_str().unwrap().to_string(), shape)
        })
        .collect();
    let expected = &data["cases"][case];
    let initial: Vec<Tensor> = params
        .iter()
        .enumerate()
        .map(|(i, (_, shape))| stream(seed, i as u64, 0, shape))
        .collect();
    let tensors: Vec<Tensor> = initial.iter().map(Tensor::copy).collect();
    let mut optimizer = Adafactor::new(
        params
            .iter()
            .zip(&tensors)
            .map(|((n, _), t)| (n.clone(), t.shallow_clone())),
        groups,
    )
    .unwrap();
    optimizer.set_global_step(expected["first_step"].as_u64().unwrap());
    let mut worst = 0f64;
    for k in 1..=steps {
        let grads: HashMap<String, Tensor> = params
            .iter()
            .enumerate()
            .map(|(i, (name, shape))| (name.clone(), grad(seed, i as u64, k, shape)))
            .collect();
        optimizer.apply_gradients(&grads).unwrap();
        let Some(checkpoint) = expected["checkpoints"].get(k.to_string()) else {
            continue;
        };
        for (((name, _), w), w0) in params.iter().zip(&tensors).zip(&initial) {
            let want = &checkpoint[name];
            let flat: Vec<f32> = Vec::try_from(w.flatten(0, -1)).unwrap();
            let idx = sample_indices(flat.len(), samples);
            let want_samples = want["samples"].as_array().unwrap();
            // Relative to the element, or to the parameter's RMS for elements near zero,
            // where f32 rounding of the accumulated update dominates.
            let rms = (want["sumsq"].as_f64().unwrap() / flat.len() as f64).sqrt();
            assert_eq!(idx.len(), want_samples.len());
            for (&i, e) in idx.iter().zip(want_samples) {
                let (a, e) = (f64::from(flat[i]), e.as_f64().unwrap());
                let rel = (a - e).abs() / e.abs().max(rms);
                worst = worst.max(rel);
                assert!(
                    rel <= 1e-6,
                    "{case} step {k} {name}[{i}]: {a} vs {e} (rel {rel:.2e})"
                );
            }
            let sumsq = w
                .to_kind(tch::Kind::Double)
                .square()
                .sum(tch::Kind::Double)
                .double_value(&[]);
            let want_sumsq = want["sumsq"].as_f64().unwrap();
            assert!(
                (sumsq - want_sumsq).abs() <= 1e-6 * want_sumsq,
                "{case} step {k} {name} sumsq {sumsq} vs {want_sumsq}"
            );
            // The accumulated update is ~1e-2 of W: check it on its own scale too.
            let delta = (w.to_kind(tch::Kind::Double) - w0.to_kind(tch::Kind::Double))
                .square()
                .sum(tch::Kind::Double)
                .double_value(&[]);
            let want_delta = want["delta_sumsq"].as_f64().unwrap();
            assert!(
                (delta - want_delta).abs() <= 1e-4 * want_delta,
                "{case} step {k} {name} delta_sumsq {delta} vs {want_delta}"
            );
        }
    }
    assert!(
        worst <= 1e-6,
        "{case}: worst relative difference {worst:.2e}"
    );
}

fn one_group(hparams: AdafactorConfig) -> Vec<ParamGroup> {
    vec![ParamGroup::new("all", ".*", hparams)]
}

#[test]
fn optax_default() {
    run_case(
        "optax_default",
        one_group(AdafactorConfig::with_learning_rate(1e-2)),
    );
}

#[test]
fn optax_momentum_and_weight_decay() {
    run_case(
        "optax_momentum_wd",
        one_group(AdafactorConfig {
            beta1: Some(0.9),
            weight_decay_rate: Some(1e-3),
            ..AdafactorConfig::with_learning_rate(1e-2)
        }),
    );
}

#[test]
fn t5x_two_groups_with_offsets_schedule_and_clipping() {
    let a = AdafactorConfig {
        step_offset: 1000,
        max_parameter_scale: Some(0.5),
        global_norm_clip_threshold: Some(1.0),
        ..AdafactorConfig::with_learning_rate(1e-2)
    };
    let b = AdafactorConfig {
        learning_rate_schedule: Some(Schedule {
            factors: "constant * rsqrt_decay".into(),
            base_learning_rate: 1.0,
            warmup_steps: 10,
            ..Schedule::default()
        }),
        multiply_by_parameter_scale: false,
        beta1: Some(0.5),
        decay_rate: 0.7,
        weight_decay_rate: Some(0.1),
        weight_decay_rate_lr_exponent: Some(1.0),
        ..AdafactorConfig::default()
    };
    run_case(
        "t5x_groups",
        vec![
            ParamGroup::new("a", "a\\..*", a),
            ParamGroup::new("b", "b\\..*", b),
        ],
    );
}
