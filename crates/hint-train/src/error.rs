//! The errors of hint-train: the errors of the crates below carried whole (`#[from]`), and
//! what only a run can get wrong.

use std::path::PathBuf;

use hint_config::Location;
use thiserror::Error;

/// Why a run, an evaluation, an experiment or a checkpoint operation failed.
#[derive(Debug, Error)]
pub enum TrainError {
    /// The gin configuration is malformed or names something unknown (with file:line:col).
    #[error(transparent)]
    Config(#[from] hint_config::ConfigError),
    /// A setting parses but cannot work; names the gin binding and, when a file bound it,
    /// where.
    #[error("{}{binding}: {message}", at.as_ref().map(|l| format!("{l}: ")).unwrap_or_default())]
    InvalidSetting {
        /// The binding, e.g. `hint.train.Run.device`.
        binding: String,
        /// Where it was bound, when a file or flag bound it.
        at: Option<Location>,
        /// What is wrong and what to do.
        message: String,
    },
    /// The data pipeline failed (the file, line and field are in the error).
    #[error(transparent)]
    Data(#[from] hint_data::DataError),
    /// The model refused.
    #[error(transparent)]
    Model(#[from] hint_model::ModelError),
    /// The optimizer refused.
    #[error(transparent)]
    Optimizer(#[from] hint_optim::OptimError),
    /// The model directory cannot be used.
    #[error(transparent)]
    ModelDir(#[from] crate::model_dir::ModelDirError),
    /// A task's predictions could not be scored.
    #[error("task `{task}`: {source}")]
    Metric {
        /// The task.
        task: String,
        /// Why.
        source: hint_data::metrics::MetricError,
    },
    /// One evaluation set failed.
    #[error("evaluation set `{label}`: {source}")]
    EvalSet {
        /// The set's label.
        label: String,
        /// Why.
        source: Box<TrainError>,
    },
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
    /// A file a run or experiment wrote earlier cannot be read back.
    #[error("{path}: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A finite training mixture ran out of batches.
    #[error("`{mixture}` ran out of training batches")]
    OutOfData {
        /// The task or mixture.
        mixture: String,
    },
    /// The loss became NaN or infinite; the last good checkpoint is kept.
    #[error("the loss is {loss} at step {step}: training stopped; the last good checkpoint is kept (lower the learning rate, or check the data of this step)")]
    NonFiniteLoss {
        /// The step whose loss was not finite.
        step: u64,
        /// The value.
        loss: f64,
    },
    /// A plot could not be drawn.
    #[error("drawing {path}: {message}")]
    Plot {
        /// The image file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// SIGINT or SIGTERM (through [`crate::eval::EvalMonitor::should_stop`]) stopped an
    /// evaluation between two batches; nothing of it was written.
    #[error("interrupted while evaluating `{task}`; no results were written")]
    Interrupted {
        /// The task being evaluated.
        task: String,
    },
    /// A collective or the process group failed (a rank died, a rendezvous timed out,
    /// ranks disagree).
    #[error(transparent)]
    Distributed(#[from] hint_dist::DistError),
    /// The ranks' parameters differ, which identical updates cannot cause.
    #[error("the replicas diverged at step {step}: rank {rank}'s parameter checksum is {checksum}, rank 0's {rank0}; the last checkpoint is kept")]
    ReplicasDiverged {
        /// The step checked.
        step: u64,
        /// The first rank that differs.
        rank: usize,
        /// Its checksum.
        checksum: f64,
        /// Rank 0's.
        rank0: f64,
    },
    /// libtorch failed.
    #[error("{context}: {source}")]
    Torch {
        /// What was being done.
        context: String,
        /// The libtorch error.
        source: tch::TchError,
    },
}

impl TrainError {
    /// An [`TrainError::InvalidSetting`] of `binding` with no location.
    pub fn invalid(binding: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidSetting {
            binding: binding.into(),
            at: None,
            message: message.into(),
        }
    }
}

impl From<hint_fs::FsError> for TrainError {
    fn from(e: hint_fs::FsError) -> Self {
        Self::Io {
            path: e.path,
            source: e.source,
        }
    }
}

impl From<hint_data::VocabularyError> for TrainError {
    fn from(e: hint_data::VocabularyError) -> Self {
        Self::Data(e.into())
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

pub(crate) fn io_error(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
    let path = path.into();
    move |source| TrainError::Io { path, source }
}
