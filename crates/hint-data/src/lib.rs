//! hint-data: the seqio counterpart for HINT — vocabularies, sources, preprocessors,
//! tasks and mixtures, feature converters, caching and metrics.
//!
//! A run's data starts at [`DataConfig`]: every suite's options read from gin
//! ([`register`] registers the `hint.data.*` configurables), built into a [`RunData`] (task
//! registry and vocabulary) by [`DataConfig::build`].
//!
//! The pieces, in the order data flows:
//!
//! * [`source`]: streaming readers (JSON Lines, JSON arrays, Parquet, Arrow IPC, text lines)
//!   behind the [`Source`] trait;
//! * [`preprocessors`]: per-example steps (rekey, templates, HINT's split, rank
//!   classification, the C4 pretraining split, tokenization) and [`span_corruption`] (T5's
//!   pretraining objective, masks identical to seqio's given the seeds) and [`few_shot`]
//!   (k demonstrations from a task's own train split, T0's `{task}_{k}_shot` tasks);
//! * [`task`]: [`Task`], [`Mixture`] and [`TaskRegistry`] (start there; [`default_registry`]
//!   holds the built-in tasks);
//! * [`feature_converter`]: task features → model [`Batch`]es (HINT's converter, seqio's
//!   packed encoder-decoder converter);
//! * [`iterator`]: shuffled, sharded, prefetched batches with a checkpointable state;
//! * [`cache`] (reading, a [`Source`]) and [`cache_tasks`] (writing): offline Parquet
//!   caches (`hint cache-tasks`).
//!
//! Suites, one module each with its gin options and registration: [`builtin`] (the embedded
//! instruction suite, mixtures `builtin_train` and `builtin_heldout`), [`superni`],
//! [`bigbench`], [`p3`] (P3 Parquet with HINT's edited prompts), [`corpus`] (a pretraining
//! text corpus) and [`spec`] (tasks and mixtures described in gin). Also:
//! [`tokenizer_training`] (a vocabulary without a download), [`rng`] (the seeded generator
//! and hash every draw depends on), [`tf_random`] (TensorFlow's stateless random numbers) and [`metrics`] (Super-NI ROUGE-L / exact match, accuracy,
//! rank classification).
//!
//! Features: `tasks` (default) is everything above. A crate that only scores predictions
//! can depend on `hint-data = { workspace = true, default-features = false }` and gets
//! [`metrics`] and [`rng`] without arrow, parquet, tokenizers or hint-config.

// The crate docs above describe the full crate; without `tasks` most of their links have no
// target, which is expected rather than a broken link.
#![cfg_attr(not(feature = "tasks"), allow(rustdoc::broken_intra_doc_links))]

#[cfg(feature = "tasks")]
pub mod bigbench;
#[cfg(feature = "tasks")]
pub mod builtin;
#[cfg(feature = "tasks")]
pub mod cache;
#[cfg(feature = "tasks")]
pub mod cache_tasks;
#[cfg(feature = "tasks")]
pub mod corpus;
#[cfg(feature = "tasks")]
pub mod data_config;
#[cfg(feature = "tasks")]
mod error;
#[cfg(feature = "tasks")]
mod example;
#[cfg(feature = "tasks")]
pub mod feature_converter;
#[cfg(feature = "tasks")]
mod features;
#[cfg(feature = "tasks")]
pub mod few_shot;
#[cfg(feature = "tasks")]
pub mod iterator;
pub mod metrics;
#[cfg(feature = "tasks")]
pub mod p3;
#[cfg(feature = "tasks")]
pub mod preprocessors;
#[cfg(feature = "tasks")]
mod registry;
pub mod rng;
#[cfg(feature = "tasks")]
pub mod source;
#[cfg(feature = "tasks")]
pub mod span_corruption;
#[cfg(feature = "tasks")]
pub mod spec;
#[cfg(feature = "tasks")]
pub mod superni;
#[cfg(feature = "tasks")]
pub mod task;
pub mod tf_random;
#[cfg(feature = "tasks")]
pub mod tokenizer_training;
#[cfg(feature = "tasks")]
mod vocabulary;

#[cfg(feature = "tasks")]
pub use data_config::{register, DataConfig, RunData, VocabularyOptions};
#[cfg(feature = "tasks")]
pub use error::{DataError, Position};
#[cfg(feature = "tasks")]
pub use example::{Example, FeatureValue};
#[cfg(feature = "tasks")]
pub use feature_converter::{
    Batch, BatchFeature, FeatureConverter, FeatureLengths, HintBatch, HintConverter,
    InstructionMode, ModelInputs,
};
#[cfg(feature = "tasks")]
pub use features::{Feature, OutputFeatures};
#[cfg(feature = "tasks")]
pub use iterator::{BatchIterator, DatasetConfig, IteratorState};
#[cfg(feature = "tasks")]
pub use registry::{default_registry, register_toy_tasks, toy_vocabulary};
#[cfg(feature = "tasks")]
pub use source::{FileSource, Format, MemorySource, Source};
#[cfg(feature = "tasks")]
pub use spec::{MixtureSpec, RegistrySpec, TaskSpec};
#[cfg(feature = "tasks")]
pub use task::{Mixture, Rate, Task, TaskRegistry};
#[cfg(feature = "tasks")]
pub use vocabulary::{Vocabulary, VocabularyError};
