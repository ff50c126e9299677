//! Plain text, one example per non-empty line (pretraining corpora).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

use super::Record;
use crate::error::{DataError, Position};
use crate::example::{Example, Value};

/// Streams the non-empty lines of a text file as `{field: line}`.
#[derive(Debug)]
pub struct TextLinesReader {
    reader: BufReader<File>,
    path: Arc<Path>,
    field: String,
    line: u64,
    buffer: String,
    done: bool,
}

impl TextLinesReader {
    /// Opens `path`; lines go to `field`.
    pub fn open(path: &Path, field: &str) -> Result<Self, DataError> {
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        Ok(Self {
            reader: BufReader::with_capacity(1 << 20, file),
            path: Arc::from(path),
            field: field.to_string(),
            line: 0,
            buffer: String::new(),
            done: false,
        })
    }
}

impl Iterator for TextLinesReader {
    type Item = Result<Record, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            self.buffer.clear();
            match self.reader.read_line(&mut self.buffer) {
                Ok(0) => self.done = true,
                Ok(_) => {
                    self.line += 1;
                    let text = self.buffer.trim_end_matches(['\n', '\r']);
                    if text.trim().is_empty() {
                        continue;
                    }
                    let mut example = Example::new();
                    example.insert(self.field.clone(), Value::Text(text.to_string()));
                    return Some(Ok(Record {
                        example,
                        path: Some(Arc::clone(&self.path)),
                        position: Position::Line(self.line),
                    }));
                }
                Err(e) => {
                    self.line += 1;
                    if e.kind() != std::io::ErrorKind::InvalidData {
                        self.done = true;
                        return Some(Err(DataError::io(self.path.to_path_buf(), e)));
                    }
                    return Some(Err(DataError::Record {
                        path: self.path.to_path_buf(),
                        position: Position::Line(self.line),
                        field: Some(self.field.clone()),
                        message: format!("not UTF-8: {e}"),
                    }));
                }
            }
        }
        None
    }
}
