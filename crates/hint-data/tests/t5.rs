//! The pipeline with the real T5 vocabulary from `HINT_SHARED_DATA`.

use std::sync::Arc;

use hint_data::preprocessors::{Context, Preprocessor, Tokenize};
use hint_data::{Example, Feature, FeatureValue, OutputFeatures, Vocabulary};

fn vocabulary() -> Vocabulary {
    let root = std::env::var("HINT_SHARED_DATA").expect("HINT_SHARED_DATA");
    Vocabulary::from_file(format!("{root}/t5-tokenizer/tokenizer.json")).unwrap()
}

#[test]
#[ignore = "needs HINT_SHARED_DATA (set by .ci/run)"]
fn eos_rules_and_batch_encoding_agree_with_the_known_vectors() {
    let vocab = vocabulary();
    let text = "translate English to German: The house is wonderful.";
    let with_eos = [13959, 1566, 12, 2968, 10, 37, 629, 19, 1627, 5, 1];
    assert_eq!(vocab.encode_with(text, true).unwrap(), with_eos);
    assert_eq!(vocab.encode_with(text, false).unwrap(), with_eos[..10]);
    let summarize = "summarize: studies have shown that owning a dog is good for you";
    let batch = vocab.encode_batch(&[text, summarize], true).unwrap();
    assert_eq!(batch[0], with_eos);
    assert_eq!(
        batch[1],
        [21603, 10, 2116, 43, 2008, 24, 293, 53, 3, 9, 1782, 19, 207, 21, 25, 1]
    );
    assert_eq!(vocab.encode_with("<extra_id_0>", false).unwrap(), [32099]);
}

/// P3's rule: `inputs` without EOS, `targets` with it (`seqio.md` §6.4).
#[test]
#[ignore = "needs HINT_SHARED_DATA (set by .ci/run)"]
fn tokenize_follows_each_features_eos_rule_with_t5() {
    let vocab = Arc::new(vocabulary());
    let mut features = OutputFeatures::new();
    features.insert(
        "inputs".into(),
        Feature::new(Arc::clone(&vocab)).add_eos(false),
    );
    features.insert("targets".into(), Feature::new(vocab));
    let mut example = Example::new();
    example.insert(
        "inputs".into(),
        FeatureValue::from("The house is wonderful."),
    );
    example.insert(
        "targets".into(),
        FeatureValue::from("The house is wonderful."),
    );
    let ctx = Context {
        output_features: &features,
        seed: 0,
        step: 0,
        index: 0,
    };
    let out = Tokenize::default().apply(example, &ctx).unwrap().remove(0);
    assert_eq!(
        out["inputs"],
        FeatureValue::Tokens(vec![37, 629, 19, 1627, 5])
    );
    assert_eq!(
        out["targets"],
        FeatureValue::Tokens(vec![37, 629, 19, 1627, 5, 1])
    );
}
