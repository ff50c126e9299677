#![allow(missing_docs)] // criterion_group! generates undocumented items
//! Parsing a generated 10,000-line t5x-style config (goal: under 50 ms).

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use hint_config::{parse_str, ConfigBuilder};

/// A mix of the statement kinds real configs use, repeated to 10,000 lines.
fn generated_config() -> String {
    let mut text =
        String::from("from __gin__ import dynamic_registration\nfrom t5x import adafactor\n");
    let mut i = 0;
    while text.lines().count() < 10_000 {
        let _ = write!(
            text,
            "# section {i}\n\
             MACRO_{i} = {{'inputs': {i}, 'targets': 256}}\n\
             adafactor.Adafactor.decay_rate_{i} = 0.8\n\
             hyper/adafactor.Adafactor.step_offset_{i} = 1_100_000\n\
             adafactor.Adafactor.groups_{i} = ((r\"^.*hyper.*$\", @hyper/adafactor.Adafactor()), (\"x\", None),)\n\
             adafactor.Adafactor.lengths_{i} = %MACRO_{i}\n\
             train/adafactor.Adafactor:\n  \
               name_{i} = 'train' \"_split\"\n  \
               rates_{i} = [1e-3, .5, -2,\n      3]\n"
        );
        i += 1;
    }
    text
}

fn bench(c: &mut Criterion) {
    let text = generated_config();
    c.bench_function("parse 10k lines", |b| {
        b.iter(|| parse_str(black_box(&text), "bench.gin").map(|s| s.len()))
    });
    c.bench_function("parse and bind 10k lines", |b| {
        b.iter(|| {
            ConfigBuilder::new()
                .source("bench.gin", black_box(text.as_str()))
                .build()
                .map(|c| c.bindings().len())
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
