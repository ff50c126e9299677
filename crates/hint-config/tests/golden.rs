//! The Rust parser against Python gin-config's parser: every corpus file must parse to
//! exactly the golden JSON written by `scripts/gin_golden.py`.

use std::path::Path;

use hint_config::{parse_str, Statement, StatementKind};
use serde_json::{json, Value as Json};

fn to_golden(statement: &Statement) -> Json {
    let line = statement.location.line;
    match &statement.kind {
        StatementKind::Binding {
            scope,
            selector,
            param,
            value,
        } => json!({"line": line, "binding": {
            "scope": scope, "selector": selector, "arg_name": param, "value": value.to_tagged_json()
        }}),
        // gin stores `scope/NAME = v` as a binding of selector NAME without a parameter.
        StatementKind::Macro { scope, name, value } => json!({"line": line, "binding": {
            "scope": scope, "selector": name, "arg_name": "", "value": value.to_tagged_json()
        }}),
        StatementKind::Block { scope, selector } => {
            json!({"line": line, "block": {"scope": scope, "selector": selector}})
        }
        StatementKind::Import {
            module,
            is_from,
            alias,
        } => {
            json!({"line": line, "import": {"module": module, "is_from": is_from, "alias": alias}})
        }
        StatementKind::Include { path } => json!({"line": line, "include": path}),
    }
}

#[test]
fn corpus_parses_exactly_like_python_gin() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut checked = 0;
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("gin") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let statements = parse_str(&text, &name).unwrap_or_else(|e| panic!("{e}"));
        let ours: Vec<Json> = statements.iter().map(to_golden).collect();
        let golden_path = data.join("golden").join(format!(
            "{}.json",
            path.file_stem().unwrap().to_string_lossy()
        ));
        let golden: Vec<Json> =
            serde_json::from_str(&std::fs::read_to_string(&golden_path).unwrap()).unwrap();
        assert_eq!(ours.len(), golden.len(), "{name}: statement count");
        for (o, g) in ours.iter().zip(&golden) {
            assert_eq!(o, g, "{name}");
        }
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} corpus files found");
}

#[test]
fn snippets_python_gin_rejects_are_rejected() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden/invalid.json");
    let cases: Vec<Json> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(cases.len() >= 30);
    for case in &cases {
        let text = case["text"].as_str().unwrap();
        let err = parse_str(text, "invalid.gin");
        assert!(
            err.is_err(),
            "accepted {text:?}, which gin rejects with {}",
            case["gin_error"]
        );
    }
}
