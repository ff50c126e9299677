//! JSON Lines: one object per line, streamed line by line.

use std::path::Path;
use std::sync::Arc;

use super::lines::Lines;
use super::{json_object_to_example, Record};
use crate::error::{DataError, Position};

/// Streams a JSON Lines file; blank lines are skipped, a malformed line is an error for that
/// line only (reading continues with the next one).
#[derive(Debug)]
pub struct JsonLinesReader {
    lines: Lines,
    path: Arc<Path>,
}

impl JsonLinesReader {
    /// Opens `path`.
    pub fn open(path: &Path) -> Result<Self, DataError> {
        Ok(Self {
            lines: Lines::open(path)?,
            path: Arc::from(path),
        })
    }
}

impl Iterator for JsonLinesReader {
    type Item = Result<Record, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (line, text) = match self.lines.next_line(&self.path, None)? {
            Ok(found) => found,
            Err(e) => return Some(Err(e)),
        };
        let position = Position::Line(line);
        let parsed =
            serde_json::from_str::<serde_json::Value>(text.trim()).map_err(|e| DataError::Record {
                path: self.path.to_path_buf(),
                position,
                field: None,
                message: format!("malformed JSON: {e}"),
            });
        Some(
            parsed
                .and_then(|v| json_object_to_example(v, &self.path, position))
                .map(|example| Record {
                    example,
                    path: Some(Arc::clone(&self.path)),
                    position,
                }),
        )
    }
}
