//! hint-optim: t5x's Adafactor over tch tensors, parameter groups ("dual"),
//! partial optimizer-state initialisation, and t5x learning-rate schedules.
//!
//! The schedules come first; the optimizer builds on them.

mod schedule;

pub use schedule::{Schedule, ScheduleError, ScheduleFactor};
