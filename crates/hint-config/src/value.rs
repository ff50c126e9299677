//! gin values: Python literals, containers, `@references` and `%macros`.

use std::fmt::{self, Write as _};

use serde_json::{json, Value as Json};

/// A gin value as written in a config (references and macros unevaluated).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An integer literal (decimal, hex, octal or binary; `_` separators allowed).
    Int(i64),
    /// A float literal.
    Float(f64),
    /// A string literal, escapes decoded and adjacent literals concatenated.
    Str(String),
    /// `[a, b]`.
    List(Vec<Value>),
    /// `(a, b)`, `(a,)` or `()`.
    Tuple(Vec<Value>),
    /// `{k: v}`; keys are unique and keep first-insertion order, as a Python dict.
    Dict(Vec<(Value, Value)>),
    /// `@scope/selector` or `@scope/selector()`.
    Ref(Reference),
    /// `%scope/NAME`: the macro's name with its scopes, e.g. `gin.REQUIRED`.
    Macro(String),
}

/// A configurable reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// The scope the referenced configurable runs in; empty for "the caller's scope".
    pub scope: String,
    /// The configurable's selector.
    pub selector: String,
    /// `()`: pass the result of calling it rather than the configurable itself.
    pub call: bool,
}

impl Value {
    /// Whether this is `%gin.REQUIRED` (the constant is found by suffix, as gin does).
    pub fn is_required(&self) -> bool {
        matches!(self, Value::Macro(name) if name == "gin.REQUIRED" || name == "REQUIRED")
    }

    /// The value in the tagged JSON shape shared with the golden files written by
    /// `scripts/gin_golden.py`: `{"int": 3}`, `{"float": "0.001"}` (Python's `repr`, so
    /// that the comparison is exact), `{"str": …}`, `{"bool": …}`, `{"none": null}`,
    /// `{"list": […]}`, `{"tuple": […]}`, `{"dict": [[k, v], …]}`,
    /// `{"ref": {"scope", "selector", "call"}}`, `{"macro": "scope/NAME"}`.
    pub fn to_tagged_json(&self) -> Json {
        match self {
            Value::None => json!({ "none": null }),
            Value::Bool(b) => json!({ "bool": b }),
            Value::Int(i) => json!({ "int": i }),
            Value::Float(f) => json!({ "float": python_float_repr(*f) }),
            Value::Str(s) => json!({ "str": s }),
            Value::List(items) => {
                json!({ "list": items.iter().map(Value::to_tagged_json).collect::<Vec<_>>() })
            }
            Value::Tuple(items) => {
                json!({ "tuple": items.iter().map(Value::to_tagged_json).collect::<Vec<_>>() })
            }
            Value::Dict(items) => json!({
                "dict": items.iter().map(|(k, v)| json!([k.to_tagged_json(), v.to_tagged_json()])).collect::<Vec<_>>()
            }),
            Value::Ref(r) => {
                json!({ "ref": { "scope": r.scope, "selector": r.selector, "call": r.call } })
            }
            Value::Macro(name) => json!({ "macro": name }),
        }
    }

    /// Converts a plain JSON value (e.g. a serialized Rust default) into a gin value:
    /// arrays become lists, objects dicts with string keys.
    pub fn from_json(json: &Json) -> Value {
        match json {
            Json::Null => Value::None,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Json::String(s) => Value::Str(s.clone()),
            Json::Array(items) => Value::List(items.iter().map(Value::from_json).collect()),
            Json::Object(map) => Value::Dict(
                map.iter()
                    .map(|(k, v)| (Value::Str(k.clone()), Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// Whether the value (recursively) holds a reference.
    pub fn has_reference(&self) -> bool {
        match self {
            Value::Ref(_) => true,
            Value::List(items) | Value::Tuple(items) => items.iter().any(Value::has_reference),
            Value::Dict(items) => items
                .iter()
                .any(|(k, v)| k.has_reference() || v.has_reference()),
            _ => false,
        }
    }
}

/// Dict keys become JSON object keys: strings as they are, everything else as its gin
/// text, which serde_json's map-key deserializer parses back for integer keys.
pub(crate) fn json_key(key: &Value) -> String {
    match key {
        Value::Str(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Python's `repr` of a float, which is what the golden files record; `inf` is not a
/// Python literal, so gin text uses `1e999` for it (see the `Display` impl).
pub(crate) fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    // Rust's `{:?}` is the shortest round-tripping form like Python's repr; only the
    // exponent spelling and the switch-over thresholds differ.
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    let s = format!("{f:?}");
    if s.contains('.') || s.contains('e') || s.contains("inf") {
        s
    } else {
        format!("{s}.0")
    }
}

/// Python's `repr` of a string: single quotes unless the text holds `'` and no `"`.
pub(crate) fn python_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Writes the value as gin text (Python literal syntax) that parses back to itself.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn seq(f: &mut fmt::Formatter<'_>, items: &[Value]) -> fmt::Result {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{item}")?;
            }
            Ok(())
        }
        match self {
            Value::None => f.write_str("None"),
            Value::Bool(true) => f.write_str("True"),
            Value::Bool(false) => f.write_str("False"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) if x.is_infinite() => {
                f.write_str(if *x > 0.0 { "1e999" } else { "-1e999" })
            }
            Value::Float(x) => f.write_str(&python_float_repr(*x)),
            Value::Str(s) => f.write_str(&python_str_repr(s)),
            Value::List(items) => {
                f.write_str("[")?;
                seq(f, items)?;
                f.write_str("]")
            }
            Value::Tuple(items) => {
                f.write_str("(")?;
                seq(f, items)?;
                if items.len() == 1 {
                    f.write_str(",")?;
                }
                f.write_str(")")
            }
            Value::Dict(items) => {
                f.write_str("{")?;
                for (i, (k, v)) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
            Value::Ref(r) => {
                f.write_str("@")?;
                if !r.scope.is_empty() {
                    write!(f, "{}/", r.scope)?;
                }
                f.write_str(&r.selector)?;
                if r.call {
                    f.write_str("()")?;
                }
                Ok(())
            }
            Value::Macro(name) => write!(f, "%{name}"),
        }
    }
}
