#![allow(missing_docs)] // criterion_group! generates undocumented items
//! One Adafactor step over the parameter set of T5-v1.1-small (d_model 512, 8+8 layers,
//! 6 heads × d_kv 64, gated-GELU d_ff 1024, vocabulary 32128, untied `lm_head`).
//! `scripts/bench_torch_adafactor.py` times `torch.optim.Adafactor` on the same shapes;
//! run both with the same `OMP_NUM_THREADS`.

use std::collections::HashMap;

use criterion::{criterion_group, criterion_main, Criterion};
use hint_optim::{Adafactor, AdafactorConfig};
use tch::{Device, Kind, Tensor};

fn t5_small_shapes() -> Vec<(String, Vec<i64>)> {
    let (d_model, inner, d_ff, vocab, heads) = (512, 6 * 64, 1024, 32128, 6);
    let mut shapes = vec![
        ("shared.weight".to_string(), vec![vocab, d_model]),
        ("lm_head.weight".to_string(), vec![vocab, d_model]),
    ];
    for stack in ["encoder", "decoder"] {
        for block in 0..8 {
            let prefix = format!("{stack}.block.{block}.layer");
            let mut attention = |layer: usize, name: &str| {
                for proj in ["q", "k", "v"] {
                    shapes.push((
                        format!("{prefix}.{layer}.{name}.{proj}.weight"),
                        vec![inner, d_model],
                    ));
                }
                shapes.push((
                    format!("{prefix}.{layer}.{name}.o.weight"),
                    vec![d_model, inner],
                ));
                shapes.push((format!("{prefix}.{layer}.layer_norm.weight"), vec![d_model]));
            };
            attention(0, "SelfAttention");
            let ff = if stack == "decoder" {
                attention(1, "EncDecAttention");
                2
            } else {
                1
            };
            if block == 0 {
                shapes.push((
                    format!("{prefix}.0.SelfAttention.relative_attention_bias.weight"),
                    vec![32, heads],
                ));
            }
            for wi in ["wi_0", "wi_1"] {
                shapes.push((
                    format!("{prefix}.{ff}.DenseReluDense.{wi}.weight"),
                    vec![d_ff, d_model],
                ));
            }
            shapes.push((
                format!("{prefix}.{ff}.DenseReluDense.wo.weight"),
                vec![d_model, d_ff],
            ));
            shapes.push((format!("{prefix}.{ff}.layer_norm.weight"), vec![d_model]));
        }
        shapes.push((format!("{stack}.final_layer_norm.weight"), vec![d_model]));
    }
    shapes
}

fn bench(c: &mut Criterion) {
    tch::manual_seed(0);
    let shapes = t5_small_shapes();
    let options = (Kind::Float, Device::Cpu);
    let params: Vec<(String, Tensor)> = shapes
        .iter()
        .map(|(name, shape)| {
            (
                name.clone(),
                Tensor::randn(shape.as_slice(), options) * 0.05,
            )
        })
        .collect();
    let grads: HashMap<String, Tensor> = shapes
        .iter()
        .map(|(name, shape)| {
            (
                name.clone(),
                Tensor::randn(shape.as_slice(), options) * 1e-3,
            )
        })
        .collect();
    let mut optimizer =
        Adafactor::single(params, AdafactorConfig::with_learning_rate(1e-3)).expect("optimizer");
    let mut group = c.benchmark_group("adafactor");
    group.sample_size(10);
    group.measurement_time(std::time::Duration::from_secs(15));
    group.bench_function("t5_v1_1_small_step", |b| {
        b.iter(|| optimizer.apply_gradients(&grads).expect("step"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
