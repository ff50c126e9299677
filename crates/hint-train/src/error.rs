//! The errors of hint-train.

use std::path::PathBuf;

use thiserror::Error;

/// Why training, evaluation or a checkpoint operation failed.
#[derive(Debug, Error)]
pub enum TrainError {
    /// The model directory cannot be used.
    #[error(transparent)]
    ModelDir(#[from] crate::model_dir::ModelDirError),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A checkpoint is unreadable or does not fit the model.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint folder.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The loss became NaN or infinite; the last good checkpoint is kept.
    #[error("the loss is {loss} at step {step}: training stopped; the last good checkpoint is kept (lower the learning rate, or check the data of this step)")]
    NonFiniteLoss {
        /// The step whose loss was not finite.
        step: u64,
        /// The value.
        loss: f64,
    },
    /// The optimizer refused.
    #[error(transparent)]
    Optimizer(#[from] hint_optim::OptimError),
    /// The model refused.
    #[error(transparent)]
    Model(#[from] hint_model::ModelError),
    /// The data pipeline failed.
    #[error("data: {0}")]
    Data(String),
    /// libtorch failed.
    #[error("{context}: {source}")]
    Torch {
        /// What was being done.
        context: String,
        /// The libtorch error.
        source: tch::TchError,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

pub(crate) fn io_error(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
    let path = path.into();
    move |source| TrainError::Io { path, source }
}
