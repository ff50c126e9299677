#![allow(missing_docs)] // criterion_group! generates undocumented items
//! The RMS norm and the gated feed-forward, forward and backward at the T5-v1.1-small
//! encoder's shape (8 × 256 rows, d_model 512, d_ff 1024), and t5x's loss of the logits of
//! 8 × 64 target tokens over the 32,128-token vocabulary, f32 and bf16, with the fused CPU
//! kernels and with libtorch's operators (`set_fused_kernels(false)`). The feed-forward
//! includes its three products, the same both ways, so its difference is the activation's.

use criterion::{criterion_group, criterion_main, Criterion};
use hint_model::t5::feed_forward::FeedForward;
use hint_model::t5::layers::LayerNorm;
use hint_model::{cross_entropy, set_fused_kernels, LossConfig, T5Config};
use tch::{nn::VarStore, Device, Kind, Tensor};

fn step(vs: &VarStore, input: &Tensor, f: impl Fn(&Tensor) -> Tensor) {
    let x = input.detach().set_requires_grad(true);
    let y = f(&x);
    y.sum(Kind::Float).backward();
    for mut v in vs.trainable_variables() {
        v.zero_grad();
    }
}

fn fused_kernels(c: &mut Criterion) {
    let config = T5Config {
        dropout_rate: 0.0,
        ..T5Config::preset("small").expect("preset")
    };
    let mut group = c.benchmark_group("fused_kernels");
    group.sample_size(30);
    for kind in [Kind::Float, Kind::BFloat16] {
        tch::manual_seed(0);
        let vs = VarStore::new(Device::Cpu);
        let norm = LayerNorm::new(vs.root() / "norm", config.d_model, 1e-6, 1.0);
        let feed_forward = FeedForward::new(vs.root() / "ff", &config);
        let input = Tensor::randn([8, 256, config.d_model], (kind, Device::Cpu));
        for fused in [true, false] {
            set_fused_kernels(fused);
            let way = if fused { "fused" } else { "composed" };
            group.bench_function(format!("rms_norm_{kind:?}_{way}"), |b| {
                b.iter(|| step(&vs, &input, |x| norm.forward(x)))
            });
            group.bench_function(format!("gated_feed_forward_{kind:?}_{way}"), |b| {
                b.iter(|| step(&vs, &input, |x| feed_forward.forward(x, None, true)))
            });
        }
        let logits = Tensor::randn([8, 64, 32128], (kind, Device::Cpu)) * 4.0;
        let targets = Tensor::randint(32128, [8, 64], (Kind::Int64, Device::Cpu));
        let weights = Tensor::ones([8, 64], (Kind::Float, Device::Cpu));
        for fused in [true, false] {
            set_fused_kernels(fused);
            let way = if fused { "fused" } else { "composed" };
            group.bench_function(format!("loss_{kind:?}_{way}"), |b| {
                b.iter(|| {
                    step(&vs, &logits, |x| {
                        cross_entropy(x, &targets, &weights, &LossConfig::default()).total
                    })
                })
            });
        }
    }
    set_fused_kernels(true);
    group.finish();
}

criterion_group!(benches, fused_kernels);
criterion_main!(benches);
