//! hint-train: the training loop, checkpoints and evaluation that tie hint-config,
//! hint-data, hint-model and hint-optim together, along t5x's lines — the loop knows
//! nothing of the run that drives it.
//!
//! Modules, in the order a run uses them (none imports one that imports it back):
//! - [`settings`]: the run's configurables, parsed once into [`RunSettings`].
//!   Its data are hint-data's [`hint_data::DataConfig`] (the `hint.data.*` configurables).
//! - [`model`]: the run's [`hint_model::HyperT5`] from its settings.
//! - [`batches`]: hint-data's batches as the loop's [`TrainBatch`]es ([`TaskBatches`]).
//! - [`Trainer`]: the loop, with exact resume, reading a [`BatchSource`] and calling
//!   [`TrainHooks`].
//! - [`CheckpointManager`]: what a checkpoint holds, written atomically, the newest K kept.
//! - [`eval`] and [`eval_sets`]: scoring by each task's metrics, and the run's evaluation
//!   sets read once.
//! - [`run`]: a whole run (train, then evaluate); [`loaded`]: a run loaded back for
//!   `hint eval` / `hint infer`.
//! - [`plan`]: what a run's step will hold in memory, before anything is built.
//! - [`experiment`] and [`report`]: arms × seeds trained alike, one results table.
//! - [`plot`], [`tensorboard`], [`ModelDir`], [`atomic`]: what a run writes, and how.

pub mod atomic;
pub mod batches;
mod checkpoint;
pub mod contrastive;
mod error;
pub mod eval;
pub mod eval_sets;
pub mod experiment;
pub mod loaded;
mod metrics_log;
pub mod model;
mod model_dir;
pub mod original_gin;
pub mod plan;
pub mod plot;
pub mod report;
pub mod run;
pub mod settings;
pub mod tensorboard;
mod trainer;

pub use batches::TaskBatches;
pub use checkpoint::{
    read_train_state, CheckpointInfo, CheckpointManager, TrainState, OPTIMIZER_FILE,
    PARAMETERS_FILE, TRAIN_STATE_FILE,
};
pub use error::{Result, TrainError};
pub use eval::{EvalMonitor, EvalProgress, Unmonitored};
pub use loaded::{load_run, LoadedRun, Overrides};
pub use metrics_log::{
    gigabytes, read_metrics, truncate_after, MemoryReport, MetricsLine, MetricsWriter, StepMetrics,
};
pub use model_dir::{ModelDir, ModelDirError};
pub use run::{train_and_evaluate, train_and_evaluate_in, RunSummary};
pub use settings::{load_config, RunConfig, RunSettings};
pub use trainer::{
    shard_owners, BatchSource, ComputeDtype, NoHooks, OptimizerKind, TrainBatch, TrainConfig,
    TrainHooks, TrainOutcome, Trainer,
};
