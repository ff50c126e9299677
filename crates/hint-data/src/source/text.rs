//! Plain text, one example per non-empty line (pretraining corpora).

use std::path::Path;
use std::sync::Arc;

use super::lines::Lines;
use super::Record;
use crate::error::{DataError, Position};
use crate::example::{Example, FeatureValue};

/// Streams the non-empty lines of a text file as `{field: line}`.
#[derive(Debug)]
pub struct TextLinesReader {
    lines: Lines,
    path: Arc<Path>,
    field: String,
}

impl TextLinesReader {
    /// Opens `path`; lines go to `field`.
    pub fn open(path: &Path, field: &str) -> Result<Self, DataError> {
        Ok(Self {
            lines: Lines::open(path)?,
            path: Arc::from(path),
            field: field.to_string(),
        })
    }
}

impl Iterator for TextLinesReader {
    type Item = Result<Record, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (line, text) = match self.lines.next_line(&self.path, Some(&self.field))? {
            Ok(found) => found,
            Err(e) => return Some(Err(e)),
        };
        let mut example = Example::new();
        example.insert(self.field.clone(), FeatureValue::Text(text.to_string()));
        Some(Ok(Record {
            example,
            path: Some(Arc::clone(&self.path)),
            position: Position::Line(line),
        }))
    }
}
