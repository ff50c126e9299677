//! A JSON array of objects, read one element at a time.
//!
//! A small byte scanner finds each element's extent (tracking nesting, strings and escapes),
//! and only that element is parsed, so memory stays at one element however large the file.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

use super::{json_object_to_example, Record};
use crate::error::{DataError, Position};

/// Streams the elements of a top-level JSON array. A malformed element is an error for that
/// element; a broken array structure (missing `[`, `,` or `]`) ends the file with an error.
#[derive(Debug)]
pub struct JsonArrayReader {
    reader: BufReader<File>,
    path: Arc<Path>,
    line: u64,
    index: u64,
    started: bool,
    done: bool,
    element: Vec<u8>,
}

impl JsonArrayReader {
    /// Opens `path`.
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        Ok(Self {
            reader: BufReader::with_capacity(1 << 20, file),
            path: Arc::from(path),
            line: 1,
            index: 0,
            started: false,
            done: false,
            element: Vec::new(),
        })
    }

    fn peek(&mut self) -> Result<Option<u8>, DataError> {
        let buf = self
            .reader
            .fill_buf()
            .map_err(|e| DataError::io(self.path.to_path_buf(), e))?;
        Ok(buf.first().copied())
    }

    fn bump(&mut self) {
        self.reader.consume(1);
    }

    fn skip_whitespace(&mut self) -> Result<Option<u8>, DataError> {
        while let Some(b) = self.peek()? {
            if !b.is_ascii_whitespace() {
                return Ok(Some(b));
            }
            if b == b'\n' {
                self.line += 1;
            }
            self.bump();
        }
        Ok(None)
    }

    fn structure_error(&mut self, message: impl Into<String>) -> DataError {
        self.done = true;
        DataError::Record {
            path: self.path.to_path_buf(),
            position: Position::Line(self.line),
            field: None,
            message: message.into(),
        }
    }

    /// Copies the next element's bytes into `self.element`, stopping after it.
    fn scan_element(&mut self) -> Result<(), DataError> {
        self.element.clear();
        let mut depth = 0usize;
        let mut in_string = false;
        let mut escaped = false;
        loop {
            let buf = self
                .reader
                .fill_buf()
                .map_err(|e| DataError::io(self.path.to_path_buf(), e))?;
            if buf.is_empty() {
                return Err(self.structure_error("unexpected end of file inside an element"));
            }
            let mut used = 0;
            let mut finished = false;
            for &b in buf {
                if depth == 0 && !in_string && (b == b',' || b == b']') {
                    // A scalar element ends before the delimiter, which stays unread.
                    finished = true;
                    break;
                }
                used += 1;
                if b == b'\n' {
                    self.line += 1;
                }
                if in_string {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_string = false;
                    }
                    continue;
                }
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            finished = true;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            self.element.extend_from_slice(&buf[..used]);
            self.reader.consume(used);
            if finished {
                return Ok(());
            }
        }
    }

    fn next_element(&mut self) -> Result<Option<Record>, DataError> {
        if !self.started {
            self.started = true;
            match self.skip_whitespace()? {
                Some(b'[') => self.bump(),
                _ => return Err(self.structure_error("expected `[` at the start of a JSON array")),
            }
            if self.skip_whitespace()? == Some(b']') {
                self.done = true;
                return Ok(None);
            }
        } else {
            match self.skip_whitespace()? {
                Some(b',') => self.bump(),
                Some(b']') => {
                    self.done = true;
                    return Ok(None);
                }
                _ => return Err(self.structure_error("expected `,` or `]` after an element")),
            }
        }
        self.skip_whitespace()?;
        let position = Position::Element {
            index: self.index,
            line: self.line,
        };
        self.index += 1;
        self.scan_element()?;
        let value: serde_json::Value =
            serde_json::from_slice(&self.element).map_err(|e| DataError::Record {
                path: self.path.to_path_buf(),
                position,
                field: None,
                message: format!("malformed JSON: {e}"),
            })?;
        let example = json_object_to_example(value, &self.path, position)?;
        Ok(Some(Record {
            example,
            path: Some(Arc::clone(&self.path)),
            position,
        }))
    }
}

impl Iterator for JsonArrayReader {
    type Item = Result<Record, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        self.next_element().transpose()
    }
}
