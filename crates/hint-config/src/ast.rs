//! The statements of a parsed gin file, in source order, with their locations.

use crate::error::Location;
use crate::value::Value;

/// One gin statement. Block bindings are flattened as gin's parser does: a
/// [`StatementKind::Block`] declaration followed by one [`StatementKind::Binding`] per
/// body line.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// What the statement says.
    pub kind: StatementKind,
    /// Where it starts.
    pub location: Location,
}

/// The kinds of gin statement.
#[derive(Debug, Clone, PartialEq)]
pub enum StatementKind {
    /// `scope/…/selector.param = value`.
    Binding {
        /// Scopes joined by `/`; empty when unscoped.
        scope: String,
        /// The configurable's (partial) selector.
        selector: String,
        /// The parameter name.
        param: String,
        /// The bound value.
        value: Value,
    },
    /// `scope/…/NAME = value`: a key without `.` defines a macro.
    Macro {
        /// Scopes joined by `/`; empty when unscoped.
        scope: String,
        /// The macro name.
        name: String,
        /// The macro's value.
        value: Value,
    },
    /// `scope/selector:` opening a block; its bindings follow as separate statements.
    Block {
        /// Scopes joined by `/`; empty when unscoped.
        scope: String,
        /// The configurable's (partial) selector.
        selector: String,
    },
    /// `import a.b [as c]` or `from a import b [as c]`.
    Import {
        /// The full dotted module path (`a.b` for `from a import b`).
        module: String,
        /// Whether it was written with `from`.
        is_from: bool,
        /// The `as` name, if any.
        alias: Option<String>,
    },
    /// `include 'path'`.
    Include {
        /// The path as written.
        path: String,
    },
}

impl StatementKind {
    /// Whether this is `from __gin__ import dynamic_registration`.
    pub fn is_dynamic_registration(&self) -> bool {
        matches!(self, StatementKind::Import { module, is_from: true, .. }
            if module == "__gin__.dynamic_registration")
    }
}

/// The name an import binds in its file (gin's `ImportStatement.bound_name`) and the
/// dotted path that name stands for.
pub(crate) fn import_binding(module: &str, is_from: bool, alias: Option<&str>) -> (String, String) {
    let parts: Vec<&str> = module.split('.').collect();
    match (alias, is_from) {
        (Some(alias), _) => (alias.to_string(), module.to_string()),
        (None, true) => (
            parts.last().copied().unwrap_or_default().to_string(),
            module.to_string(),
        ),
        (None, false) => {
            let first = parts.first().copied().unwrap_or_default().to_string();
            (first.clone(), first)
        }
    }
}

/// An import recorded from a config file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Import {
    /// The dotted module path.
    pub module: String,
    /// Written as `from … import …`.
    pub is_from: bool,
    /// The `as` name.
    pub alias: Option<String>,
}

impl Import {
    /// gin's spelling of the statement.
    pub fn format(&self) -> String {
        let mut out = if self.is_from {
            match self.module.rsplit_once('.') {
                Some((from, name)) => format!("from {from} import {name}"),
                None => format!("import {}", self.module),
            }
        } else {
            format!("import {}", self.module)
        };
        if let Some(alias) = &self.alias {
            out.push_str(&format!(" as {alias}"));
        }
        out
    }

    /// Whether this is `from __gin__ import dynamic_registration`.
    pub fn is_dynamic_registration(&self) -> bool {
        self.is_from && self.module == "__gin__.dynamic_registration"
    }
}
