//! Line-by-line reading shared by the JSON Lines and plain-text readers: 1-based line
//! numbers, blank lines skipped, invalid UTF-8 reported for its line only.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::error::{DataError, Position};

/// The non-blank lines of a file.
#[derive(Debug)]
pub(super) struct Lines {
    reader: BufReader<File>,
    line: u64,
    buffer: String,
    done: bool,
}

impl Lines {
    pub(super) fn open(path: &Path) -> Result<Self, DataError> {
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        Ok(Self {
            reader: BufReader::with_capacity(1 << 20, file),
            line: 0,
            buffer: String::new(),
            done: false,
        })
    }

    /// The next non-blank line without its line ending, with its number. An error names
    /// the line; invalid UTF-8 lets reading continue, any other I/O error ends the file.
    pub(super) fn next_line(
        &mut self,
        path: &Path,
        field: Option<&str>,
    ) -> Option<Result<(u64, &str), DataError>> {
        while !self.done {
            self.buffer.clear();
            match self.reader.read_line(&mut self.buffer) {
                Ok(0) => self.done = true,
                Ok(_) => {
                    self.line += 1;
                    if self.buffer.trim().is_empty() {
                        continue;
                    }
                    let text = self.buffer.trim_end_matches(['\n', '\r']);
                    return Some(Ok((self.line, text)));
                }
                Err(e) => {
                    self.line += 1;
                    if e.kind() != std::io::ErrorKind::InvalidData {
                        self.done = true;
                        return Some(Err(DataError::io(path.to_path_buf(), e)));
                    }
                    return Some(Err(DataError::Record {
                        path: path.to_path_buf(),
                        position: Position::Line(self.line),
                        field: field.map(str::to_string),
                        message: format!("not UTF-8: {e}"),
                    }));
                }
            }
        }
        None
    }
}
