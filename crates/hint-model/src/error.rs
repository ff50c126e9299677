//! The errors of hint-model.

use std::path::PathBuf;

use thiserror::Error;

impl From<hint_fs::FsError> for ModelError {
    fn from(e: hint_fs::FsError) -> Self {
        Self::Io {
            path: e.path,
            source: e.source,
        }
    }
}

/// Why a model could not be built, loaded, saved or run.
#[derive(Debug, Error)]
pub enum ModelError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A `config.json` (or index file) is malformed.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        message: String,
    },
    /// A checkpoint directory has no weights file we can read.
    #[error("{dir}: no model.safetensors or model.safetensors.index.json (pytorch_model.bin files must be converted to safetensors first)")]
    NoWeights {
        /// The directory.
        dir: PathBuf,
    },
    /// Variables of the model that no checkpoint file provides.
    #[error("{dir}: the checkpoint lacks {} parameter(s) of the model: {}", .names.len(), .names.join(", "))]
    MissingWeights {
        /// The checkpoint directory.
        dir: PathBuf,
        /// The missing names.
        names: Vec<String>,
    },
    /// A rule of an assignment map that cannot be used.
    #[error("assignment map rule {index} (`{pattern}`): {message}")]
    AssignmentRule {
        /// Its position in the map, from 0.
        index: usize,
        /// Its pattern.
        pattern: String,
        /// What is wrong.
        message: String,
    },
    /// A checkpoint tensor whose shape differs from the model's variable.
    #[error("{file}: `{name}` has shape {found:?} but the model expects {expected:?}")]
    ShapeMismatch {
        /// The file holding the tensor.
        file: PathBuf,
        /// The tensor name.
        name: String,
        /// Shape in the file.
        found: Vec<i64>,
        /// Shape of the variable.
        expected: Vec<i64>,
    },
    /// A generation setting that cannot work.
    #[error("invalid generation setting: {0}")]
    Generation(String),
    /// libtorch reported an error.
    #[error("{context}: {source}")]
    Torch {
        /// What was being done.
        context: String,
        /// The libtorch error.
        source: tch::TchError,
    },
}
