//! hint-train: the training loop, checkpoints and evaluation that tie hint-config,
//! hint-data, hint-model and hint-optim together, as t5x's `train`, `eval` and `infer` do.
//!
//! The model directory comes first: where a run writes, and the rule that a run never
//! writes into a folder that belongs to something else.

mod model_dir;

pub use model_dir::{ModelDir, ModelDirError};
