//! hint-model's T5 against Hugging Face transformers on three tiny random models whose
//! weights and outputs `scripts/t5_golden.py` wrote (see its docstring to regenerate).

use std::path::{Path, PathBuf};

use hint_model::generation::{generate, DecodeStrategy, EarlyStopping, GenerationConfig};
use hint_model::t5::loss::hf_mean_cross_entropy;
use hint_model::{load_weights, save_pretrained, DecoderCache, T5Config, T5};
use serde_json::Value;
use tch::{nn::VarStore, Device, Kind, Tensor};

const MODELS: [&str; 3] = ["v1_0_tied_relu", "v1_1_gated_gelu", "odd_buckets_depths"];

fn data_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/t5")
        .join(name)
}

struct Case {
    model: T5,
    vs: VarStore,
    golden: Value,
}

fn load(name: &str) -> Case {
    let dir = data_dir(name);
    let config = T5Config::from_json_file(dir.join("config.json")).unwrap();
    let vs = VarStore::new(Device::Cpu);
    let model = T5::new(vs.root(), &config);
    let report = load_weights(&vs, &dir, false).unwrap();
    assert!(
        report.missing.is_empty() && report.unexpected.is_empty(),
        "{report:?}"
    );
    let golden =
        serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap();
    Case { model, vs, golden }
}

fn int_tensor(value: &Value) -> Tensor {
    let rows: Vec<Vec<i64>> = serde_json::from_value(value.clone()).unwrap();
    let width = rows[0].len() as i64;
    let flat: Vec<i64> = rows.concat();
    Tensor::from_slice(&flat).view([-1, width])
}

fn float_tensor(value: &Value) -> Tensor {
    fn flatten(value: &Value, out: &mut Vec<f32>, shape: &mut Vec<i64>, depth: usize) {
        match value {
            Value::Array(items) => {
                if shape.len() == depth {
                    shape.push(items.len() as i64);
                }
                for item in items {
                    flatten(item, out, shape, depth + 1);
                }
            }
            number => out.push(number.as_f64().unwrap() as f32),
        }
    }
    let (mut out, mut shape) = (Vec::new(), Vec::new());
    flatten(value, &mut out, &mut shape, 0);
    Tensor::from_slice(&out).view(shape.as_slice())
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    f64::try_from((a - b).abs().max()).unwrap()
}

fn logits_of(case: &Case) -> Tensor {
    let g = &case.golden;
    tch::no_grad(|| {
        case.model.forward(
            &int_tensor(&g["input_ids"]),
            Some(&int_tensor(&g["attention_mask"])),
            &int_tensor(&g["decoder_input_ids"]),
            None,
            false,
        )
    })
}

#[test]
fn logits_encoder_states_and_loss_match_transformers() {
    for name in MODELS {
        let case = load(name);
        let g = &case.golden;
        let logits = logits_of(&case);
        let diff = max_abs_diff(&logits, &float_tensor(&g["logits"]));
        assert!(diff <= 1e-4, "{name}: logits differ by {diff}");
        let encoded = tch::no_grad(|| {
            case.model.encode(
                &int_tensor(&g["input_ids"]),
                Some(&int_tensor(&g["attention_mask"])),
                false,
            )
        });
        let diff = max_abs_diff(&encoded, &float_tensor(&g["encoder_last_hidden_state"]));
        assert!(diff <= 1e-4, "{name}: encoder states differ by {diff}");
        let loss =
            f64::try_from(hf_mean_cross_entropy(&logits, &int_tensor(&g["labels"]))).unwrap();
        let expected = g["loss"].as_f64().unwrap();
        assert!(
            (loss - expected).abs() <= 1e-4,
            "{name}: loss {loss} vs {expected}"
        );
        // shift_right reproduces the decoder inputs HF derived from the labels.
        let shifted = case.model.shift_right(&int_tensor(&g["labels"]));
        assert!(
            shifted.equal(&int_tensor(&g["decoder_input_ids"])),
            "{name}"
        );
    }
}

#[test]
fn greedy_tokens_and_scores_match_transformers() {
    for name in MODELS {
        let case = load(name);
        let g = &case.golden;
        let config = GenerationConfig {
            max_new_tokens: g["max_new_tokens"].as_i64().unwrap(),
            min_new_tokens: 0,
            strategy: DecodeStrategy::Greedy,
        };
        let out = generate(
            &case.model,
            &int_tensor(&g["input_ids"]),
            &int_tensor(&g["attention_mask"]),
            &config,
        )
        .unwrap();
        let expected: Vec<Vec<i64>> =
            serde_json::from_value(g["greedy"]["tokens"].clone()).unwrap();
        assert_eq!(out.tokens, expected, "{name}");
        let scores: Vec<f64> = serde_json::from_value(g["greedy"]["scores"].clone()).unwrap();
        for (got, want) in out.scores.iter().zip(&scores) {
            assert!(
                (got - want).abs() <= 1e-4,
                "{name}: greedy score {got} vs {want}"
            );
        }
    }
}

#[test]
fn beam_search_tokens_and_scores_match_transformers() {
    for name in MODELS {
        let case = load(name);
        let g = &case.golden;
        for beam in g["beams"].as_array().unwrap() {
            let early_stopping = if beam["early_stopping"].as_bool().unwrap() {
                EarlyStopping::WhenFull
            } else {
                EarlyStopping::Heuristic
            };
            let config = GenerationConfig {
                max_new_tokens: g["max_new_tokens"].as_i64().unwrap(),
                min_new_tokens: 0,
                strategy: DecodeStrategy::Beam {
                    num_beams: beam["num_beams"].as_i64().unwrap(),
                    length_penalty: beam["length_penalty"].as_f64().unwrap(),
                    early_stopping,
                },
            };
            let out = generate(
                &case.model,
                &int_tensor(&g["input_ids"]),
                &int_tensor(&g["attention_mask"]),
                &config,
            )
            .unwrap();
            let expected: Vec<Vec<i64>> = serde_json::from_value(beam["tokens"].clone()).unwrap();
            assert_eq!(out.tokens, expected, "{name}: {beam}");
            let scores: Vec<f64> = serde_json::from_value(beam["scores"].clone()).unwrap();
            for (got, want) in out.scores.iter().zip(&scores) {
                assert!(
                    (got - want).abs() <= 1e-4,
                    "{name}: beam score {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn target_scores_match_transformers() {
    for name in MODELS {
        let case = load(name);
        let g = &case.golden;
        let candidates: Vec<Vec<Vec<i64>>> =
            serde_json::from_value(g["candidates"].clone()).unwrap();
        let expected: Vec<Vec<f64>> =
            serde_json::from_value(g["candidate_scores"].clone()).unwrap();
        let inputs = int_tensor(&g["input_ids"]);
        let mask = int_tensor(&g["attention_mask"]);
        for choice in 0..candidates[0].len() {
            let rows: Vec<i64> = candidates.iter().flat_map(|c| c[choice].clone()).collect();
            let targets = Tensor::from_slice(&rows).view([candidates.len() as i64, -1]);
            let (total, per_token) =
                case.model
                    .score(&inputs, &mask, &targets, &targets.ones_like());
            let total: Vec<f64> = total.to_kind(Kind::Double).try_into().unwrap();
            for (row, got) in total.iter().enumerate() {
                let want = expected[row][choice];
                assert!((got - want).abs() <= 1e-4, "{name}: score {got} vs {want}");
            }
            assert_eq!(per_token.size(), targets.size());
        }
    }
}

#[test]
fn cached_decoding_equals_the_full_forward() {
    for name in MODELS {
        let case = load(name);
        let g = &case.golden;
        let inputs = int_tensor(&g["input_ids"]);
        let mask = int_tensor(&g["attention_mask"]);
        let decoder_inputs = int_tensor(&g["decoder_input_ids"]);
        let full = logits_of(&case);
        let stepped = tch::no_grad(|| {
            let encoded = case.model.encode(&inputs, Some(&mask), false);
            let mut cache = DecoderCache::default();
            let steps: Vec<Tensor> = (0..decoder_inputs.size()[1])
                .map(|t| {
                    let hidden = case.model.decode(
                        &decoder_inputs.narrow(1, t, 1),
                        &encoded,
                        &mask,
                        None,
                        Some(&mut cache),
                        false,
                    );
                    case.model.logits(&hidden)
                })
                .collect();
            Tensor::cat(&steps, 1)
        });
        let diff = max_abs_diff(&full, &stepped);
        assert!(diff <= 1e-4, "{name}: cached decoding differs by {diff}");
    }
}

#[test]
fn a_padded_batch_equals_each_row_alone() {
    let case = load("v1_1_gated_gelu");
    let g = &case.golden;
    let inputs = int_tensor(&g["input_ids"]);
    let mask = int_tensor(&g["attention_mask"]);
    let decoder_inputs = int_tensor(&g["decoder_input_ids"]);
    let batched = logits_of(&case);
    for row in 0..inputs.size()[0] {
        let len = i64::try_from(mask.get(row).sum(Kind::Int64)).unwrap();
        let alone = tch::no_grad(|| {
            case.model.forward(
                &inputs.get(row).narrow(0, 0, len).unsqueeze(0),
                None,
                &decoder_inputs.get(row).unsqueeze(0),
                None,
                false,
            )
        });
        let diff = max_abs_diff(&batched.get(row).unsqueeze(0), &alone);
        assert!(diff <= 1e-5, "row {row} differs by {diff}");
    }
}

/// Weights saved by Rust reload bit-identically; with `HINT_T5_EXPORT_DIR` set they are
/// also written there for `t5_golden.py --check-roundtrip` (transformers loading them).
#[test]
fn saved_checkpoints_reload_identically() {
    let export = std::env::var_os("HINT_T5_EXPORT_DIR").map(PathBuf::from);
    let tmp = tempfile::tempdir().unwrap();
    for name in MODELS {
        let case = load(name);
        let dir = export.as_deref().unwrap_or(tmp.path()).join(name);
        save_pretrained(&case.vs, &case.model.config.to_hf_json(), &dir).unwrap();
        let config = T5Config::from_json_file(dir.join("config.json")).unwrap();
        let vs = VarStore::new(Device::Cpu);
        let reloaded = T5::new(vs.root(), &config);
        load_weights(&vs, &dir, false).unwrap();
        let again = Case {
            model: reloaded,
            vs,
            golden: case.golden.clone(),
        };
        assert!(logits_of(&case).equal(&logits_of(&again)), "{name}");
        let names: Vec<String> = Tensor::read_safetensors(dir.join("model.safetensors"))
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert!(names.contains(&"shared.weight".to_string()));
        assert!(
            !names.iter().any(|n| n.contains("embed_tokens")),
            "aliases are not written"
        );
    }
}

#[test]
fn bf16_compute_stays_close_to_f32() {
    let mut case = load("v1_1_gated_gelu");
    let reference = logits_of(&case);
    case.model.set_compute_kind(Kind::BFloat16);
    let mixed = logits_of(&case);
    assert_eq!(mixed.kind(), Kind::Float, "logits are computed in f32");
    let scale = f64::try_from(reference.abs().max()).unwrap();
    let diff = max_abs_diff(&reference, &mixed);
    assert!(
        diff <= 0.05 * scale,
        "bf16 logits differ by {diff} (scale {scale})"
    );
    assert!(
        diff > 0.0,
        "bf16 compute must actually change the arithmetic"
    );
}

#[test]
fn missing_and_misshapen_weights_are_named() {
    let dir = data_dir("v1_1_gated_gelu");
    let mut config = T5Config::from_json_file(dir.join("config.json")).unwrap();
    config.num_layers = 3;
    let vs = VarStore::new(Device::Cpu);
    let _model = T5::new(vs.root(), &config);
    let err = load_weights(&vs, &dir, false).unwrap_err().to_string();
    assert!(
        err.contains("encoder.block.2.layer.0.SelfAttention.q.weight"),
        "{err}"
    );
    config.num_layers = 2;
    config.d_ff += 1;
    let vs = VarStore::new(Device::Cpu);
    let _model = T5::new(vs.root(), &config);
    let err = load_weights(&vs, &dir, false).unwrap_err().to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("DenseReluDense"),
        "{err}"
    );
}

#[test]
fn sharded_checkpoints_load_like_single_files() {
    let source = data_dir("odd_buckets_depths");
    let tensors = Tensor::read_safetensors(source.join("model.safetensors")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (first, second) = tensors.split_at(tensors.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (i, part) in [first, second].iter().enumerate() {
        let file = format!("model-{:05}-of-00002.safetensors", i + 1);
        Tensor::write_safetensors(part, tmp.path().join(&file)).unwrap();
        for (name, _) in part.iter() {
            weight_map.insert(name.clone(), file.clone().into());
        }
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    std::fs::write(
        tmp.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    std::fs::copy(source.join("config.json"), tmp.path().join("config.json")).unwrap();
    let case = load("odd_buckets_depths");
    let config = T5Config::from_json_file(tmp.path().join("config.json")).unwrap();
    let vs = VarStore::new(Device::Cpu);
    let sharded = Case {
        model: T5::new(vs.root(), &config),
        golden: case.golden.clone(),
        vs,
    };
    load_weights(&sharded.vs, tmp.path(), false).unwrap();
    assert!(logits_of(&case).equal(&logits_of(&sharded)));
}

#[test]
fn sampling_is_seeded_and_top_k_one_is_greedy() {
    let case = load("v1_1_gated_gelu");
    let g = &case.golden;
    let (inputs, mask) = (
        int_tensor(&g["input_ids"]),
        int_tensor(&g["attention_mask"]),
    );
    let sample = |top_k, seed| {
        let config = GenerationConfig {
            max_new_tokens: 8,
            min_new_tokens: 0,
            strategy: DecodeStrategy::Sample {
                temperature: 1.5,
                top_k,
                top_p: 0.9,
                seed,
            },
        };
        generate(&case.model, &inputs, &mask, &config).unwrap()
    };
    assert_eq!(sample(0, 7), sample(0, 7), "same seed, same samples");
    let seeds_differ = (0..5).any(|seed| sample(0, seed).tokens != sample(0, 100 + seed).tokens);
    assert!(seeds_differ, "different seeds never changed a sample");
    let greedy: Vec<Vec<i64>> = serde_json::from_value(g["greedy"]["tokens"].clone()).unwrap();
    assert_eq!(sample(1, 3).tokens, greedy);
    let bad = GenerationConfig {
        max_new_tokens: 8,
        min_new_tokens: 0,
        strategy: DecodeStrategy::Sample {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        },
    };
    assert!(generate(&case.model, &inputs, &mask, &bad).is_err());
}
