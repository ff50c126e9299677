//! Inference on N = 1, 10, 100 instances of one task at the T5-v1.1-small shape: a
//! 256-token instruction, 64-token inputs, 16 greedy tokens. HINT encodes the instruction
//! once per task; the concatenation baseline prepends it to every input. The FLOPs
//! function's predicted ratio is printed next to the groups for comparison.
//!
//! Then one batch as `hint serve` makes it under many clients: one row of each of 20
//! tasks (256-token instructions whose cross-attention keys and values are projected
//! once per task, as the server caches them), the rows gathered from their tasks'
//! adaptations; against the concatenation baseline's batch of the same 20 rows. The
//! gathering alone is timed too (what a mixed batch adds to a request), and the first
//! token alone (encoding and one step: what the two models do differently).
#![allow(missing_docs)] // criterion_group! generates undocumented items
#![allow(clippy::print_stderr)] // the predicted ratios are part of the bench's report

use criterion::{criterion_group, Criterion};
use hint_model::flops::{inference_flops, Workload};
use hint_model::generation::{generate, GenerationConfig};
use hint_model::{HyperConfig, HyperT5, T5Config, TaskAdaptation, T5};
use tch::{nn::VarStore, Device, Kind, Tensor};

const INSTRUCTION: i64 = 256;
const INPUT: i64 = 64;
const OUTPUT: i64 = 16;

fn inference(c: &mut Criterion) {
    // No EOS, so every instance decodes exactly OUTPUT tokens on both sides.
    let t5 = T5Config {
        eos_token_id: -1,
        ..T5Config::preset("small").expect("preset")
    };
    let hyper = HyperConfig::preset("small").expect("preset");
    tch::manual_seed(0);
    let mut hint_vs = VarStore::new(Device::Cpu);
    let hint = HyperT5::new(hint_vs.root(), &t5, &hyper);
    let mut plain_vs = VarStore::new(Device::Cpu);
    let plain = T5::new(plain_vs.root(), &t5);
    // Frozen, as `hint infer` loads a model: products through packed weights.
    hint_vs.freeze();
    plain_vs.freeze();
    let generation = GenerationConfig {
        max_new_tokens: OUTPUT,
        ..GenerationConfig::default()
    };
    let mut group = c.benchmark_group("hint_vs_concat_small");
    group.sample_size(10);
    for n in [1i64, 10, 100] {
        let instruction = Tensor::randint_low(
            2,
            t5.vocab_size,
            [1, INSTRUCTION],
            (Kind::Int64, Device::Cpu),
        );
        let inputs = Tensor::randint_low(2, t5.vocab_size, [n, INPUT], (Kind::Int64, Device::Cpu));
        let mask = inputs.ones_like();
        let concatenated = Tensor::cat(
            &[
                instruction.expand([n, INSTRUCTION], false),
                inputs.shallow_clone(),
            ],
            1,
        );
        let concat_mask = concatenated.ones_like();
        let predicted = inference_flops(
            &t5,
            &hyper,
            &Workload {
                instruction_len: INSTRUCTION,
                input_len: INPUT,
                output_len: OUTPUT,
                instances_per_task: n,
            },
        );
        eprintln!(
            "N = {n}: predicted FLOPs per instance — HINT {:.3} GFLOP, concatenation {:.3} GFLOP, ratio {:.2}",
            predicted.hint_amortised / 1e9,
            predicted.concat_per_instance / 1e9,
            predicted.concat_per_instance / predicted.hint_amortised
        );
        group.bench_function(format!("hint_n{n}"), |b| {
            b.iter(|| {
                let adaptation = tch::no_grad(|| hint.adapt(&instruction, false));
                hint.generate(&inputs, &mask, &adaptation, &generation)
                    .expect("generate")
            })
        });
        group.bench_function(format!("concat_n{n}"), |b| {
            b.iter(|| generate(&plain, &concatenated, &concat_mask, &generation).expect("generate"))
        });
    }
    group.finish();

    // A served batch: one row of each of TASKS tasks.
    const TASKS: i64 = 20;
    let instructions = Tensor::randint_low(
        2,
        t5.vocab_size,
        [TASKS, INSTRUCTION],
        (Kind::Int64, Device::Cpu),
    );
    let adaptations: Vec<TaskAdaptation> = (0..TASKS)
        .map(|t| {
            tch::no_grad(|| {
                let mut adaptation = hint.adapt(&instructions.narrow(0, t, 1), false);
                hint.project_instruction(&mut adaptation);
                adaptation
            })
        })
        .collect();
    let parts: Vec<&TaskAdaptation> = adaptations.iter().collect();
    let picks: Vec<(usize, i64)> = (0..parts.len()).map(|t| (t, 0)).collect();
    let inputs = Tensor::randint_low(2, t5.vocab_size, [TASKS, INPUT], (Kind::Int64, Device::Cpu));
    let mask = inputs.ones_like();
    let concatenated = Tensor::cat(&[&instructions, &inputs], 1);
    let concat_mask = concatenated.ones_like();
    let mut group = c.benchmark_group("served_batch_of_20_tasks_small");
    group.sample_size(10);
    group.bench_function("hint_gather", |b| {
        b.iter(|| TaskAdaptation::gather(&parts, &picks))
    });
    // 16 tokens, and the first token alone: encoding and the first step, without the
    // later steps, which cost both models the same (each row's cross-attention reads
    // about 320 positions).
    let first_token = GenerationConfig {
        max_new_tokens: 1,
        ..generation
    };
    for (suffix, config) in [("", &generation), ("_first_token", &first_token)] {
        group.bench_function(format!("hint{suffix}"), |b| {
            b.iter(|| {
                let adaptation = TaskAdaptation::gather(&parts, &picks);
                hint.generate(&inputs, &mask, &adaptation, config)
                    .expect("generate")
            })
        });
        group.bench_function(format!("concat{suffix}"), |b| {
            b.iter(|| generate(&plain, &concatenated, &concat_mask, config).expect("generate"))
        });
    }
    group.finish();
}

criterion_group!(benches, inference);

// criterion_main!, plus the allocator setting the `hint` binary applies before any tensor
// exists (see `hint_model::retain_freed_memory`).
fn main() {
    hint_model::retain_freed_memory();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
