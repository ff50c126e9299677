//! Reading gin files: `include` resolution through search paths (gin's lookup
//! prefixes, t5x's `--gin_search_paths`), include-cycle detection, and flattening of
//! included statements in place.

use std::path::{Path, PathBuf};

use crate::ast::{Statement, StatementKind};
use crate::dynamic;
use crate::error::{ConfigError, Location};
use crate::parser::parse_str;

/// Finds `name`: an absolute path as is; otherwise relative to the working directory,
/// then under each search path in order. The first existing file wins.
pub fn resolve_path(name: &str, search_paths: &[PathBuf]) -> Result<PathBuf, Vec<PathBuf>> {
    let path = Path::new(name);
    let candidates: Vec<PathBuf> = if path.is_absolute() {
        vec![path.to_path_buf()]
    } else {
        std::iter::once(path.to_path_buf())
            .chain(search_paths.iter().map(|p| p.join(path)))
            .collect()
    };
    match candidates.iter().find(|c| c.is_file()) {
        Some(found) => Ok(found.clone()),
        None => Err(candidates),
    }
}

/// Loads sources into one flat statement list, includes expanded in place.
pub(crate) struct Loader<'p> {
    search_paths: &'p [PathBuf],
    /// The files being read, outermost first (canonical path, name as shown).
    stack: Vec<(PathBuf, String)>,
}

impl<'p> Loader<'p> {
    pub(crate) fn new(search_paths: &'p [PathBuf]) -> Self {
        Self {
            search_paths,
            stack: Vec::new(),
        }
    }

    pub(crate) fn load_file(
        &mut self,
        name: &str,
        at: Option<&Location>,
        out: &mut Vec<Statement>,
    ) -> Result<(), ConfigError> {
        let path = resolve_path(name, self.search_paths).map_err(|tried| {
            ConfigError::IncludeNotFound {
                name: name.to_string(),
                tried,
                at: at.cloned(),
            }
        })?;
        let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        let shown = path.display().to_string();
        if self.stack.iter().any(|(p, _)| *p == canonical) {
            let mut chain: Vec<String> = self.stack.iter().map(|(_, n)| n.clone()).collect();
            chain.push(shown);
            return Err(ConfigError::IncludeCycle { chain });
        }
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io {
            path: path.clone(),
            source,
        })?;
        self.stack.push((canonical, shown.clone()));
        let result = self.load_source(&shown, &text, out);
        self.stack.pop();
        result
    }

    pub(crate) fn load_source(
        &mut self,
        name: &str,
        text: &str,
        out: &mut Vec<Statement>,
    ) -> Result<(), ConfigError> {
        let statements = dynamic::expand(parse_str(text, name)?)?;
        for statement in statements {
            match &statement.kind {
                StatementKind::Include { path } => {
                    self.load_file(path, Some(&statement.location), out)?
                }
                _ => out.push(statement),
            }
        }
        Ok(())
    }
}
