//! hint-data: the seqio counterpart for HINT — vocabularies, sources, preprocessors,
//! tasks and mixtures, feature converters, caching and metrics.
//!
//! The vocabulary (a `tokenizer.json` with T5's conventions) is the first piece.

mod example;
mod vocabulary;

pub use example::{Example, Value};
pub use vocabulary::{Vocabulary, VocabularyError};
