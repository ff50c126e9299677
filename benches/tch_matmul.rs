#![allow(missing_docs)] // criterion_group! generates undocumented items
//! libtorch matrix multiplication at T5-small's feed-forward shape, f32 and bf16: the
//! floor under every later model bench.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tch::{Kind, Tensor};

fn matmul(c: &mut Criterion) {
    let (m, k, n) = (2048i64, 512i64, 1024i64);
    let mut group = c.benchmark_group("matmul_2048x512x1024");
    group.throughput(Throughput::Elements((2 * m * k * n) as u64));
    for kind in [Kind::Float, Kind::BFloat16] {
        let a = Tensor::randn([m, k], (kind, tch::Device::Cpu));
        let b = Tensor::randn([k, n], (kind, tch::Device::Cpu));
        group.bench_function(format!("{kind:?}"), |bench| bench.iter(|| a.matmul(&b)));
    }
    group.finish();
}

criterion_group!(benches, matmul);
criterion_main!(benches);
