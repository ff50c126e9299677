use super::*;
use crate::features::Feature;
use crate::registry::toy_vocabulary;

fn features(add_eos_inputs: bool) -> OutputFeatures {
    let vocab = Arc::new(toy_vocabulary().unwrap());
    let mut f = OutputFeatures::new();
    f.insert(
        "inputs".into(),
        Feature::new(Arc::clone(&vocab)).add_eos(add_eos_inputs),
    );
    f.insert("hyper_inputs".into(), Feature::new(Arc::clone(&vocab)));
    f.insert("targets".into(), Feature::new(vocab));
    f
}

fn ctx(features: &OutputFeatures, index: u64) -> Context<'_> {
    Context {
        output_features: features,
        seed: 7,
        step: 0,
        index,
    }
}

fn example(pairs: &[(&str, FeatureValue)]) -> Example {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

#[test]
fn rekey_keeps_only_mapped_fields() {
    let f = features(true);
    let mut rekey = Rekey::new([("inputs", "question"), ("targets", "answer")]);
    rekey.key_map.insert("hyper_inputs".into(), None);
    let out = rekey
        .apply(
            example(&[
                ("question", "q".into()),
                ("answer", "a".into()),
                ("other", "x".into()),
            ]),
            &ctx(&f, 0),
        )
        .unwrap();
    assert_eq!(
        out,
        vec![example(&[
            ("inputs", "q".into()),
            ("targets", "a".into()),
            ("hyper_inputs", "".into())
        ])]
    );
    let err = rekey
        .apply(example(&[("answer", "a".into())]), &ctx(&f, 0))
        .unwrap_err();
    assert_eq!(err.field_name(), Some("question"));
}

#[test]
fn templates_render_fields_and_escape_braces() {
    let f = features(true);
    let t = Template::new("inputs", "{definition} Input: {input} {{n}}={n}").unwrap();
    assert_eq!(t.fields().collect::<Vec<_>>(), ["definition", "input", "n"]);
    let out = t
        .apply(
            example(&[
                ("definition", "Sort.".into()),
                ("input", "3 1".into()),
                ("n", FeatureValue::Int(2)),
            ]),
            &ctx(&f, 0),
        )
        .unwrap();
    assert_eq!(
        out[0]["inputs"],
        FeatureValue::from("Sort. Input: 3 1 {n}=2")
    );
    assert_eq!(out[0]["definition"], FeatureValue::from("Sort."));
    let err = t
        .apply(example(&[("definition", "d".into())]), &ctx(&f, 0))
        .unwrap_err();
    assert_eq!(err.field_name(), Some("input"));
    assert!(Template::new("x", "{open").is_err());
}

#[test]
fn hint_split_sends_instruction_to_the_hypernetwork() {
    let f = features(true);
    let split = HintSplit::new("{definition}", "{input}").unwrap();
    let out = split
        .apply(
            example(&[
                ("definition", "Reverse the list.".into()),
                ("input", "1 2".into()),
            ]),
            &ctx(&f, 0),
        )
        .unwrap();
    assert_eq!(
        out[0]["hyper_inputs"],
        FeatureValue::from("Reverse the list.")
    );
    assert_eq!(out[0]["inputs"], FeatureValue::from("1 2"));
}

#[test]
fn rank_classification_expands_choices() {
    let f = features(true);
    let rc = RankClassification::default();
    let out = rc
        .apply(
            example(&[
                ("inputs", "Is it?".into()),
                ("hyper_inputs", "Answer [MASK]".into()),
                ("targets_pretokenized", " no".into()),
                (
                    "answer_choices",
                    FeatureValue::Texts(vec!["yes".into(), "no".into(), "maybe".into()]),
                ),
            ]),
            &ctx(&f, 41),
        )
        .unwrap();
    assert_eq!(out.len(), 3);
    let correct: Vec<_> = out.iter().map(|e| e["is_correct"].clone()).collect();
    assert_eq!(
        correct,
        [
            FeatureValue::Int(0),
            FeatureValue::Int(1),
            FeatureValue::Int(0)
        ]
    );
    assert_eq!(out[2]["targets"], FeatureValue::from("maybe"));
    assert_eq!(out[2]["choice_index"], FeatureValue::Int(2));
    assert!(out.iter().all(|e| e["example_id"] == FeatureValue::Int(41)));
    assert!(out
        .iter()
        .all(|e| e["hyper_inputs"] == FeatureValue::from("Answer [MASK]")));
    assert!(out.iter().all(|e| !e.contains_key("answer_choices")));
    let err = rc
        .apply(
            example(&[("targets_pretokenized", "x".into())]),
            &ctx(&f, 0),
        )
        .unwrap_err();
    assert_eq!(err.field_name(), Some("answer_choices"));
}

#[test]
fn pretrain_split_cuts_segments_into_three_parts() {
    let f = features(true);
    let split = PretrainSplit {
        field: "text".into(),
        segment_length: 5,
        parts: 3,
    };
    let tokens: Vec<u32> = (3..15).collect();
    let mut total = 0;
    for index in 0..20 {
        let out = split
            .apply(
                example(&[("text", FeatureValue::Tokens(tokens.clone()))]),
                &ctx(&f, index),
            )
            .unwrap();
        // 12 tokens in segments of 5: 5, 5, 2.
        assert_eq!(out.len(), 3);
        let mut rebuilt = Vec::new();
        for row in &out {
            for part in ["hyper_inputs", "inputs", "targets"] {
                let ids = row[part].as_tokens().unwrap();
                assert_eq!(ids.last(), Some(&1), "{part} ends with EOS");
                rebuilt.extend_from_slice(&ids[..ids.len() - 1]);
            }
            assert!(row["hyper_inputs"].as_tokens().unwrap().len() >= 2);
            assert!(row["targets"].as_tokens().unwrap().len() >= 2);
            assert_eq!(row["task_names"], FeatureValue::Int(0));
        }
        assert_eq!(rebuilt, tokens);
        total += out[0]["inputs"].as_tokens().unwrap().len();
    }
    // The split points vary with the example index.
    assert!(total > 20);
    // Text is tokenized first; the 1-token tail segment cannot be split and is dropped.
    let text = split
        .apply(example(&[("text", "1 2 3 4 5 6".into())]), &ctx(&f, 0))
        .unwrap();
    assert_eq!(text.len(), 1);
}

#[test]
fn pretrain_split_of_grouped_texts_is_that_of_their_concatenated_tokens() {
    let f = features(true);
    let split = PretrainSplit {
        field: "text".into(),
        segment_length: 6,
        parts: 3,
    };
    let vocab = toy_vocabulary().unwrap();
    let texts = ["copy the list", "sort it in order", "reverse the list ."];
    let mut tokens = Vec::new();
    for text in texts {
        tokens.extend(vocab.encode_with(text, false).unwrap());
    }
    let grouped = example(&[(
        "text",
        FeatureValue::Texts(texts.map(str::to_string).to_vec()),
    )]);
    let joined = example(&[("text", FeatureValue::Tokens(tokens))]);
    assert_eq!(
        split.apply(grouped, &ctx(&f, 3)).unwrap(),
        split.apply(joined, &ctx(&f, 3)).unwrap()
    );
}

/// The reference's 4- and 6-part ablations: the parts go where `c4_registry_4part.py` and
/// `_6part.py` put them, joined by the separator 1, and together they are the segment.
#[test]
fn pretrain_split_cuts_four_and_six_parts_as_the_reference_ablations() {
    let f = features(true);
    let tokens: Vec<u32> = (3..23).collect();
    // Without the final EOS, split at the separators.
    let pieces = |row: &Example, part: &str| -> Vec<Vec<u32>> {
        let ids = row[part].as_tokens().unwrap();
        assert_eq!(ids.last(), Some(&1), "{part} ends with EOS");
        ids[..ids.len() - 1]
            .split(|&t| t == 1)
            .map(<[u32]>::to_vec)
            .collect()
    };
    for (parts, hyper, input, target) in [
        (4, vec![0, 3], vec![1], vec![2]),
        (6, vec![0, 2, 5], vec![1, 3], vec![4]),
    ] {
        let split = PretrainSplit {
            field: "text".into(),
            segment_length: 20,
            parts,
        };
        let mut sizes = std::collections::BTreeSet::new();
        for index in 0..20 {
            let out = split
                .apply(
                    example(&[("text", FeatureValue::Tokens(tokens.clone()))]),
                    &ctx(&f, index),
                )
                .unwrap();
            assert_eq!(out.len(), 1);
            let row = &out[0];
            let mut placed = vec![Vec::new(); parts];
            for (feature, slots) in [
                ("hyper_inputs", &hyper),
                ("inputs", &input),
                ("targets", &target),
            ] {
                let found = pieces(row, feature);
                assert_eq!(found.len(), slots.len(), "{parts} parts: {feature}");
                for (slot, piece) in slots.iter().zip(found) {
                    placed[*slot] = piece;
                }
            }
            assert!(!placed[0].is_empty(), "the first part has a token");
            sizes.insert(placed[0].len());
            assert_eq!(placed.concat(), tokens, "{parts} parts");
        }
        assert!(sizes.len() > 1, "split points vary with the example");
    }
    let five = PretrainSplit {
        field: "text".into(),
        segment_length: 20,
        parts: 5,
    };
    let error = five
        .apply(
            example(&[("text", FeatureValue::Tokens(tokens))]),
            &ctx(&f, 0),
        )
        .unwrap_err();
    assert_eq!(error.field_name(), Some("parts"));
}

#[test]
fn tokenize_applies_each_features_eos_rule() {
    let f = features(false);
    let out = Tokenize::default()
        .apply(
            example(&[
                ("inputs", "copy 1 2".into()),
                ("hyper_inputs", "copy the list".into()),
                ("targets", FeatureValue::Tokens(vec![4, 5, 1])),
                ("other", "untouched".into()),
            ]),
            &ctx(&f, 0),
        )
        .unwrap();
    let e = &out[0];
    assert_eq!(e["inputs"], FeatureValue::Tokens(vec![13, 4, 5]));
    assert_eq!(e["hyper_inputs"], FeatureValue::Tokens(vec![13, 16, 17, 1]));
    assert_eq!(
        e["targets"],
        FeatureValue::Tokens(vec![4, 5, 1]),
        "no second EOS"
    );
    assert_eq!(e["inputs_pretokenized"], FeatureValue::from("copy 1 2"));
    assert_eq!(e["other"], FeatureValue::from("untouched"));
}

#[test]
fn specs_build_the_same_preprocessors() {
    let spec: Vec<PreprocessorSpec> = serde_json::from_str(
        r#"[{"type": "rekey", "key_map": {"inputs": "q", "targets": null}},
            {"type": "template", "output": "inputs", "template": "Q: {inputs}"},
            {"type": "tokenize"}]"#,
    )
    .unwrap();
    let f = features(true);
    let mut e = example(&[("q", "1 2".into())]);
    for (step, s) in spec.iter().enumerate() {
        let p = s.build().unwrap();
        let c = Context { step, ..ctx(&f, 0) };
        e = p.apply(e, &c).unwrap().remove(0);
    }
    assert_eq!(e["inputs_pretokenized"], FeatureValue::from("Q: 1 2"));
    assert_eq!(e["targets"], FeatureValue::Tokens(vec![1]));
}

#[test]
fn span_corruption_specs_default_to_t5s_settings_and_refuse_bad_ones() {
    let parse = |json: &str| serde_json::from_str::<PreprocessorSpec>(json).unwrap();
    let spec = parse(r#"{"type": "span_corruption", "field": "text", "inputs_length": 512}"#);
    assert_eq!(
        spec,
        PreprocessorSpec::SpanCorruption {
            field: "text".into(),
            inputs_length: 512,
            noise_density: 0.15,
            mean_noise_span_length: 3.0,
        }
    );
    assert!(spec.build().unwrap().name().contains("density 0.15"));
    let crowded = parse(
        r#"{"type": "span_corruption", "field": "text", "inputs_length": 64, "noise_density": 0.8}"#,
    );
    assert!(crowded.build().is_err());
}
