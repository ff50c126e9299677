//! The hand-computed test vectors of `shared/reference/adafactor.md` §2.1.

// The literals are copied verbatim from the reference so they can be compared by eye.
#![allow(clippy::excessive_precision, clippy::unreadable_literal)]

use std::collections::HashMap;

use hint_optim::{Adafactor, AdafactorConfig};
use tch::{Kind, Tensor};

fn matrix(rows: [[f32; 3]; 2]) -> Tensor {
    Tensor::from_slice(&rows.concat()).reshape([2, 3])
}

fn assert_close(actual: &Tensor, expected: &[f32], what: &str) {
    let actual: Vec<f32> = Vec::try_from(actual.flatten(0, -1).to_kind(Kind::Float)).unwrap();
    assert_eq!(actual.len(), expected.len(), "{what}");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let tol = 2e-6 * e.abs().max(1e-3);
        assert!((a - e).abs() <= tol, "{what}[{i}]: {a} vs {e}");
    }
}

fn run(min_dim_size_to_factor: i64) -> (Adafactor, Vec<Tensor>) {
    let w = matrix([[0.5, -1.0, 0.25], [2.0, 0.0, -0.5]]);
    let config = AdafactorConfig {
        min_dim_size_to_factor,
        ..AdafactorConfig::with_learning_rate(1e-3)
    };
    let optimizer = Adafactor::single([("w", w.shallow_clone())], config).unwrap();
    (optimizer, vec![w])
}

fn grads(g: [[f32; 3]; 2]) -> HashMap<String, Tensor> {
    HashMap::from([("w".to_string(), matrix(g))])
}

const G1: [[f32; 3]; 2] = [[0.1, -0.2, 0.3], [0.0, 0.05, -0.4]];
const G2: [[f32; 3]; 2] = [[-0.3, 0.1, 0.2], [0.2, -0.1, 0.1]];

#[test]
fn unfactored_two_steps() {
    let (mut opt, w) = run(128);
    opt.apply_gradients(&grads(G1)).unwrap();
    assert_close(
        &w[0],
        &[
            0.49903715,
            -0.99903715,
            0.24903715,
            2.0,
            -9.6285163e-4,
            -0.49903715,
        ],
        "W1",
    );
    opt.apply_gradients(&grads(G2)).unwrap();
    assert_close(
        &w[0],
        &[
            0.5002532,
            -0.99967253,
            0.24826252,
            1.9987348,
            1.9922428e-4,
            -0.49938998,
        ],
        "W2",
    );
    assert_close(
        &opt.slot("w", "v").unwrap(),
        &[
            0.055947937,
            0.022769528,
            0.061282545,
            0.022973968,
            0.006807619,
            0.07384763,
        ],
        "v",
    );
    assert!(opt.slot("w", "v_row").is_none());
    assert_eq!(opt.global_step(), 2);
}

#[test]
fn factored_two_steps() {
    let (mut opt, w) = run(2);
    opt.apply_gradients(&grads(G1)).unwrap();
    assert_close(
        &opt.slot("w", "v_row").unwrap(),
        &[0.04666667, 0.05416667],
        "v_row1",
    );
    assert_close(
        &opt.slot("w", "v_col").unwrap(),
        &[0.005, 0.02125, 0.125],
        "v_col1",
    );
    assert_close(
        &w[0],
        &[
            0.49861583,
            -0.99865717,
            0.24916948,
            2.0,
            -3.1160648e-4,
            -0.49897218,
        ],
        "W1",
    );
    opt.apply_gradients(&grads(G2)).unwrap();
    assert_close(
        &opt.slot("w", "v_row").unwrap(),
        &[0.046666667, 0.03454307],
        "v_row2",
    );
    assert_close(
        &opt.slot("w", "v_col").unwrap(),
        &[0.039460953, 0.014788574, 0.06756508],
        "v_col2",
    );
    assert_close(
        &w[0],
        &[
            0.49997154,
            -0.99939537,
            0.24847877,
            1.9989495,
            5.4639834e-4,
            -0.49937358,
        ],
        "W2",
    );
}
