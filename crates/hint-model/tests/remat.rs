//! Rematerialised blocks (`RematPolicy::Full`, and `Minimal`, which keeps the weight
//! products): with dropout on, the loss and every parameter's gradient equal those of the
//! plain forward pass, for T5 alone and for HINT with every generated module, fusion, and
//! a separate instruction encoder.

use hint_model::{cross_entropy, HyperConfig, HyperT5, LossConfig, RematPolicy, T5Config};
use tch::{nn::VarStore, Device, Kind, Tensor};

fn tiny_t5() -> T5Config {
    T5Config {
        vocab_size: 40,
        d_model: 16,
        d_kv: 4,
        num_heads: 4,
        d_ff: 24,
        num_layers: 2,
        num_decoder_layers: Some(3),
        // Dropout on: the recomputation must draw the same masks.
        dropout_rate: 0.2,
        ..T5Config::preset("tiny").unwrap()
    }
}

fn ids(rows: &[&[i64]]) -> Tensor {
    let width = rows.iter().map(|r| r.len()).max().unwrap();
    let flat: Vec<i64> = rows
        .iter()
        .flat_map(|r| {
            r.iter()
                .copied()
                .chain(std::iter::repeat_n(0, width - r.len()))
        })
        .collect();
    Tensor::from_slice(&flat).view([rows.len() as i64, width as i64])
}

/// The device under test: `HINT_TEST_DEVICE` (e.g. `cuda`, whose generator the
/// recomputation must restore as well), or the CPU.
fn device() -> Device {
    let name = std::env::var("HINT_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    hint_model::open_device(&name).expect("HINT_TEST_DEVICE names a device libtorch sees")
}

/// The loss and the gradients (by name) of one training step.
fn step(hyper: &HyperConfig, policy: RematPolicy) -> (f64, Vec<(String, Tensor)>) {
    tch::manual_seed(11);
    let device = device();
    let vs = VarStore::new(device);
    let mut model = HyperT5::new(vs.root(), &tiny_t5(), hyper);
    model.set_remat_policy(policy);
    let on = |t: Tensor| t.to_device(device);
    let inputs = on(ids(&[&[5, 6, 7, 1], &[8, 9, 1], &[10, 11, 12, 13, 1]]));
    let mask = inputs.ne(0).to_kind(Kind::Int64);
    let instructions = on(ids(&[&[20, 21, 22, 1], &[23, 24, 1], &[20, 21, 22, 1]]));
    let decoder_inputs = on(ids(&[&[0, 3, 4], &[0, 5, 6], &[0, 7, 8]]));
    let targets = on(ids(&[&[3, 4, 1], &[5, 6, 1], &[7, 8, 1]]));
    let weights = targets.ne(0).to_kind(Kind::Float);
    // The same generator state for both runs' dropout.
    tch::manual_seed(3);
    let logits = model.forward_batch(&inputs, &mask, &instructions, &decoder_inputs, true);
    let loss = cross_entropy(&logits, &targets, &weights, &LossConfig::default()).total;
    loss.backward();
    let mut grads: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(name, v)| (name, v.grad().to_device(Device::Cpu)))
        .collect();
    grads.sort_by(|a, b| a.0.cmp(&b.0));
    (f64::try_from(&loss.to_device(Device::Cpu)).unwrap(), grads)
}

/// libtorch's generator is one per process: the tests take turns.
static GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn assert_equal_steps(hyper: &HyperConfig) {
    for policy in [RematPolicy::Full, RematPolicy::Minimal] {
        assert_equal_step(hyper, policy);
    }
}

fn assert_equal_step(hyper: &HyperConfig, policy: RematPolicy) {
    let _turn = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    let (plain_loss, plain) = step(hyper, RematPolicy::None);
    let (remat_loss, remat) = step(hyper, policy);
    assert!(
        (plain_loss - remat_loss).abs() <= 1e-6 * plain_loss.abs(),
        "{policy:?}: loss {plain_loss} vs {remat_loss}"
    );
    assert_eq!(plain.len(), remat.len());
    let mut reached = 0;
    for ((name, a), (_, b)) in plain.iter().zip(&remat) {
        assert_eq!(
            a.defined(),
            b.defined(),
            "{policy:?} `{name}`: a gradient in one run only"
        );
        if !a.defined() {
            continue;
        }
        let scale = f64::try_from(a.abs().max()).unwrap().max(1e-12);
        let diff = f64::try_from((a - b).abs().max()).unwrap();
        assert!(
            diff <= 1e-6 * scale,
            "{policy:?} `{name}`: differs by {diff} (scale {scale})"
        );
        reached += usize::from(scale > 1e-12);
    }
    assert!(
        reached > plain.len() / 2,
        "few gradients reached: {reached}"
    );
}

#[test]
fn rematerialised_t5_gradients_equal_the_plain_ones_with_dropout() {
    assert_equal_steps(&HyperConfig::plain_t5());
}

#[test]
fn rematerialised_hint_gradients_equal_the_plain_ones_with_dropout() {
    assert_equal_steps(&HyperConfig {
        use_lora: true,
        lora_ranks: [Some(2), None, Some(2), Some(1)],
        generator_dropout: 0.1,
        ..HyperConfig::default()
    });
}

#[test]
fn a_separate_instruction_encoder_is_rematerialised_too() {
    assert_equal_steps(&HyperConfig {
        share_hnet_encoder: false,
        use_prefix: false,
        ..HyperConfig::default()
    });
}
