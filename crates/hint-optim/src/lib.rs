//! hint-optim: t5x's Adafactor over tch tensors, parameter groups ("dual") of which any
//! may run AdamW instead ([`AdamWConfig`], `torch.optim.AdamW`'s update), partial
//! optimizer-state initialisation, and t5x learning-rate schedules.
//!
//! The reference for every equation is `shared/reference/adafactor.md` (t5x
//! `adafactor.py` and `optimizers.MultiOptimizer`). Entry point: [`Adafactor`], built
//! from named parameters and [`ParamGroup`]s (each with an [`AdafactorConfig`] or
//! frozen), stepped with [`Adafactor::step`] (autograd gradients) or
//! [`Adafactor::apply_gradients`], saved with [`Adafactor::save_state`] and restored,
//! fully or partially, with [`Adafactor::load_state`] and [`RestoreOptions`].
//!
//! Deliberate departures from t5x, all documented where they live: a global step below
//! a group's `step_offset` is an error instead of a NaN decay; global-norm clipping is
//! per group (as t5x's `MultiOptimizer` hands each sub-optimizer only its own
//! gradients); `dtype_momentum` is always f32; rank > 2 parameters use the factoring
//! heuristic (t5x's logical factor rules are not modelled).

mod adafactor;
mod adamw;
mod config;
mod error;
mod factoring;
mod groups;
mod optimizer;
mod schedule;
mod slots;
mod state;

pub use adamw::AdamWConfig;
pub use config::AdafactorConfig;
pub use error::{OptimError, Result};
pub use factoring::{factored_dims, FactoredDims};
pub use groups::{group_of_each, ParamGroup};
pub use optimizer::Adafactor;
pub use schedule::{Schedule, ScheduleError, ScheduleFactor};
pub use slots::{state_elements, SLOT_NAMES};
pub use state::{slot_key, RestoreOptions, RestoreReport, STEP_KEY};
