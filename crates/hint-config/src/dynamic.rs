//! gin's dynamic registration: in a file that starts with
//! `from __gin__ import dynamic_registration`, a selector's first component is a name
//! bound by one of the file's imports; bindings are stored under the complete path.

use std::collections::HashMap;

use crate::ast::{import_binding, Statement, StatementKind};
use crate::error::{ConfigError, Location};
use crate::value::{Reference, Value};

/// Rewrites the selectors of one file's statements to complete paths when the file
/// uses dynamic registration; other files are returned unchanged.
pub(crate) fn expand(statements: Vec<Statement>) -> Result<Vec<Statement>, ConfigError> {
    let mut dynamic = false;
    let mut seen_import = false;
    for s in &statements {
        if s.kind.is_dynamic_registration() {
            if seen_import {
                return Err(ConfigError::LateDynamicRegistration {
                    at: s.location.clone(),
                });
            }
            dynamic = true;
        } else if matches!(s.kind, StatementKind::Import { .. }) {
            seen_import = true;
        }
    }
    if !dynamic {
        return Ok(statements);
    }
    let mut names: HashMap<String, String> = HashMap::new();
    let mut out = Vec::with_capacity(statements.len());
    for mut s in statements {
        let at = s.location.clone();
        let is_marker = s.kind.is_dynamic_registration();
        match &mut s.kind {
            StatementKind::Import {
                module,
                is_from,
                alias,
            } => {
                if !is_marker {
                    let (name, path) = import_binding(module, *is_from, alias.as_deref());
                    names.insert(name, path);
                }
            }
            StatementKind::Binding {
                selector, value, ..
            } => {
                *selector = complete(selector, &names, &at)?;
                expand_value(value, &names, &at)?;
            }
            StatementKind::Block { selector, .. } => *selector = complete(selector, &names, &at)?,
            StatementKind::Macro { value, .. } => expand_value(value, &names, &at)?,
            StatementKind::Include { .. } => {}
        }
        out.push(s);
    }
    Ok(out)
}

fn complete(
    selector: &str,
    names: &HashMap<String, String>,
    at: &Location,
) -> Result<String, ConfigError> {
    let (first, rest) = match selector.split_once('.') {
        Some((first, rest)) => (first, Some(rest)),
        None => (selector, None),
    };
    // `gin.macro`, `gin.singleton`, `gin.constant` are gin's own.
    if first == "gin" {
        return Ok(selector.to_string());
    }
    match (names.get(first), rest) {
        (Some(path), Some(rest)) => Ok(format!("{path}.{rest}")),
        (Some(path), None) => Ok(path.clone()),
        (None, _) => Err(ConfigError::UnboundImportName {
            name: first.to_string(),
            selector: selector.to_string(),
            at: Some(at.clone()),
        }),
    }
}

fn expand_value(
    value: &mut Value,
    names: &HashMap<String, String>,
    at: &Location,
) -> Result<(), ConfigError> {
    match value {
        Value::Ref(Reference { selector, .. }) => *selector = complete(selector, names, at)?,
        Value::List(items) | Value::Tuple(items) => {
            for item in items {
                expand_value(item, names, at)?;
            }
        }
        Value::Dict(items) => {
            for (k, v) in items {
                expand_value(k, names, at)?;
                expand_value(v, names, at)?;
            }
        }
        _ => {}
    }
    Ok(())
}
