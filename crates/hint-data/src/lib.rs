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
//!   classification, the C4 pretraining split, tokenization);
//! * [`task`]: [`Task`], [`Mixture`] and [`TaskRegistry`] (start there; [`default_registry`]
//!   holds the built-in tasks);
//! * [`feature_converter`]: task features → model [`Batch`]es (HINT's converter, seqio's
//!   packed encoder-decoder converter);
//! * [`iterator`]: shuffled, sharded, prefetched batches with a checkpointable state;
//! * [`cache`]: offline Parquet caches (`hint cache-tasks`).
//!
//! Suites, one module each with its gin options and registration: [`builtin`] (the embedded
//! instruction suite, mixtures `builtin_train` and `builtin_heldout`), [`superni`],
//! [`bigbench`], [`p3`] (P3 Parquet with HINT's edited prompts), [`corpus`] (a pretraining
//! text corpus) and [`spec`] (tasks and mixtures described in gin). Also:
//! [`tokenizer_training`] (a vocabulary without a download), [`rng`] (the seeded generator
//! and hash every draw depends on) and [`metrics`] (Super-NI ROUGE-L / exact match, accuracy,
//! rank classification).

pub mod bigbench;
pub mod builtin;
pub mod cache;
pub mod corpus;
pub mod data_config;
mod error;
mod example;
pub mod feature_converter;
mod features;
pub mod iterator;
pub mod metrics;
pub mod p3;
pub mod preprocessors;
mod registry;
pub mod rng;
pub mod source;
pub mod spec;
pub mod superni;
pub mod task;
pub mod tokenizer_training;
mod vocabulary;

pub use data_config::{register, DataConfig, RunData, VocabularyOptions};
pub use error::{DataError, Position};
pub use example::{Example, Value};
pub use feature_converter::{Batch, BatchFeature, FeatureConverter};
pub use features::{Feature, OutputFeatures};
pub use iterator::{BatchIterator, DatasetConfig, IteratorState};
pub use registry::{default_registry, register_toy_tasks, toy_vocabulary};
pub use source::{FileSource, Format, MemorySource, Source};
pub use spec::{MixtureSpec, RegistrySpec, TaskSpec};
pub use task::{Mixture, Rate, Task, TaskRegistry};
pub use vocabulary::{Vocabulary, VocabularyError};
