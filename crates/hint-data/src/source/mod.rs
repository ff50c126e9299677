//! Data sources: where a task's raw examples come from.
//!
//! A [`Source`] knows its splits and opens a split as a stream of [`Record`]s (an example plus
//! where it came from, so that later errors can name the file and line). Readers stream: a
//! 10 GB file is never held in memory.
//!
//! * [`FileSource`] reads files of one [`Format`]: JSON Lines, JSON arrays, Parquet (P3's
//!   layout included), Arrow IPC (file or stream format, so Hugging Face `save_to_disk`
//!   `.arrow` files too) and plain text lines.
//! * [`MemorySource`] serves examples held in memory (generated suites, tests).
//! * [`FnSource`] wraps a closure that opens a split (custom readers such as Super-NI or
//!   BIG-bench checkouts).
//!
//! Feature values (JSON and Arrow alike): strings → [`FeatureValue::Text`], integers and booleans →
//! [`FeatureValue::Int`], floats → [`FeatureValue::Float`], lists of strings → [`FeatureValue::Texts`], lists of
//! non-negative integers → [`FeatureValue::Tokens`]; nulls leave the field out; anything else is an
//! error naming the file, position and field.

pub(crate) mod columnar;
mod json_array;
mod jsonl;
mod lines;
mod text;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use columnar::{ArrowReader, ParquetReader};
pub use json_array::JsonArrayReader;
pub use jsonl::JsonLinesReader;
pub use text::TextLinesReader;

use crate::error::{DataError, Position};
use crate::example::{Example, FeatureValue};
use crate::rng::SplitMix64;

/// One example read from a source, with its origin.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The example.
    pub example: Example,
    /// The file it came from (`None` for in-memory sources).
    pub path: Option<Arc<Path>>,
    /// Its line, row or element in that file (or its index in memory).
    pub position: Position,
}

impl Record {
    /// An error about `field` of this record, naming its file and position.
    pub fn field_error(&self, field: &str, message: impl Into<String>) -> DataError {
        DataError::Record {
            path: self
                .path
                .as_deref()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            position: self.position,
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    /// Describes the origin for error messages: `data.jsonl line 3` or `row 3`.
    pub fn origin(&self) -> String {
        match &self.path {
            Some(path) => format!("{} {}", path.display(), self.position),
            None => self.position.to_string(),
        }
    }
}

/// A stream of records; errors for single records may be followed by further records.
pub type RecordStream = Box<dyn Iterator<Item = Result<Record, DataError>> + Send>;

/// Which part of the data one worker reads: shard `index` of `num_shards`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// 0-based shard index.
    pub index: usize,
    /// Number of shards.
    pub num_shards: usize,
}

impl Default for ShardInfo {
    fn default() -> Self {
        Self {
            index: 0,
            num_shards: 1,
        }
    }
}

impl ShardInfo {
    /// Checks `index < num_shards`.
    pub fn validate(&self) -> Result<(), DataError> {
        if self.num_shards == 0 || self.index >= self.num_shards {
            return Err(DataError::Config(format!(
                "shard {} of {} does not exist",
                self.index, self.num_shards
            )));
        }
        Ok(())
    }

    /// Whether the `i`-th item belongs to this shard.
    pub fn contains(&self, i: u64) -> bool {
        i % self.num_shards as u64 == self.index as u64
    }
}

/// How a split is opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// The shard to read.
    pub shard: ShardInfo,
    /// Shuffle the order of files with this seed (seqio's `shuffle_files`).
    pub shuffle_files_seed: Option<u64>,
}

/// A provider of raw examples per split.
pub trait Source: Send + Sync {
    /// The split names.
    fn splits(&self) -> Vec<String>;

    /// The number of examples in a split, when known without reading it (used by
    /// example-proportional mixing when no cache statistics exist).
    fn num_input_examples(&self, _split: &str) -> Option<u64> {
        None
    }

    /// How many raw texts one record gathers (a corpus grouping 128 texts per example): the
    /// shuffle window, counted in records, is divided by it so that it holds about as many
    /// texts as for any other source.
    fn texts_per_record(&self) -> usize {
        1
    }

    /// Opens a split. Unknown splits are [`DataError::UnknownSplit`] (callers add the task).
    fn open(&self, split: &str, options: &OpenOptions) -> Result<RecordStream, DataError>;
}

/// The on-disk formats [`FileSource`] reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON object per line (`.jsonl`, `.json` with one object per line).
    JsonLines,
    /// One JSON array of objects, read element by element.
    JsonArray,
    /// Apache Parquet (P3, `datasets` Parquet exports, hint caches).
    Parquet,
    /// Arrow IPC, file (`ARROW1` magic) or stream format (Hugging Face `save_to_disk`).
    Arrow,
    /// Plain text; each non-empty line becomes `{field: line}`.
    TextLines {
        /// The feature the line is stored in (seqio's `TextLineDataSource` uses `text`).
        field: String,
    },
}

impl Format {
    /// Guesses the format from the file extension: `.jsonl`/`.ndjson`, `.json` (array),
    /// `.parquet`, `.arrow`/`.feather`/`.ipc`, `.txt` (lines in `text`).
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "jsonl" | "ndjson" => Self::JsonLines,
            "json" => Self::JsonArray,
            "parquet" => Self::Parquet,
            "arrow" | "feather" | "ipc" => Self::Arrow,
            "txt" => Self::TextLines {
                field: "text".into(),
            },
            _ => return None,
        })
    }

    /// Opens one file of this format as a record stream.
    pub fn open_file(&self, path: &Path) -> Result<RecordStream, DataError> {
        Ok(match self {
            Self::JsonLines => Box::new(JsonLinesReader::open(path)?),
            Self::JsonArray => Box::new(JsonArrayReader::open(path)?),
            Self::Parquet => Box::new(ParquetReader::open(path)?),
            Self::Arrow => Box::new(ArrowReader::open(path)?),
            Self::TextLines { field } => Box::new(TextLinesReader::open(path, field)?),
        })
    }
}

/// The kinds a required field may be checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// Any value.
    Any,
    /// [`FeatureValue::Text`].
    Text,
    /// [`FeatureValue::Texts`].
    Texts,
    /// [`FeatureValue::Tokens`].
    Tokens,
    /// [`FeatureValue::Int`].
    Int,
    /// [`FeatureValue::Float`] (or an integer).
    Float,
}

impl FieldKind {
    fn accepts(self, value: &FeatureValue) -> bool {
        matches!(
            (self, value),
            (Self::Any, _)
                | (Self::Text, FeatureValue::Text(_))
                | (Self::Texts, FeatureValue::Texts(_))
                | (Self::Tokens, FeatureValue::Tokens(_))
                | (Self::Int, FeatureValue::Int(_))
                | (Self::Float, FeatureValue::Float(_) | FeatureValue::Int(_))
        )
    }
}

/// The type of a value in words, for error messages.
pub(crate) fn kind_name(value: &FeatureValue) -> &'static str {
    match value {
        FeatureValue::Int(_) => "an integer",
        FeatureValue::Float(_) => "a float",
        FeatureValue::Text(_) => "text",
        FeatureValue::Texts(_) => "a list of texts",
        FeatureValue::Tokens(_) => "a list of token ids",
    }
}

/// Files per split, of one format or each of the format its extension says, with optional
/// checks of required fields at read time, so that a typo in the data is reported with its
/// file, line and field.
#[derive(Debug, Clone)]
pub struct FileSource {
    /// `None`: each file's own extension decides ([`FileSource::by_extension`]).
    format: Option<Format>,
    splits: Vec<(String, Vec<PathBuf>)>,
    required: Vec<(String, FieldKind)>,
    num_examples: Vec<(String, u64)>,
}

impl FileSource {
    /// A source without splits yet, every file read as `format`.
    pub fn new(format: Format) -> Self {
        Self {
            format: Some(format),
            ..Self::by_extension()
        }
    }

    /// A source without splits yet whose files are each read in the format of their
    /// extension ([`Format::from_path`]): a task may keep its train split in Parquet and
    /// its validation split in JSON Lines.
    pub fn by_extension() -> Self {
        Self {
            format: None,
            splits: Vec::new(),
            required: Vec::new(),
            num_examples: Vec::new(),
        }
    }

    /// Adds a split read from `files`, in order. A file name may contain `*` wildcards
    /// (`data/train-*.parquet`), expanded in sorted order when the split is opened.
    pub fn split(mut self, name: impl Into<String>, files: Vec<PathBuf>) -> Self {
        self.splits.push((name.into(), files));
        self
    }

    /// Requires `field` in every record, of `kind`.
    pub fn require(mut self, field: impl Into<String>, kind: FieldKind) -> Self {
        self.required.push((field.into(), kind));
        self
    }

    /// Declares the number of examples of a split (for example-proportional mixing).
    pub fn with_num_examples(mut self, split: impl Into<String>, n: u64) -> Self {
        self.num_examples.push((split.into(), n));
        self
    }

    /// The format `file` is read in.
    pub fn format_of(&self, file: &Path) -> Result<Format, DataError> {
        match &self.format {
            Some(format) => Ok(format.clone()),
            None => Format::from_path(file).ok_or_else(|| {
                DataError::io(
                    file,
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "cannot tell the format from the extension (.jsonl, .json, .parquet, .arrow, .txt); set the task's `format`",
                    ),
                )
            }),
        }
    }

    /// The files of a split, wildcards expanded.
    pub fn files(&self, split: &str) -> Result<Vec<PathBuf>, DataError> {
        let Some((_, patterns)) = self.splits.iter().find(|(s, _)| s == split) else {
            return Err(DataError::UnknownSplit {
                task: String::new(),
                split: split.into(),
                available: self.splits().join(", "),
            });
        };
        let mut files = Vec::new();
        for pattern in patterns {
            files.extend(expand_wildcards(pattern)?);
        }
        Ok(files)
    }
}

/// Expands `*` in the file name of `pattern` (not in folders) in sorted order.
fn expand_wildcards(pattern: &Path) -> Result<Vec<PathBuf>, DataError> {
    let Some(name) = pattern.file_name().and_then(|n| n.to_str()) else {
        return Ok(vec![pattern.to_path_buf()]);
    };
    if !name.contains('*') {
        return Ok(vec![pattern.to_path_buf()]);
    }
    let dir = pattern
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let regex = regex::Regex::new(&format!(
        "^{}$",
        name.split('*')
            .map(regex::escape)
            .collect::<Vec<_>>()
            .join(".*")
    ))
    .map_err(|e| DataError::Config(format!("bad file pattern {}: {e}", pattern.display())))?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .filter_map(|entry| entry.ok())
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|n| regex.is_match(n))
        })
        .map(|entry| entry.path())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(DataError::io(
            pattern,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no file matches"),
        ));
    }
    Ok(files)
}

impl Source for FileSource {
    fn splits(&self) -> Vec<String> {
        self.splits.iter().map(|(s, _)| s.clone()).collect()
    }

    fn num_input_examples(&self, split: &str) -> Option<u64> {
        if let Some((_, n)) = self.num_examples.iter().find(|(s, _)| s == split) {
            return Some(*n);
        }
        let files = self.files(split).ok()?;
        if files
            .iter()
            .all(|file| self.format_of(file).ok() == Some(Format::Parquet))
        {
            // Parquet footers hold row counts, so this costs one footer read per file.
            let mut total = 0;
            for file in files {
                total += ParquetReader::num_rows(&file).ok()?;
            }
            return Some(total);
        }
        None
    }

    fn open(&self, split: &str, options: &OpenOptions) -> Result<RecordStream, DataError> {
        options.shard.validate()?;
        let mut files = self.files(split)?;
        if let Some(seed) = options.shuffle_files_seed {
            SplitMix64::new(seed).shuffle(&mut files);
        }
        // Whole files per shard when there are enough of them (each worker reads only its
        // files); otherwise every worker reads everything and keeps every n-th record.
        let (files, record_shard) = if files.len() >= options.shard.num_shards {
            let files = files
                .into_iter()
                .enumerate()
                .filter(|(i, _)| options.shard.contains(*i as u64))
                .map(|(_, f)| f)
                .collect();
            (files, None)
        } else {
            (files, Some(options.shard))
        };
        let source = self.clone();
        let required = self.required.clone();
        let mut opened = files
            .into_iter()
            .map(move |file| source.format_of(&file)?.open_file(&file))
            .flat_map(|stream| -> RecordStream {
                match stream {
                    Ok(stream) => stream,
                    Err(err) => Box::new(std::iter::once(Err(err))),
                }
            });
        let mut index = 0u64;
        let stream = std::iter::from_fn(move || loop {
            let item = opened.next()?;
            let i = index;
            index += 1;
            if let Some(shard) = record_shard {
                if !shard.contains(i) {
                    continue;
                }
            }
            return Some(item.and_then(|record| check_required(record, &required)));
        });
        Ok(Box::new(stream))
    }
}

fn check_required(record: Record, required: &[(String, FieldKind)]) -> Result<Record, DataError> {
    for (field, kind) in required {
        let message = match record.example.get(field) {
            None => "missing".to_string(),
            Some(value) if !kind.accepts(value) => {
                format!("expected {kind:?}, found {}", kind_name(value))
            }
            Some(_) => continue,
        };
        return Err(record.field_error(field, message));
    }
    Ok(record)
}

/// Examples held in memory, per split.
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    splits: Vec<(String, Arc<Vec<Example>>)>,
}

impl MemorySource {
    /// A source without splits yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a split.
    pub fn split(mut self, name: impl Into<String>, examples: Vec<Example>) -> Self {
        self.splits.push((name.into(), Arc::new(examples)));
        self
    }
}

impl Source for MemorySource {
    fn splits(&self) -> Vec<String> {
        self.splits.iter().map(|(s, _)| s.clone()).collect()
    }

    fn num_input_examples(&self, split: &str) -> Option<u64> {
        self.splits
            .iter()
            .find(|(s, _)| s == split)
            .map(|(_, e)| e.len() as u64)
    }

    fn open(&self, split: &str, options: &OpenOptions) -> Result<RecordStream, DataError> {
        options.shard.validate()?;
        let Some((_, examples)) = self.splits.iter().find(|(s, _)| s == split) else {
            return Err(DataError::UnknownSplit {
                task: String::new(),
                split: split.into(),
                available: self.splits().join(", "),
            });
        };
        let examples = Arc::clone(examples);
        let shard = options.shard;
        // No files to shuffle: examples come in order (block shuffling happens downstream).
        Ok(Box::new(
            (0..examples.len())
                .filter(move |&i| shard.contains(i as u64))
                .map(move |i| {
                    Ok(Record {
                        example: examples[i].clone(),
                        path: None,
                        position: Position::Row(i as u64),
                    })
                }),
        ))
    }
}

/// The function type behind [`FnSource`].
pub type OpenFn = dyn Fn(&str, &OpenOptions) -> Result<RecordStream, DataError> + Send + Sync;

/// A source defined by a closure; for readers of whole checkouts (Super-NI, BIG-bench).
pub struct FnSource {
    splits: Vec<String>,
    num_examples: Vec<(String, u64)>,
    open: Box<OpenFn>,
}

impl std::fmt::Debug for FnSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnSource")
            .field("splits", &self.splits)
            .finish_non_exhaustive()
    }
}

impl FnSource {
    /// A source whose `splits` are opened by `open(split, options)`; the closure must honour
    /// `options.shard` (use [`ShardInfo::contains`] on the record index).
    pub fn new(
        splits: Vec<String>,
        open: impl Fn(&str, &OpenOptions) -> Result<RecordStream, DataError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            splits,
            num_examples: Vec::new(),
            open: Box::new(open),
        }
    }

    /// Declares the number of examples of a split.
    pub fn with_num_examples(mut self, split: impl Into<String>, n: u64) -> Self {
        self.num_examples.push((split.into(), n));
        self
    }
}

impl Source for FnSource {
    fn splits(&self) -> Vec<String> {
        self.splits.clone()
    }

    fn num_input_examples(&self, split: &str) -> Option<u64> {
        self.num_examples
            .iter()
            .find(|(s, _)| s == split)
            .map(|(_, n)| *n)
    }

    fn open(&self, split: &str, options: &OpenOptions) -> Result<RecordStream, DataError> {
        if !self.splits.iter().any(|s| s == split) {
            return Err(DataError::UnknownSplit {
                task: String::new(),
                split: split.into(),
                available: self.splits.join(", "),
            });
        }
        (self.open)(split, options)
    }
}

/// Drops records that fail with a record-level error when `skip` is on, warning about each
/// and counting them in `skipped`; file-level errors always pass through.
pub fn skip_bad_records(stream: RecordStream, skip: bool, skipped: Arc<AtomicU64>) -> RecordStream {
    if !skip {
        return stream;
    }
    Box::new(stream.filter(move |item| match item {
        Err(err) if err.is_record_error() => {
            tracing::warn!("skipping bad record: {err}");
            skipped.fetch_add(1, Ordering::Relaxed);
            false
        }
        _ => true,
    }))
}

/// Converts a JSON value to a [`FeatureValue`]; `Ok(None)` for null.
pub(crate) fn json_to_value(value: serde_json::Value) -> Result<Option<FeatureValue>, String> {
    use serde_json::Value as J;
    Ok(Some(match value {
        J::Null => return Ok(None),
        J::Bool(b) => FeatureValue::Int(i64::from(b)),
        J::Number(n) => match n.as_i64() {
            Some(i) => FeatureValue::Int(i),
            None => FeatureValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => FeatureValue::Text(s),
        J::Array(items) => {
            if items.iter().all(|v| v.is_string()) {
                FeatureValue::Texts(
                    items
                        .into_iter()
                        .map(|v| match v {
                            J::String(s) => s,
                            _ => String::new(),
                        })
                        .collect(),
                )
            } else {
                let mut tokens = Vec::with_capacity(items.len());
                for item in &items {
                    match item.as_u64().and_then(|i| u32::try_from(i).ok()) {
                        Some(t) => tokens.push(t),
                        None => {
                            return Err(format!(
                                "expected a list of texts or of token ids, found element {item}"
                            ))
                        }
                    }
                }
                FeatureValue::Tokens(tokens)
            }
        }
        J::Object(_) => return Err("nested objects are not supported".into()),
    }))
}

/// Converts a parsed JSON object into an example, naming the offending field on error.
pub(crate) fn json_object_to_example(
    value: serde_json::Value,
    path: &Path,
    position: Position,
) -> Result<Example, DataError> {
    let serde_json::Value::Object(map) = value else {
        return Err(DataError::Record {
            path: path.to_path_buf(),
            position,
            field: None,
            message: format!("expected a JSON object, found {}", json_kind(&value)),
        });
    };
    let mut example = Example::new();
    for (key, value) in map {
        match json_to_value(value) {
            Ok(Some(v)) => {
                example.insert(key, v);
            }
            Ok(None) => {}
            Err(message) => {
                return Err(DataError::Record {
                    path: path.to_path_buf(),
                    position,
                    field: Some(key),
                    message,
                })
            }
        }
    }
    Ok(example)
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;
