//! The umbrella crate exposes every member crate, and libtorch works through it.

use hint::model::{libtorch_version, select_device};
use tch::Tensor;

#[test]
fn tch_computes_through_the_umbrella_crate() {
    let device = select_device("cpu").unwrap();
    let x = Tensor::from_slice(&[3.0f64, 4.0]).to_device(device);
    let norm: f64 = x.norm().try_into().unwrap();
    assert_eq!(norm, 5.0);
    assert!(libtorch_version().starts_with("2.13.0"));
}

#[test]
fn schedules_and_gin_flags_are_reachable() {
    let schedule = hint::optim::Schedule::constant(1e-3);
    assert_eq!(schedule.learning_rate(123).unwrap(), 1e-3);
    assert_eq!(
        hint::config::rewrite_gin_flag("--gin.TRAIN_STEPS=10"),
        Some(Ok("TRAIN_STEPS = 10".to_string()))
    );
}
