//! hint-train: the training loop, checkpoints and evaluation that tie hint-config,
//! hint-data, hint-model and hint-optim together, as t5x's `train`, `eval` and `infer` do.
//!
//! - [`ModelDir`]: where a run writes, and the rule that it never writes into a folder
//!   that belongs to something else.
//! - [`CheckpointManager`]: atomic checkpoints, the newest K kept.
//! - [`Trainer`]: the loop, with exact resume.
//! - [`tensorboard`]: the run's scalars as TensorBoard event files (`MODEL_DIR/tensorboard`).
//! - [`data`]: the `hint.data.*` configurables that decide a run's tasks and vocabulary.
//! - [`experiment`]: arms × seeds trained and evaluated alike, one results table.
//! - [`run`]: a whole run from gin (train, evaluate, infer).

mod checkpoint;
pub mod data;
mod error;
pub mod eval;
pub mod experiment;
mod metrics;
mod model_dir;
pub mod plot;
pub mod run;
pub mod tensorboard;
mod trainer;

pub use checkpoint::{CheckpointInfo, CheckpointManager, TRAIN_STATE_FILE};
pub use error::{Result, TrainError};
pub use metrics::{read_metrics, truncate_after, MetricsLine, MetricsWriter, StepMetrics};
pub use model_dir::{ModelDir, ModelDirError};
pub use trainer::{
    load_parameters, save_parameters, BatchSource, ComputeDtype, NoHooks, TrainBatch, TrainConfig,
    TrainHooks, TrainOutcome, TrainState, Trainer,
};
