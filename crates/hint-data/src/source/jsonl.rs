//! JSON Lines: one object per line, streamed line by line.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

use super::{json_object_to_example, Record};
use crate::error::{DataError, Position};

/// Streams a JSON Lines file; blank lines are skipped, a malformed line is an error for that
/// line only (reading continues with the next one).
#[derive(Debug)]
pub struct JsonLinesReader {
    reader: BufReader<File>,
    path: Arc<Path>,
    line: u64,
    buffer: String,
    done: bool,
}

impl JsonLinesReader {
    /// Opens `path`.
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        Ok(Self {
            reader: BufReader::with_capacity(1 << 20, file),
            path: Arc::from(path),
            line: 0,
            buffer: String::new(),
            done: false,
        })
    }
}

impl Iterator for JsonLinesReader {
    type Item = Result<Record, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            self.buffer.clear();
            match self.reader.read_line(&mut self.buffer) {
                Ok(0) => self.done = true,
                Ok(_) => {
                    self.line += 1;
                    let text = self.buffer.trim();
                    if text.is_empty() {
                        continue;
                    }
                    let position = Position::Line(self.line);
                    let parsed = serde_json::from_str::<serde_json::Value>(text).map_err(|e| {
                        DataError::Record {
                            path: self.path.to_path_buf(),
                            position,
                            field: None,
                            message: format!("malformed JSON: {e}"),
                        }
                    });
                    return Some(
                        parsed
                            .and_then(|v| json_object_to_example(v, &self.path, position))
                            .map(|example| Record {
                                example,
                                path: Some(Arc::clone(&self.path)),
                                position,
                            }),
                    );
                }
                Err(e) => {
                    // Invalid UTF-8 is a record error; anything else ends the file.
                    self.line += 1;
                    if e.kind() != std::io::ErrorKind::InvalidData {
                        self.done = true;
                        return Some(Err(DataError::io(self.path.to_path_buf(), e)));
                    }
                    return Some(Err(DataError::Record {
                        path: self.path.to_path_buf(),
                        position: Position::Line(self.line),
                        field: None,
                        message: format!("not UTF-8: {e}"),
                    }));
                }
            }
        }
        None
    }
}
