//! Rendering a value as gin text and parsing it back gives the same value, for random
//! values of every kind (the property the operative config relies on).

use hint_config::{parse_value, Reference, Value};
use proptest::prelude::*;

fn selector() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,5}(\\.[A-Za-z_][A-Za-z0-9_]{0,5}){0,2}"
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::None),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<f64>()
            .prop_filter("NaN has no literal", |x| !x.is_nan())
            .prop_map(Value::Float),
        any::<String>().prop_map(Value::Str),
        ("([a-z]{1,4}(/[a-z]{1,4})?)?", selector(), any::<bool>()).prop_map(
            |(scope, selector, call)| Value::Ref(Reference {
                scope,
                selector,
                call
            })
        ),
        ("([a-z]{1,4}/)?", "[A-Z_]{1,6}").prop_map(|(s, n)| Value::Macro(format!("{s}{n}"))),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::List),
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Tuple),
            proptest::collection::btree_map("[a-z]{0,4}", inner, 0..4).prop_map(|m| {
                Value::Dict(m.into_iter().map(|(k, v)| (Value::Str(k), v)).collect())
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(500),
        ..ProptestConfig::default()
    })]

    #[test]
    fn display_parses_back_to_the_same_value(v in value()) {
        let text = v.to_string();
        let parsed = parse_value(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(parsed, v, "{}", text);
    }
}
