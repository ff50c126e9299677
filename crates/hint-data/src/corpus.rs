//! A text corpus for hypernetwork pretraining (`hint.md` §12) as one task, and its gin
//! configurable `hint.data.Corpus` ([`CorpusOptions`]).

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::feature_converter::FeatureLengths;
use crate::preprocessors::PretrainSplit;
use crate::source::{FileSource, Format};
use crate::task::{Task, TaskRegistry};
use crate::vocabulary::Vocabulary;

/// `hint.data.Corpus`: text for hypernetwork pretraining, the options of
/// [`register_text_corpus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorpusOptions {
    /// The task name.
    pub name: String,
    /// Training files (`*` allowed in file names); empty: off.
    pub train_files: Vec<PathBuf>,
    /// Validation files.
    pub validation_files: Vec<PathBuf>,
    /// Tokens per segment.
    pub segment_length: usize,
    /// Parts per segment: 3 (hypernetwork, encoder, target), or the reference's 4- and
    /// 6-part ablations ([`PretrainSplit`]).
    pub parts: usize,
}

impl Default for CorpusOptions {
    fn default() -> Self {
        Self {
            name: "pretrain_corpus".into(),
            train_files: Vec::new(),
            validation_files: Vec::new(),
            segment_length: 511,
            parts: 3,
        }
    }
}

impl CorpusOptions {
    /// Whether training files are named (the corpus is off without them).
    pub fn enabled(&self) -> bool {
        !self.train_files.is_empty()
    }
}

/// Registers the gin configurable `hint.data.Corpus`.
pub fn register(registry: &mut hint_config::Registry) -> Result<(), hint_config::ConfigError> {
    registry.register_struct::<CorpusOptions>("hint.data.Corpus")?;
    Ok(())
}

/// Registers `options.name`, the hypernetwork pretraining task over a text corpus
/// (`hint.md` §12): each text of `train_files` (and `validation_files`, when given) is cut
/// into segments of `segment_length` tokens, each split into hypernetwork input, encoder input and target
/// continuation ([`PretrainSplit`]). Files are plain text (one text per line) or JSON Lines,
/// Parquet or Arrow with a `text` field.
pub fn register_text_corpus(
    registry: &mut TaskRegistry,
    options: &CorpusOptions,
    vocabulary: Arc<Vocabulary>,
    lengths: FeatureLengths,
) -> Result<(), DataError> {
    let CorpusOptions {
        name,
        train_files,
        validation_files,
        segment_length,
        parts,
    } = options;
    let split = PretrainSplit {
        field: "text".into(),
        segment_length: *segment_length,
        parts: *parts,
    };
    split
        .validate()
        .map_err(|e| DataError::Config(format!("hint.data.Corpus.parts: {e}")))?;
    let first = train_files
        .first()
        .ok_or_else(|| DataError::Config(format!("text corpus `{name}`: no training files")))?;
    let format = Format::from_path(first).ok_or_else(|| {
        DataError::Config(format!(
            "text corpus `{name}`: cannot tell the format of {} (use .txt, .jsonl, .parquet or .arrow)",
            first.display()
        ))
    })?;
    let mut source = FileSource::new(format).split("train", train_files.to_vec());
    if !validation_files.is_empty() {
        source = source.split("validation", validation_files.to_vec());
    }
    let task = Task::builder(name, source)
        .preprocessor(split)
        .hint_features(&vocabulary, lengths, true)
        .build()?;
    registry.add_task(task)?;
    Ok(())
}
