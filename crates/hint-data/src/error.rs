//! The one error type of hint-data's pipeline: every failure names what the user has to
//! look at — the file, the line (text formats) or row (columnar formats), and the field.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

use crate::vocabulary::VocabularyError;

/// Where a record sits in its file: a 1-based line for text formats, a 0-based row for
/// columnar ones, a 0-based element index for JSON arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// 1-based line number (JSON Lines, text lines, and the start line of a JSON array element).
    Line(u64),
    /// 0-based row index (Parquet, Arrow).
    Row(u64),
    /// 0-based element of a JSON array, with the 1-based line where it starts.
    Element {
        /// The element index.
        index: u64,
        /// The line where the element starts.
        line: u64,
    },
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line(line) => write!(f, "line {line}"),
            Self::Row(row) => write!(f, "row {row}"),
            Self::Element { index, line } => write!(f, "element {index} (line {line})"),
        }
    }
}

/// Everything that can go wrong while reading, preprocessing, converting or caching data.
#[derive(Debug, Error)]
pub enum DataError {
    /// A file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Caching was asked to stop (SIGINT/SIGTERM); what was being written is removed.
    #[error("interrupted while caching `{task}`; its partial cache is removed")]
    Interrupted {
        /// The task being cached.
        task: String,
    },
    /// Another process is writing the same cache folder.
    #[error(transparent)]
    InUse(#[from] hint_fs::LockError),
    /// A record is malformed, misses a field or has a field of the wrong type.
    #[error("{path} {position}{}: {message}", field_suffix(field))]
    Record {
        /// The file holding the record.
        path: PathBuf,
        /// Where in the file.
        position: Position,
        /// The field at fault, when one is.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// A whole file is unreadable as the declared format (bad Parquet footer, bad Arrow schema…).
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A preprocessor or converter found a missing or mistyped field in an example whose
    /// origin it does not know; the task pipeline wraps it in [`DataError::InTask`].
    #[error("field `{field}`: {message}")]
    Field {
        /// The field at fault.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// An error while processing one example of a task, with the task and the example's
    /// index in source order (its line or row when the source is a single file).
    #[error("task `{task}`, split `{split}`, {origin}: {source}")]
    InTask {
        /// The task.
        task: String,
        /// The split.
        split: String,
        /// Which example: `example N` or `<file> line N`.
        origin: String,
        /// The error.
        source: Box<DataError>,
    },
    /// A task or mixture name that is not registered.
    #[error("unknown task or mixture `{name}`{}", did_you_mean(suggestion))]
    UnknownTask {
        /// The name asked for.
        name: String,
        /// The closest registered name, when one is close.
        suggestion: Option<String>,
    },
    /// A name registered twice.
    #[error("task or mixture `{0}` is already registered")]
    Duplicate(String),
    /// A split the source does not have.
    #[error("task `{task}` has no split `{split}` (it has: {available})")]
    UnknownSplit {
        /// The task.
        task: String,
        /// The split asked for.
        split: String,
        /// The splits it has, comma-separated.
        available: String,
    },
    /// A configuration that cannot work (zero lengths, bad rates, bad shard index…).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A gin configurable could not be read (a wrong type, an unknown parameter…).
    #[error("{selector}: {source}")]
    Gin {
        /// The configurable, e.g. `hint.data.SuperNI`.
        selector: &'static str,
        /// What hint-config reported (boxed: it is large, and every data result carries
        /// this type).
        source: Box<hint_config::ConfigError>,
    },
    /// The vocabulary failed.
    #[error(transparent)]
    Vocabulary(#[from] VocabularyError),
    /// A cache that is incomplete or does not match the task.
    #[error("cache {dir}: {message}")]
    Cache {
        /// The task's cache folder.
        dir: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A task names a metric no evaluator computes (seqio's `metric_fns`).
    #[error("task `{task}` declares the unknown metric `{metric}` (known: {known})")]
    UnknownMetric {
        /// The task.
        task: String,
        /// The metric name.
        metric: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// A cache written for another task definition or vocabulary than the run's.
    #[error("cache {dir}: its features do not match task `{task}`: cached fingerprint {cached}, the task's {expected} ({difference}); re-run `hint cache-tasks`")]
    StaleCache {
        /// The task's cache folder.
        dir: PathBuf,
        /// The task.
        task: String,
        /// The fingerprint recorded in the cache.
        cached: String,
        /// The fingerprint of the run's task.
        expected: String,
        /// Which parts differ (output features, vocabulary, preprocessors).
        difference: String,
    },
    /// A saved iterator state that does not fit the iterator it is restored into.
    #[error("cannot restore iterator state: {0}")]
    State(String),
}

fn field_suffix(field: &Option<String>) -> String {
    field
        .as_ref()
        .map(|f| format!(", field `{f}`"))
        .unwrap_or_default()
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

impl DataError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// A missing or mistyped field in an example.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Field {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The field named by this error, looking through [`DataError::InTask`].
    pub fn field_name(&self) -> Option<&str> {
        match self {
            Self::Record { field, .. } => field.as_deref(),
            Self::Field { field, .. } => Some(field),
            Self::InTask { source, .. } => source.field_name(),
            _ => None,
        }
    }

    /// Whether this error concerns one record only, so that `skip_bad_records` may skip it.
    pub fn is_record_error(&self) -> bool {
        match self {
            Self::Record { .. } | Self::Field { .. } => true,
            Self::InTask { source, .. } => source.is_record_error(),
            _ => false,
        }
    }
}

/// Levenshtein distance, for "did you mean" suggestions.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// The closest of `candidates` to `name`, if it is close enough to be a plausible typo
/// (or `name` is a prefix/suffix of it).
pub(crate) fn suggest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let limit = (name.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= limit || (name.len() >= 3 && c.contains(name)))
        .min_by_key(|(d, c)| (*d, c.len()))
        .map(|(_, c)| c.to_string())
}

impl From<hint_fs::FsError> for DataError {
    fn from(e: hint_fs::FsError) -> Self {
        Self::io(e.path, e.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_errors_name_file_position_and_field() {
        let err = DataError::Record {
            path: "data/train.jsonl".into(),
            position: Position::Line(3),
            field: Some("inputs".into()),
            message: "expected text, found a number".into(),
        };
        assert_eq!(
            err.to_string(),
            "data/train.jsonl line 3, field `inputs`: expected text, found a number"
        );
        assert!(err.is_record_error());
        assert_eq!(err.field_name(), Some("inputs"));
    }

    #[test]
    fn suggestions_pick_the_closest_name() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        let names = [
            "natural_instructions",
            "natural_instructions_def",
            "c4_pretrain",
        ];
        assert_eq!(
            suggest("natural_instruction", names).as_deref(),
            Some("natural_instructions")
        );
        assert_eq!(suggest("zzzzzzzzzzzz", names), None);
    }
}
