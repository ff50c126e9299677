//! Span corruption against T5 itself: `scripts/span_corruption_golden.py` ran
//! `t5.data.preprocessors` (t5 0.9.4, seqio 0.0.20, TensorFlow 2.21) into
//! `tests/data/span_corruption_golden.json`. Given the same seed pairs, hint's random numbers,
//! masks, inputs and targets are T5's exactly; its segments are T5's concatenated and split
//! documents.
#![cfg(feature = "tasks")]

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use hint_data::preprocessors::{Context, Preprocessor};
use hint_data::span_corruption::{
    corrupt_segment, random_spans_helper, random_spans_noise_mask, sentinel_id, SpanCorruption,
};
use hint_data::tf_random::{stateless_uniform, stateless_uniform_int};
use hint_data::{Example, Feature, FeatureValue, OutputFeatures, Vocabulary};
use serde_json::Value;

fn golden() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/span_corruption_golden.json"
    );
    let text = std::fs::read_to_string(path).expect("golden file is checked in");
    serde_json::from_str(&text).expect("golden file is JSON")
}

fn cases<'a>(golden: &'a Value, name: &str) -> &'a [Value] {
    let cases = golden[name].as_array().expect("a list of cases");
    assert!(!cases.is_empty(), "{name}: no cases");
    cases
}

fn seed(value: &Value) -> [i64; 2] {
    [value[0].as_i64().unwrap(), value[1].as_i64().unwrap()]
}

fn seed_pairs(value: &Value) -> [[i64; 2]; 2] {
    [seed(&value[0]), seed(&value[1])]
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn stateless_uniform_is_tensorflows() {
    for case in cases(&golden(), "uniform") {
        let expected: Vec<f32> = case["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(
            stateless_uniform(expected.len(), seed(&case["seed"])),
            expected,
            "seed {}",
            case["seed"]
        );
    }
}

#[test]
fn stateless_uniform_int_is_tensorflows() {
    for case in cases(&golden(), "uniform_int") {
        let maxval = case["maxval"].as_i64().unwrap() as i32;
        let value = stateless_uniform_int(seed(&case["seed"]), 0, maxval);
        assert_eq!(i64::from(value), case["value"].as_i64().unwrap(), "{case}");
    }
}

#[test]
fn segment_and_target_lengths_are_t5s() {
    for case in cases(&golden(), "helper") {
        let got = random_spans_helper(
            case["inputs_length"].as_u64().unwrap() as usize,
            case["density"].as_f64().unwrap(),
            case["mean"].as_f64().unwrap(),
        );
        let expected = (
            case["tokens_length"].as_u64().unwrap() as usize,
            case["targets_length"].as_u64().unwrap() as usize,
        );
        assert_eq!(got, expected, "{case}");
    }
}

#[test]
fn noise_masks_are_t5s() {
    let golden = golden();
    let masks = cases(&golden, "masks");
    assert!(masks.len() >= 70);
    for case in masks {
        let mask = random_spans_noise_mask(
            case["length"].as_u64().unwrap() as usize,
            case["density"].as_f64().unwrap(),
            seed_pairs(&case["seeds"]),
            case["mean"].as_f64().unwrap(),
        );
        let got: String = mask.iter().map(|&m| if m { '1' } else { '0' }).collect();
        assert_eq!(
            got,
            case["mask"].as_str().unwrap(),
            "length {} density {} seeds {}",
            case["length"],
            case["density"],
            case["seeds"]
        );
    }
}

#[test]
fn inputs_and_targets_are_t5s() {
    let golden = golden();
    let first_sentinel = golden["vocab_size"].as_u64().unwrap() as u32 - 1;
    for case in cases(&golden, "denoise") {
        let (inputs, targets) = corrupt_segment(
            &ids(&case["tokens"]),
            0.15,
            3.0,
            seed_pairs(&case["seeds"]),
            first_sentinel,
        )
        .unwrap();
        assert_eq!(inputs, ids(&case["inputs"]), "inputs of {}", case["tokens"]);
        assert_eq!(
            targets,
            ids(&case["targets"]),
            "targets of {}",
            case["tokens"]
        );
    }
}

/// A word-level vocabulary of T5's size whose last id is `<extra_id_0>`.
fn t5_sized_vocabulary(size: usize) -> Vocabulary {
    let mut vocab = serde_json::Map::new();
    for (i, token) in ["<pad>", "</s>", "<unk>"].into_iter().enumerate() {
        vocab.insert(token.into(), i.into());
    }
    for i in 3..size - 100 {
        vocab.insert(format!("w{i}"), i.into());
    }
    for n in 0..100 {
        vocab.insert(format!("<extra_id_{n}>"), (size - 1 - n).into());
    }
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
        "decoder": null, "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    });
    Vocabulary::from_tokenizer(tokenizers::Tokenizer::from_str(&json.to_string()).unwrap())
}

/// The segment a corrupted example came from: kept runs of the inputs and dropped runs of the
/// targets, interleaved at their sentinels.
fn restore(inputs: &[u32], targets: &[u32], is_sentinel: impl Fn(u32) -> bool) -> Vec<u32> {
    let runs = |ids: &[u32]| -> Vec<Vec<u32>> {
        let ids = ids.strip_suffix(&[1]).expect("ends with EOS");
        ids.split(|&t| is_sentinel(t))
            .map(<[u32]>::to_vec)
            .collect()
    };
    let (kept, dropped) = (runs(inputs), runs(targets));
    // Targets start with the sentinel of the first kept run: their first run is empty.
    assert!(dropped[0].is_empty());
    let mut segment = Vec::new();
    for (i, run) in kept.iter().enumerate() {
        segment.extend(run);
        if let Some(noise) = dropped.get(i + 1) {
            segment.extend(noise);
        }
    }
    segment
}

fn features(vocabulary_size: usize) -> OutputFeatures {
    let vocabulary = Arc::new(t5_sized_vocabulary(vocabulary_size));
    ["inputs", "targets", "hyper_inputs"]
        .into_iter()
        .map(|name| (name.to_string(), Feature::new(vocabulary.clone())))
        .collect::<BTreeMap<_, _>>()
}

/// Words of the test vocabulary that spell `ids`, so that the text tokenizes back to them.
fn words(ids: &[u32]) -> String {
    ids.iter()
        .map(|t| format!("w{t}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The segments a span-corruption preprocessor made of `texts`, restored.
fn restored_segments(
    preprocessor: &SpanCorruption,
    features: &OutputFeatures,
    texts: Vec<String>,
    index: u64,
) -> Vec<Vec<u32>> {
    let mut example = Example::new();
    example.insert("text".into(), FeatureValue::Texts(texts));
    let ctx = Context {
        output_features: features,
        seed: 0,
        step: 0,
        index,
    };
    let mut segments = Vec::new();
    for row in preprocessor.apply(example, &ctx).unwrap() {
        let tokens = |name: &str| match row.get(name) {
            Some(FeatureValue::Tokens(t)) => t.clone(),
            other => panic!("{name}: {other:?}"),
        };
        assert!(tokens("inputs").len() <= preprocessor.inputs_length);
        assert_eq!(
            tokens("hyper_inputs"),
            vec![1],
            "plain T5: the empty instruction"
        );
        segments.push(restore(&tokens("inputs"), &tokens("targets"), |t| {
            t >= 32_000
        }));
    }
    segments
}

#[test]
fn segments_are_t5s_concatenated_and_split_documents() {
    let golden = golden();
    let features = features(32_100);
    for case in cases(&golden, "segments") {
        let docs: Vec<Vec<u32>> = case["docs"].as_array().unwrap().iter().map(ids).collect();
        let group = case["texts_per_example"].as_u64().unwrap() as usize;
        let inputs_length = case["inputs_length"].as_u64().unwrap() as usize;
        let preprocessor = SpanCorruption::new("text", inputs_length);
        let mut segments = Vec::new();
        for (index, texts) in docs.chunks(group).enumerate() {
            let texts: Vec<String> = texts.iter().map(|doc| words(doc)).collect();
            segments.extend(restored_segments(
                &preprocessor,
                &features,
                texts,
                index as u64,
            ));
        }
        let expected: Vec<Vec<u32>> = case["segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(ids)
            .collect();
        assert_eq!(segments, expected);
    }
}

#[test]
fn a_text_over_65536_tokens_is_cut_to_one_chunk_before_texts_are_joined() {
    let features = features(32_100);
    let preprocessor = SpanCorruption::new("text", 512);
    let long: Vec<u32> = (0..70_000).map(|i| 3 + i % 31_000).collect();
    let short: Vec<u32> = (5..25).collect();
    let (first, last) = long.split_at(65_536);
    let mut chunks_seen = [false, false];
    for index in 0..8 {
        let texts = vec![words(&long), words(&short)];
        let joined = restored_segments(&preprocessor, &features, texts, index).concat();
        let (chunk, tail) = joined.split_at(joined.len() - short.len());
        assert_eq!(
            tail,
            short.as_slice(),
            "the short text, whole, after the chunk"
        );
        assert!(
            chunk == first || chunk == last,
            "one whole chunk of the long text"
        );
        chunks_seen[usize::from(chunk == last)] = true;
    }
    assert_eq!(
        chunks_seen,
        [true, true],
        "both chunks are drawn over 8 examples"
    );
}

#[test]
fn settings_seqio_cannot_noise_are_refused_and_sentinels_are_counted() {
    let crowded = SpanCorruption {
        noise_density: 0.8,
        ..SpanCorruption::new("text", 64)
    };
    let error = crowded.validate(None).unwrap_err().to_string();
    assert!(error.contains("noise spans"), "{error}");
    // Inputs of 512: segments of 568 tokens have up to 28 noise spans, so 28 sentinels.
    let t5 = SpanCorruption::new("text", 512);
    assert_eq!(t5.max_noise_spans().unwrap(), 28);
    assert!(t5.validate(Some(113)).is_err() && t5.validate(Some(114)).is_ok());
    let vocabulary = t5_sized_vocabulary(32_100);
    assert_eq!(sentinel_id(&vocabulary, 28).unwrap(), 32_099);
    let error = sentinel_id(&vocabulary, 101).unwrap_err().to_string();
    assert!(error.contains("<extra_id_100>"), "{error}");
}
