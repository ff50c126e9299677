//! hint: HINT (Hypernetwork Instruction Tuning) on T5, in Rust.
//!
//! The umbrella package re-exports the member crates so that one dependency gives a
//! program all of them:
//!
//! - [`config`]: the gin-compatible configuration language.
//! - [`data`]: vocabularies, sources, tasks and mixtures, feature converters, metrics.
//! - [`model`]: T5 and the HINT hypernetwork on tch.
//! - [`optim`]: Adafactor with t5x semantics and learning-rate schedules.
//! - [`train`]: the training loop, checkpoints and evaluation.
//! - [`dist`]: process groups on libtorch's c10d (rendezvous, Gloo collectives).

pub use hint_config as config;
pub use hint_data as data;
pub use hint_dist as dist;
pub use hint_model as model;
pub use hint_optim as optim;
pub use hint_train as train;

/// The README's Rust examples, compiled and run as doctests so that the library guide
/// cannot drift from the API. Every unlabelled or `rust` block of README.md is one.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
