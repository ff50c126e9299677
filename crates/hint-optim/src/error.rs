//! The one error type of hint-optim.

use thiserror::Error;

use crate::schedule::ScheduleError;

/// Everything that can go wrong while building, stepping, saving or restoring the optimizer.
#[derive(Debug, Error)]
pub enum OptimError {
    /// A group's `filter` is not a valid regular expression.
    #[error("group `{group}`: invalid filter regex `{filter}`: {source}")]
    InvalidFilter {
        /// The group's name.
        group: String,
        /// The offending pattern.
        filter: String,
        /// What the regex crate said.
        source: regex::Error,
    },
    /// An assignment-map pattern is not a valid regular expression.
    #[error("invalid assignment-map pattern `{pattern}`: {source}")]
    InvalidAssignmentPattern {
        /// The offending pattern.
        pattern: String,
        /// What the regex crate said.
        source: regex::Error,
    },
    /// Two groups share a name (names key the per-group settings).
    #[error("two parameter groups are named `{0}`")]
    DuplicateGroup(String),
    /// No group has the requested name.
    #[error("no parameter group named `{0}`")]
    UnknownGroup(String),
    /// Parameters matched by more than one group (t5x: "Multiple optimizers match the same leaves").
    #[error("parameters matched by more than one group: {}", format_overlaps(.0))]
    OverlappingGroups(Vec<(String, Vec<String>)>),
    /// Parameters matched by no group; freeze them explicitly with a frozen group.
    #[error("parameters matched by no group (add a frozen group to keep them fixed): {0:?}")]
    UnmatchedParameters(Vec<String>),
    /// Two parameters share a name.
    #[error("parameter `{0}` is given twice")]
    DuplicateParameter(String),
    /// A hyper-parameter is out of its domain.
    #[error("group `{group}`: {reason}")]
    InvalidConfig {
        /// The group's name.
        group: String,
        /// What is wrong.
        reason: String,
    },
    /// The global step is below a group's `step_offset`; t5x would compute a NaN decay.
    #[error("group `{group}`: global step {step} is below its step_offset {step_offset}")]
    StepBeforeOffset {
        /// The group's name.
        group: String,
        /// The optimizer's global step.
        step: u64,
        /// The group's offset.
        step_offset: u64,
    },
    /// A gradient's shape differs from its parameter's.
    #[error("gradient of `{name}` has shape {found:?}, the parameter {expected:?}")]
    GradientShape {
        /// The parameter.
        name: String,
        /// The parameter's shape.
        expected: Vec<i64>,
        /// The gradient's shape.
        found: Vec<i64>,
    },
    /// Gradients were given for names that are not parameters of this optimizer.
    #[error("gradients given for unknown parameters: {0:?}")]
    UnknownGradients(Vec<String>),
    /// A parameter is not a floating-point tensor.
    #[error("parameter `{name}` has non-floating kind {kind:?}")]
    NonFloatParameter {
        /// The parameter.
        name: String,
        /// Its kind.
        kind: tch::Kind,
    },
    /// A restored slot's shape differs from the slot this optimizer needs.
    #[error("optimizer slot `{key}` (read from `{source_key}`) has shape {found:?}, expected {expected:?}")]
    SlotShapeMismatch {
        /// The slot's name in this optimizer's state.
        key: String,
        /// The name it was read from.
        source_key: String,
        /// The shape this optimizer needs.
        expected: Vec<i64>,
        /// The shape in the saved state.
        found: Vec<i64>,
    },
    /// Slots absent from the saved state while `fallback_to_scratch` is off.
    #[error("optimizer state lacks these slots and fallback_to_scratch is off: {0:?}")]
    MissingSlots(Vec<String>),
    /// An assignment rule mapped a slot to a name the saved state does not have.
    #[error("assignment map sends `{key}` to `{source_key}`, which the saved state does not have")]
    MissingAssignedSlot {
        /// The slot's name in this optimizer's state.
        key: String,
        /// The name the rule produced.
        source_key: String,
    },
    /// An assignment rule matched no slot (t5x treats this as a mistake in the map).
    #[error("assignment-map pattern `{0}` matched no optimizer slot")]
    UnusedAssignmentRule(String),
    /// The saved step is not a non-negative integer scalar.
    #[error("saved `{key}` is not a non-negative integer scalar: {reason}")]
    InvalidStep {
        /// The step's key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A schedule names an unknown factor.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// A libtorch operation failed.
    #[error(transparent)]
    Tch(#[from] tch::TchError),
    /// Writing or renaming the state file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn format_overlaps(overlaps: &[(String, Vec<String>)]) -> String {
    overlaps
        .iter()
        .map(|(param, groups)| format!("`{param}` by {groups:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `Result` with [`OptimError`].
pub type Result<T, E = OptimError> = std::result::Result<T, E>;
