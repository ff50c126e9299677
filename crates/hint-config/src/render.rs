//! Writing a configuration back as gin text in gin's `config_str` layout.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::ast::{import_binding, Import};
use crate::value::Value;

const LINE: usize = 80;
const RULE: &str =
    "# ==============================================================================";

/// gin's section order: the selector's components innermost first, then the scope's,
/// ignoring case.
fn sort_key(scope: &str, selector: &str) -> Vec<String> {
    selector
        .to_lowercase()
        .split('.')
        .rev()
        .chain(scope.to_lowercase().split('/').rev())
        .map(str::to_string)
        .collect::<Vec<_>>()
}

fn binding_line(key: &str, value: &Value) -> String {
    let text = value.to_string();
    if key.len() + 3 + text.len() <= LINE {
        format!("{key} = {text}")
    } else {
        format!("{key} = \\\n    {text}")
    }
}

fn first_components(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Ref(r) => {
            out.insert(r.selector.split('.').next().unwrap_or_default().to_string());
        }
        Value::List(items) | Value::Tuple(items) => {
            items.iter().for_each(|v| first_components(v, out));
        }
        Value::Dict(items) => items.iter().for_each(|(k, v)| {
            first_components(k, out);
            first_components(v, out);
        }),
        _ => {}
    }
}

/// With dynamic registration, every rendered selector is a complete path whose first
/// component must be bound by an import for the text to parse back.
fn imports_to_render(
    imports: &[Import],
    macros: &BTreeMap<String, Value>,
    sections: &BTreeMap<(String, String), BTreeMap<String, Value>>,
) -> Vec<String> {
    let mut lines: Vec<String> = imports.iter().map(Import::format).collect();
    if !imports.iter().any(Import::is_dynamic_registration) {
        return lines;
    }
    let bound: BTreeSet<String> = imports
        .iter()
        .filter(|i| !i.is_dynamic_registration())
        .map(|i| import_binding(&i.module, i.is_from, i.alias.as_deref()).0)
        .collect();
    let mut needed = BTreeSet::new();
    for ((_, selector), params) in sections {
        needed.insert(selector.split('.').next().unwrap_or_default().to_string());
        params
            .values()
            .for_each(|v| first_components(v, &mut needed));
    }
    macros
        .values()
        .for_each(|v| first_components(v, &mut needed));
    needed.remove("gin");
    for name in needed.difference(&bound) {
        lines.push(format!("import {name}"));
    }
    lines
}

pub(crate) fn render(
    imports: &[Import],
    macros: &BTreeMap<String, Value>,
    sections: &BTreeMap<(String, String), BTreeMap<String, Value>>,
) -> String {
    let mut out = String::new();
    let import_lines = imports_to_render(imports, macros, sections);
    if !import_lines.is_empty() {
        for line in import_lines {
            let _ = writeln!(out, "{line}");
        }
        out.push('\n');
    }
    if !macros.is_empty() {
        let _ = writeln!(out, "# Macros:\n{RULE}");
        let mut names: Vec<&String> = macros.keys().collect();
        names.sort_by_key(|n| {
            n.to_lowercase()
                .split('/')
                .rev()
                .map(str::to_string)
                .collect::<Vec<_>>()
        });
        for name in names {
            let _ = writeln!(out, "{}", binding_line(name, &macros[name]));
        }
        out.push('\n');
    }
    let mut keys: Vec<&(String, String)> = sections.keys().collect();
    keys.sort_by_key(|(scope, selector)| sort_key(scope, selector));
    for key in keys {
        let (scope, selector) = key;
        let scoped = if scope.is_empty() {
            selector.clone()
        } else {
            format!("{scope}/{selector}")
        };
        let _ = writeln!(out, "# Parameters for {scoped}:\n{RULE}");
        let params = &sections[key];
        if params.is_empty() {
            let _ = writeln!(out, "# None.");
        }
        for (param, value) in params {
            let _ = writeln!(out, "{}", binding_line(&format!("{scoped}.{param}"), value));
        }
        out.push('\n');
    }
    out
}
