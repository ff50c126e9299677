//! No input makes parsing or building panic: random bytes, and random mutations of
//! the corpus (which reach deep into the grammar). Bounded so CI runs it in seconds;
//! raise `PROPTEST_CASES` for a longer local pass.

use std::path::Path;

use hint_config::{parse_str, ConfigBuilder};
use proptest::prelude::*;

fn corpus() -> Vec<String> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut files: Vec<_> = std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gin"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// Parsing must return, and a successful parse must also survive building (without
/// includes, which would touch the file system) and rendering.
fn exercise(text: &str) {
    if parse_str(text, "fuzz.gin").is_ok() && !text.contains("include") {
        if let Ok(config) = ConfigBuilder::new().source("fuzz.gin", text).build() {
            let rendered = config.config_str();
            let again = ConfigBuilder::new().source("r.gin", rendered).build();
            assert!(again.is_ok(), "rendered config does not parse back");
        }
    }
}

#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, String),
    Duplicate(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let snippet = prop_oneof![
        Just("(".to_string()),
        Just(")".to_string()),
        Just("[".to_string()),
        Just("{".to_string()),
        Just("'".to_string()),
        Just("\"\"\"".to_string()),
        Just("\\".to_string()),
        Just("\n".to_string()),
        Just("\n  ".to_string()),
        Just(":".to_string()),
        Just("=".to_string()),
        Just("@".to_string()),
        Just("%".to_string()),
        Just("/".to_string()),
        Just("-".to_string()),
        Just("#".to_string()),
        Just(",".to_string()),
        Just("r".to_string()),
        Just("é".to_string()),
        "[ -~]{0,8}",
    ];
    prop_oneof![
        (any::<usize>(), 0usize..20).prop_map(|(a, n)| Edit::Delete(a, n)),
        (any::<usize>(), snippet).prop_map(|(a, s)| Edit::Insert(a, s)),
        (any::<usize>(), 0usize..40).prop_map(|(a, n)| Edit::Duplicate(a, n)),
    ]
}

/// The nearest char boundary at or before `at % (len + 1)`.
fn boundary(text: &str, at: usize) -> usize {
    let mut i = at % (text.len() + 1);
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(text: &mut String, e: &Edit) {
    match e {
        Edit::Delete(a, n) => {
            let start = boundary(text, *a);
            let end = boundary(text, start + n);
            if end >= start {
                text.replace_range(start..end, "");
            }
        }
        Edit::Insert(a, s) => {
            let at = boundary(text, *a);
            text.insert_str(at, s);
        }
        Edit::Duplicate(a, n) => {
            let start = boundary(text, *a);
            let end = boundary(text, start + n).max(start);
            let piece = text[start..end].to_string();
            text.insert_str(end, &piece);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        exercise(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_gin_like_text_never_panics(text in "[a-zA-Z_./@%=:()\\[\\]{},'\"#\\\\ \n0-9-]{0,200}") {
        exercise(&text);
    }

    #[test]
    fn mutated_corpus_never_panics(
        file in 0usize..16,
        edits in proptest::collection::vec(edit(), 1..6),
    ) {
        let files = corpus();
        let mut text = files[file % files.len()].clone();
        for e in &edits {
            apply(&mut text, e);
        }
        exercise(&text);
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let text = format!("a.b = {}1{}\n", "[".repeat(100_000), "]".repeat(100_000));
    assert!(parse_str(&text, "deep.gin").is_err());
}
