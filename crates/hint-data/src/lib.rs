//! hint-data: the seqio counterpart for HINT — vocabularies, sources, preprocessors,
//! tasks and mixtures, feature converters, caching and metrics.
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
//! * [`cache`] (reading, a [`Source`]) and [`cache_tasks`] (writing): offline Parquet
//!   caches (`hint cache-tasks`).
//!
//! Content: [`builtin`] (the embedded instruction suite, mixtures `builtin_train` and
//! `builtin_heldout`), [`superni`] and [`bigbench`] (readers and templates) with their registry
//! builders in [`benchmark_registry`], [`p3`] (P3 Parquet with HINT's edited prompts),
//! [`spec`] (tasks and mixtures described in gin), [`tokenizer_training`] (a vocabulary without a
//! download), and [`metrics`] (Super-NI ROUGE-L / exact match, accuracy, rank classification).

pub mod benchmark_registry;
pub mod bigbench;
pub mod builtin;
pub mod cache;
pub mod cache_tasks;
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

pub use error::{DataError, Position};
pub use example::{Example, Value};
pub use feature_converter::{
    Batch, BatchFeature, FeatureConverter, FeatureLengths, HintBatch, HintConverter, InstructionMode,
    ModelInputs,
};
pub use features::{Feature, OutputFeatures};
pub use iterator::{BatchIterator, DatasetConfig, IteratorState};
pub use registry::{default_registry, register_toy_tasks, toy_vocabulary};
pub use source::{FileSource, Format, MemorySource, Source};
pub use spec::{MixtureSpec, TaskSpec};
pub use task::{Mixture, Rate, Task, TaskRegistry};
pub use vocabulary::{Vocabulary, VocabularyError};
