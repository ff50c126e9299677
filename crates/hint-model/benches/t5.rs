#![allow(missing_docs)] // criterion_group! generates undocumented items
//! T5 training steps (forward + backward) at the tiny and T5-v1.1-small shapes, f32 and
//! bf16 compute, and greedy generation throughput (encoding included).
//! `scripts/t5_bench.py` times transformers' eager PyTorch on the same shapes for the
//! side-by-side comparison.

use criterion::{criterion_group, Criterion, Throughput};
use hint_model::generation::{generate, GenerationConfig};
use hint_model::{cross_entropy, LossConfig, T5Config, T5};
use tch::{nn::VarStore, Device, Kind, Tensor};

struct Shape {
    name: &'static str,
    config: T5Config,
    batch: i64,
    input_len: i64,
    target_len: i64,
}

fn shapes() -> Vec<Shape> {
    let small = T5Config {
        vocab_size: 32128,
        ..T5Config::preset("small").expect("preset")
    };
    vec![
        Shape {
            name: "tiny",
            config: T5Config {
                vocab_size: 512,
                ..T5Config::preset("tiny").expect("preset")
            },
            batch: 8,
            input_len: 64,
            target_len: 16,
        },
        Shape {
            name: "small",
            config: small,
            batch: 8,
            input_len: 256,
            target_len: 64,
        },
    ]
}

fn training_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("t5_train_step");
    group.sample_size(10);
    for shape in shapes() {
        tch::manual_seed(0);
        let mut vs = VarStore::new(Device::Cpu);
        let mut model = T5::new(vs.root(), &shape.config);
        let vocab = shape.config.vocab_size;
        let inputs = Tensor::randint(
            vocab,
            [shape.batch, shape.input_len],
            (Kind::Int64, Device::Cpu),
        );
        let targets = Tensor::randint(
            vocab,
            [shape.batch, shape.target_len],
            (Kind::Int64, Device::Cpu),
        );
        let decoder_inputs = model.shift_right(&targets);
        let weights = targets.ones_like().to_kind(Kind::Float);
        let tokens = shape.batch * (shape.input_len + shape.target_len);
        group.throughput(Throughput::Elements(tokens as u64));
        // f32; bf16 compute on f32 master weights (`compute_dtype`); and bf16 weights too
        // (`param_dtype`, which the step casts nothing for).
        for (name, kind, bf16_weights) in [
            ("Float", Kind::Float, false),
            ("BFloat16", Kind::BFloat16, false),
            ("BFloat16_params", Kind::BFloat16, true),
        ] {
            if bf16_weights {
                vs.bfloat16();
            }
            model.set_compute_kind(kind);
            group.bench_function(format!("{}_{name}", shape.name), |b| {
                b.iter(|| {
                    let logits = model.forward(&inputs, None, &decoder_inputs, None, true);
                    let loss = cross_entropy(&logits, &targets, &weights, &LossConfig::default());
                    loss.total.backward();
                    // Dropped, as `hint train` does alone (and transformers' `zero_grad`).
                    hint_model::release_gradients(&vs.trainable_variables())
                        .expect("gradients dropped");
                })
            });
        }
    }
    group.finish();
}

fn greedy_generation(c: &mut Criterion) {
    let mut group = c.benchmark_group("t5_greedy");
    group.sample_size(10);
    let shape = &shapes()[1];
    let inputs = Tensor::randint(
        shape.config.vocab_size,
        [shape.batch, shape.input_len],
        (Kind::Int64, Device::Cpu),
    );
    let mask = inputs.ones_like();
    let new_tokens = 32;
    group.throughput(Throughput::Elements((shape.batch * new_tokens) as u64));
    let config = GenerationConfig {
        max_new_tokens: new_tokens,
        ..GenerationConfig::default()
    };
    // f32, and bf16 weights with bf16 activations (`param_dtype` and `compute_dtype`
    // bfloat16; transformers' peer is `model.to(torch.bfloat16)`); each with the weights
    // frozen as `hint infer` / `hint serve` load them (products through oneDNN with
    // reordered weights) and `_unpacked` without (libtorch's plain `linear`).
    for (name, kind, packing) in [
        ("f32", Kind::Float, true),
        ("f32_unpacked", Kind::Float, false),
        ("bf16", Kind::BFloat16, true),
        ("bf16_unpacked", Kind::BFloat16, false),
    ] {
        tch::manual_seed(0);
        let mut vs = VarStore::new(Device::Cpu);
        // No EOS id, so every row generates exactly `new_tokens` (as min_new_tokens in the
        // Python comparison).
        let mut model = T5::new(
            vs.root(),
            &T5Config {
                eos_token_id: -1,
                ..shape.config.clone()
            },
        );
        if kind == Kind::BFloat16 {
            vs.bfloat16();
            model.set_compute_kind(kind);
        }
        vs.freeze();
        group.bench_function(format!("small_{name}_32_tokens"), |b| {
            b.iter(|| {
                hint_model::set_weight_packing(packing);
                // Encoder included, as in transformers' `generate`.
                let out = generate(&model, &inputs, &mask, &config).expect("generate");
                assert!(out.tokens.iter().all(|t| t.len() as i64 == new_tokens));
            })
        });
    }
    hint_model::set_weight_packing(true);
    group.finish();

    // A long output (f32, packed): at 256 new tokens the self-attention cache is what a
    // step would copy if it joined the cache and its own position anew.
    let long_tokens = 256;
    let mut group = c.benchmark_group("t5_greedy_long");
    group.sample_size(10);
    group.throughput(Throughput::Elements((shape.batch * long_tokens) as u64));
    tch::manual_seed(0);
    let mut vs = VarStore::new(Device::Cpu);
    let model = T5::new(
        vs.root(),
        &T5Config {
            eos_token_id: -1,
            ..shape.config.clone()
        },
    );
    vs.freeze();
    let config = GenerationConfig {
        max_new_tokens: long_tokens,
        ..GenerationConfig::default()
    };
    group.bench_function(format!("small_f32_{long_tokens}_tokens"), |b| {
        b.iter(|| {
            let out = generate(&model, &inputs, &mask, &config).expect("generate");
            assert!(out.tokens.iter().all(|t| t.len() as i64 == long_tokens));
        })
    });
    group.finish();
}

criterion_group!(benches, training_step, greedy_generation);

// criterion_main!, plus the allocator setting the `hint` binary applies before any tensor
// exists (see `hint_model::retain_freed_memory`).
fn main() {
    hint_model::retain_freed_memory();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
