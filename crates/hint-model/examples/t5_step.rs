//! Times training steps of a T5 (forward, loss, backward; no optimizer, as transformers'
//! side of the comparison) and reports the step's peak memory: the process's resident
//! set and the bytes CPU tensors held. `scripts/t5_step.py` does the same with
//! transformers; `benches/t5_memory.sh` runs both, alternating.
//!
//!     cargo run --release -p hint-model --example t5_step -- SHAPE DTYPE REMAT [STEPS]
//!
//! SHAPE `small` (T5-v1.1-small) or `base` (T5-v1.1-base: d_model 768, 12+12 layers),
//! batch 8 × (512 inputs + 128 targets); DTYPE `f32` or `bf16`; REMAT `none`, `minimal` or `full`.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use hint_model::{
    count_cpu_tensors, cross_entropy, memory_usage, rematerialised_cross_entropy,
    reset_peak_memory, retain_freed_memory, LossConfig, RematPolicy, T5Config, T5,
};
use tch::{nn::VarStore, Device, Kind, Tensor};

fn main() {
    retain_freed_memory();
    count_cpu_tensors();
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let (shape, dtype, remat) = (arg(1, "small"), arg(2, "f32"), arg(3, "none"));
    let steps: usize = arg(4, "3").parse().expect("a number of steps");
    let config = match shape.as_str() {
        "small" => T5Config {
            vocab_size: 32128,
            dropout_rate: 0.0,
            ..T5Config::preset("small").expect("preset")
        },
        "base" => T5Config {
            vocab_size: 32128,
            d_model: 768,
            d_kv: 64,
            num_heads: 12,
            d_ff: 2048,
            num_layers: 12,
            num_decoder_layers: Some(12),
            dropout_rate: 0.0,
            ..T5Config::preset("small").expect("preset")
        },
        other => panic!("unknown shape {other}: small or base"),
    };
    let (batch, input_len, target_len) = (8, 512, 128);
    tch::manual_seed(0);
    let vs = VarStore::new(Device::Cpu);
    let mut model = T5::new(vs.root(), &config);
    model.set_compute_kind(if dtype == "bf16" {
        Kind::BFloat16
    } else {
        Kind::Float
    });
    model.set_remat_policy(remat.parse::<RematPolicy>().expect("none, minimal or full"));
    let vocab = config.vocab_size;
    let inputs = Tensor::randint(vocab, [batch, input_len], (Kind::Int64, Device::Cpu));
    let targets = Tensor::randint(vocab, [batch, target_len], (Kind::Int64, Device::Cpu));
    let mask = inputs.ones_like();
    let decoder_inputs = model.shift_right(&targets);
    let weights = targets.ones_like().to_kind(Kind::Float);
    let mut times = Vec::new();
    for step in 0..steps {
        reset_peak_memory(Device::Cpu);
        let started = Instant::now();
        let encoded = model.encode(&inputs, Some(&mask), true);
        let states = model.decode(&decoder_inputs, &encoded, &mask, None, None, true);
        // As `hint train` does: with rematerialised blocks, the logits are rematerialised
        // too, a chunk of positions at a time.
        let loss = if remat == "full" {
            rematerialised_cross_entropy(
                &model.head(),
                &states,
                &targets,
                &weights,
                &LossConfig::default(),
            )
        } else {
            cross_entropy(
                &model.logits(&states),
                &targets,
                &weights,
                &LossConfig::default(),
            )
        };
        loss.total.backward();
        let seconds = started.elapsed().as_secs_f64();
        for variable in vs.trainable_variables() {
            let mut grad = variable.grad();
            if grad.defined() {
                let _ = grad.zero_();
            }
        }
        let usage = memory_usage(Device::Cpu);
        println!(
            "hint {shape} {dtype} remat={remat} step {step}: {seconds:.2} s, peak resident {:.2} GB, peak tensors {:.2} GB",
            usage.peak_resident.unwrap_or(0) as f64 / 1e9,
            usage.peak_tensors.unwrap_or(0) as f64 / 1e9
        );
        times.push(seconds);
    }
    let timed = &times[1.min(times.len() - 1)..];
    println!(
        "hint {shape} {dtype} remat={remat}: {:.2} s per step (mean of steps after the first)",
        timed.iter().sum::<f64>() / timed.len() as f64
    );
}
