//! Binding semantics: override order, scopes, macros, REQUIRED, registry lookups,
//! references, includes, errors and rendering round trips.

use std::path::Path;

use hint_config::{parse_str, Config, ConfigBuilder, ConfigError, Registry, Value};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct Adafactor {
    decay_rate: f64,
    step_offset: i64,
    learning_rate: Option<f64>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct Trainer {
    model_dir: String,
    optimizer: Adafactor,
    groups: Vec<(String, Adafactor)>,
    evaluator_cls: String,
    lengths: std::collections::BTreeMap<String, i64>,
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register_struct::<Adafactor>("t5x.adafactor.Adafactor")
        .unwrap();
    r.register_struct::<Trainer>("t5x.trainer.Trainer").unwrap();
    r.register("seqio.Evaluator", &[]);
    r.register("other.Evaluator", &[]);
    r
}

fn build(text: &str) -> Result<Config, ConfigError> {
    ConfigBuilder::new()
        .registry(registry())
        .source("t.gin", text)
        .build()
}

#[test]
fn later_bindings_override_and_overrides_come_last() {
    let config = ConfigBuilder::new()
        .registry(registry())
        .binding("Adafactor.decay_rate = 0.5")
        .source(
            "a.gin",
            "Adafactor.decay_rate = 0.8\nAdafactor.decay_rate = 0.9\n",
        )
        .build()
        .unwrap();
    let a: Adafactor = config.get("Adafactor", "").unwrap();
    assert_eq!(a.decay_rate, 0.5);
}

#[test]
fn scopes_inherit_unscoped_and_innermost_wins() {
    let config = build(
        "Adafactor.decay_rate = 0.8\nhyper/Adafactor.step_offset = 11\n\
         hyper/inner/Adafactor.step_offset = 12\nother/Adafactor.step_offset = 99\n",
    )
    .unwrap();
    let plain: Adafactor = config.get("adafactor.Adafactor", "").unwrap();
    let hyper: Adafactor = config.get("Adafactor", "hyper").unwrap();
    let inner: Adafactor = config.get("Adafactor", "hyper/inner").unwrap();
    assert_eq!((plain.decay_rate, plain.step_offset), (0.8, 0));
    assert_eq!((hyper.decay_rate, hyper.step_offset), (0.8, 11));
    assert_eq!(inner.step_offset, 12);
    // `other/` is not a prefix of `inner/other`'s scope chain root.
    let unrelated: Adafactor = config.get("Adafactor", "inner/other").unwrap();
    assert_eq!(unrelated.step_offset, 0);
}

#[test]
fn macros_are_lazy_and_the_last_definition_wins() {
    let config = build(
        "DECAY = 0.1\nAdafactor.decay_rate = %DECAY\nDECAY = 0.3\n\
         OPT = @hyper/Adafactor()\nTrainer.optimizer = %OPT\nhyper/Adafactor.step_offset = 7\n",
    )
    .unwrap();
    let a: Adafactor = config.get("Adafactor", "").unwrap();
    assert_eq!(a.decay_rate, 0.3);
    let t: Trainer = config.get("Trainer", "").unwrap();
    assert_eq!(t.optimizer.step_offset, 7);
    assert_eq!(t.optimizer.decay_rate, 0.3);
}

#[test]
fn scoped_references_replace_the_scope_and_unscoped_ones_inherit_it() {
    let config = build(
        "Adafactor.decay_rate = 0.8\nhyper/Adafactor.step_offset = 1100000\n\
         run/Adafactor.step_offset = 5\n\
         Trainer.groups = (('hyper', @hyper/Adafactor()), ('rest', @Adafactor()))\n\
         Trainer.evaluator_cls = @seqio.Evaluator\n\
         Trainer.lengths = {'inputs': 1024, 'targets': 256}\n",
    )
    .unwrap();
    let t: Trainer = config.get("Trainer", "run").unwrap();
    assert_eq!(t.groups[0].1.step_offset, 1100000);
    assert_eq!(
        t.groups[1].1.step_offset, 5,
        "unscoped @f() runs in the caller's scope"
    );
    assert_eq!(t.groups[1].1.decay_rate, 0.8);
    assert_eq!(t.evaluator_cls, "seqio.Evaluator");
    assert_eq!(t.lengths["targets"], 256);
}

#[test]
fn required_left_unbound_is_an_error_naming_it() {
    let err = build("MODEL_DIR = %gin.REQUIRED\nTrainer.model_dir = %MODEL_DIR\nAdafactor.decay_rate = %gin.REQUIRED\n")
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("`MODEL_DIR` set to `%gin.REQUIRED`"),
        "{text}"
    );
    assert!(
        text.contains("t5x.adafactor.Adafactor.decay_rate"),
        "{text}"
    );
    let config = ConfigBuilder::new()
        .registry(registry())
        .source(
            "run.gin",
            "MODEL_DIR = %gin.REQUIRED\nTrainer.model_dir = %MODEL_DIR\n",
        )
        .binding("MODEL_DIR = '/runs/a'")
        .build()
        .unwrap();
    let t: Trainer = config.get("Trainer", "").unwrap();
    assert_eq!(t.model_dir, "/runs/a");
}

#[test]
fn unknown_names_suggest_and_skip_unknown_tolerates_them() {
    let err = build("Adafactr.decay_rate = 1.0\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("did you mean `Adafactor`"), "{err}");
    assert!(err.starts_with("t.gin:1:1"), "{err}");
    let err = build("Adafactor.decay_rat = 1.0\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("did you mean `decay_rate`"), "{err}");
    let err = build("Evaluator.x = 1\n").unwrap_err();
    assert!(
        matches!(err, ConfigError::AmbiguousSelector { ref candidates, .. } if candidates.len() == 2)
    );
    let err = build("Trainer.evaluator_cls = @Nope\n").unwrap_err();
    assert!(matches!(err, ConfigError::UnknownConfigurable { .. }));
    let config = ConfigBuilder::new()
        .registry(registry())
        .skip_unknown(true)
        .source(
            "t.gin",
            "Adafactr.decay_rate = 1.0\nAdafactor.nope = 2\nAdafactor.decay_rate = 0.7\n",
        )
        .build()
        .unwrap();
    // serde ignores fields the struct does not have, so the known ones still arrive.
    let a: Adafactor = config.get("Adafactor", "").unwrap();
    assert_eq!(a.decay_rate, 0.7);
    assert_eq!(config.bindings().len(), 3);
}

#[test]
fn macro_cycles_and_undefined_macros_are_errors() {
    let config = build("A = %B\nB = %A\nAdafactor.decay_rate = %A\n").unwrap();
    let err = config.get::<Adafactor>("Adafactor", "").unwrap_err();
    assert!(matches!(err, ConfigError::EvaluationCycle { .. }), "{err}");
    let config = build("DECAY = 1.0\nAdafactor.decay_rate = %DECAI\n").unwrap();
    let err = config
        .get::<Adafactor>("Adafactor", "")
        .unwrap_err()
        .to_string();
    assert!(err.contains("did you mean `DECAY`"), "{err}");
}

#[test]
fn reference_cycles_end_in_an_error_not_a_stack_overflow() {
    let mut r = Registry::new();
    r.register_struct::<Trainer>("a.Trainer").unwrap();
    let config = ConfigBuilder::new()
        .registry(r)
        .source("t.gin", "Trainer.optimizer = @Trainer()\n")
        .build()
        .unwrap();
    assert!(config.get::<Trainer>("Trainer", "").is_err());
}

#[test]
fn syntax_errors_point_at_file_line_and_column() {
    let err = parse_str("a.b = 1\nc.d = [1, 2\n", "x.gin").unwrap_err();
    let text = err.to_string();
    assert_eq!(err.location.line, 3, "{text}");
    let err = parse_str("a.b = 1\nc.d = foo\n", "x.gin").unwrap_err();
    assert_eq!((err.location.line, err.location.col), (2, 7));
    assert_eq!(err.to_string().lines().nth(1).unwrap().trim(), "c.d = foo");
    assert_eq!(err.to_string().lines().nth(2).unwrap(), "          ^");
    let err = parse_str("a b = 1\n", "x.gin").unwrap_err();
    assert!(err.message.contains("expected ':' or '='"), "{err}");
    let err = parse_str("a.b = 1 2\n", "x.gin").unwrap_err();
    assert_eq!(err.message, "Expected newline.");
    let err = parse_str("a . b = 1\n", "x.gin").unwrap_err();
    assert_eq!(err.message, "Malformatted scope or selector.");
    let err = parse_str("X:\nb = 1\n", "x.gin").unwrap_err();
    assert_eq!(err.message, "Expected indentation.");
}

#[test]
fn includes_use_search_paths_and_report_cycles_and_misses() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("gins");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(
        sub.join("base.gin"),
        "DROPOUT = 0.1\nAdafactor.decay_rate = %DROPOUT\n",
    )
    .unwrap();
    std::fs::write(sub.join("run.gin"), "include 'base.gin'\nDROPOUT = 0.0\n").unwrap();
    std::fs::write(sub.join("loop_a.gin"), "include 'loop_b.gin'\n").unwrap();
    std::fs::write(sub.join("loop_b.gin"), "include 'loop_a.gin'\n").unwrap();
    std::fs::write(sub.join("missing.gin"), "\n\ninclude 'nowhere.gin'\n").unwrap();
    let with = |file: &str| {
        ConfigBuilder::new()
            .registry(registry())
            .search_paths([&sub])
            .file(file)
            .build()
    };
    let config = with("run.gin").unwrap();
    assert_eq!(
        config.get::<Adafactor>("Adafactor", "").unwrap().decay_rate,
        0.0
    );
    let err = with("loop_a.gin").unwrap_err().to_string();
    assert!(err.contains("include cycle"), "{err}");
    assert!(
        err.contains("loop_a.gin -> ")
            && err.contains("loop_b.gin -> ")
            && err.ends_with("loop_a.gin"),
        "{err}"
    );
    let err = with("missing.gin").unwrap_err().to_string();
    assert!(err.contains(":3:1") && err.contains("nowhere.gin"), "{err}");
    assert!(
        err.contains(&sub.join("nowhere.gin").display().to_string()),
        "{err}"
    );
}

#[test]
fn config_str_round_trips_through_the_parser() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    for file in ["main.gin", "blocks.gin", "containers.gin"] {
        let build = |text: Option<&str>| {
            let b = ConfigBuilder::new().search_paths([&data]);
            match text {
                None => b.file(file),
                Some(t) => b.source("rendered.gin", t),
            }
            .build()
        };
        let first = build(None).unwrap_or_else(|e| panic!("{file}: {e}"));
        let text = first.config_str();
        let second = build(Some(&text)).unwrap_or_else(|e| panic!("{file}: {e}\n{text}"));
        assert_eq!(first.bindings(), second.bindings(), "{file}\n{text}");
        let macros = |c: &Config| -> Vec<(String, Value)> {
            c.macros()
                .into_iter()
                .map(|(k, b)| (k, b.value.clone()))
                .collect()
        };
        assert_eq!(macros(&first), macros(&second), "{file}");
        assert_eq!(text, second.config_str());
    }
}

#[test]
fn dynamic_registration_stores_complete_selectors() {
    let config = ConfigBuilder::new()
        .registry(registry())
        .source(
            "d.gin",
            "from __gin__ import dynamic_registration\nfrom t5x import adafactor\n\
             import t5x.trainer as tr\nadafactor.Adafactor:\n  decay_rate = 0.25\n\
             tr.Trainer.optimizer = @adafactor.Adafactor()\n",
        )
        .build()
        .unwrap();
    let t: Trainer = config.get("t5x.trainer.Trainer", "").unwrap();
    assert_eq!(t.optimizer.decay_rate, 0.25);
    let err = Config::parse_text(
        "d.gin",
        "from __gin__ import dynamic_registration\nfoo.Bar.x = 1\n",
    )
    .unwrap_err();
    assert!(matches!(err, ConfigError::UnboundImportName { .. }));
}

#[test]
fn operative_config_shows_used_values_with_defaults() {
    let config = build(
        "LR = 0.01\nAdafactor.decay_rate = 0.8\nhyper/Adafactor.learning_rate = %LR\nTrainer.model_dir = 'x'\n",
    )
    .unwrap();
    let _: Adafactor = config.get("Adafactor", "hyper").unwrap();
    let text = config.operative_config_str();
    assert!(
        text.contains("# Parameters for hyper/t5x.adafactor.Adafactor:"),
        "{text}"
    );
    assert!(
        text.contains("hyper/t5x.adafactor.Adafactor.step_offset = 0"),
        "{text}"
    );
    assert!(
        text.contains("hyper/t5x.adafactor.Adafactor.learning_rate = %LR"),
        "{text}"
    );
    assert!(text.contains("LR = 0.01"), "{text}");
    assert!(!text.contains("Trainer"), "{text}");
    let reparsed = Config::parse_text("op.gin", &text).unwrap();
    assert_eq!(
        reparsed
            .binding("hyper", "t5x.adafactor.Adafactor", "decay_rate")
            .unwrap()
            .value,
        Value::Float(0.8)
    );
}

#[test]
fn containers_fill_rust_collections_tuples_and_int_keyed_maps() {
    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Shapes {
        ranks: (i64, Option<i64>, i64),
        names: std::collections::BTreeMap<i64, String>,
        map: Vec<(String, Option<String>)>,
    }
    let config = Config::parse_text(
        "s.gin",
        "s.Shapes.ranks = (512, None, 8)\ns.Shapes.names = {1: 'one', -2: 'minus two'}\n\
         s.Shapes.map = ((r\"^.*hyper.*$\", None),)\n",
    )
    .unwrap();
    let s: Shapes = config.get("s.Shapes", "").unwrap();
    assert_eq!(s.ranks, (512, None, 8));
    assert_eq!(s.names[&-2], "minus two");
    assert_eq!(s.map, vec![("^.*hyper.*$".to_string(), None)]);
}
