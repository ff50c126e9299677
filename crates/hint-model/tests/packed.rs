//! Inference through packed weights (oneDNN, each weight reordered once) gives what the
//! plain products give: T5 with an untied and a tied head, and HINT with adapters,
//! prefixes, LoRA and fusion, generating and scoring. One test in a binary of its own,
//! because it flips the process-wide switch.

use hint_model::generation::{generate, GenerationConfig};
use hint_model::{
    packed_weight_bytes, set_weight_packing, HyperConfig, HyperT5, T5Config, TaskAdaptation, T5,
};
use tch::{nn::VarStore, Device, Kind, Tensor};

/// Wide enough that every product of an 8-row batch is above the packing cut-off.
fn t5_config(tied: bool) -> T5Config {
    T5Config {
        vocab_size: 1000,
        d_model: 256,
        d_kv: 32,
        num_heads: 8,
        d_ff: 512,
        num_layers: 2,
        num_decoder_layers: Some(2),
        dropout_rate: 0.0,
        tie_word_embeddings: tied,
        // No EOS: every row generates all its tokens.
        eos_token_id: -1,
        ..T5Config::preset("tiny").unwrap()
    }
}

fn max_difference(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// Runs `f` with packing off, then on: (plain, packed).
fn both<T>(f: impl Fn() -> T) -> (T, T) {
    set_weight_packing(false);
    let plain = f();
    set_weight_packing(true);
    (plain, f())
}

#[test]
fn packed_inference_equals_the_plain_products() {
    let inputs = Tensor::randint(1000, [8, 40], (Kind::Int64, Device::Cpu)).clamp_min(2);
    let mask = inputs.ones_like();
    let targets = Tensor::randint(1000, [8, 12], (Kind::Int64, Device::Cpu)).clamp_min(2);
    let config = GenerationConfig {
        max_new_tokens: 8,
        ..GenerationConfig::default()
    };
    assert_eq!(packed_weight_bytes(), 0);

    for tied in [false, true] {
        tch::manual_seed(3);
        let mut vs = VarStore::new(Device::Cpu);
        let model = T5::new(vs.root(), &t5_config(tied));
        vs.freeze();
        let decoder_inputs = model.shift_right(&targets);
        let (plain, packed) = both(|| {
            let logits =
                tch::no_grad(|| model.forward(&inputs, Some(&mask), &decoder_inputs, None, false));
            (logits, generate(&model, &inputs, &mask, &config).unwrap())
        });
        assert!(packed_weight_bytes() > 0, "tied {tied}: nothing was packed");
        let difference = max_difference(&plain.0, &packed.0);
        assert!(
            difference < 1e-4,
            "tied {tied}: logits differ by {difference}"
        );
        assert_eq!(plain.1.tokens, packed.1.tokens, "tied {tied}");
        for (a, b) in plain.1.scores.iter().zip(&packed.1.scores) {
            assert!((a - b).abs() < 1e-3, "tied {tied}: scores {a} and {b}");
        }
    }

    // HINT: the hypernetwork's products, the generated modules and the fused instruction
    // projected once per task, as `hint serve` uses them.
    tch::manual_seed(4);
    let mut vs = VarStore::new(Device::Cpu);
    let hyper = HyperConfig {
        use_lora: true,
        lora_ranks: [Some(4), None, Some(4), None],
        ..HyperConfig::preset("small").unwrap()
    };
    assert!(hyper.use_fusion_in_decoder && hyper.use_adapter && hyper.use_prefix);
    let model = HyperT5::new(vs.root(), &t5_config(false), &hyper);
    vs.freeze();
    let instruction = Tensor::randint(1000, [1, 64], (Kind::Int64, Device::Cpu)).clamp_min(2);
    let adapted = || -> TaskAdaptation {
        tch::no_grad(|| {
            let mut adaptation = model.adapt(&instruction, false);
            model.project_instruction(&mut adaptation);
            adaptation
        })
    };
    let (plain, packed) = both(|| {
        let adaptation = adapted();
        let generated = model
            .generate(&inputs, &mask, &adaptation, &config)
            .unwrap();
        let (sums, _) = model.score(&inputs, &mask, &targets, &targets.ne(0), &adaptation);
        (generated, sums)
    });
    assert_eq!(plain.0.tokens, packed.0.tokens);
    let difference = max_difference(&plain.1, &packed.1);
    assert!(difference < 1e-3, "HINT scores differ by {difference}");
}
