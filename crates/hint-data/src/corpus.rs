//! A text corpus for pretraining as one task, and its gin configurable `hint.data.Corpus`
//! ([`CorpusOptions`]): HINT's hypernetwork pretraining (`hint.md` §12, [`PretrainSplit`]) or
//! T5's own span corruption ([`SpanCorruption`]), the objective that gives a T5 its
//! knowledge of language before HINT pretraining and fine-tuning.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::example::{Example, FeatureValue};
use crate::feature_converter::FeatureLengths;
use crate::preprocessors::PretrainSplit;
use crate::source::{FileSource, Format, OpenOptions, Record, RecordStream, Source};
use crate::span_corruption::SpanCorruption;
use crate::task::{Task, TaskRegistry};
use crate::vocabulary::Vocabulary;

/// What a corpus task trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CorpusObjective {
    /// HINT's hypernetwork pretraining: each segment split into hypernetwork input,
    /// encoder input and continuation ([`PretrainSplit`]).
    #[default]
    HintPretrain,
    /// T5's span corruption ([`SpanCorruption`]): noised spans in the input, to be restored
    /// in the target; segments sized to the run's input length.
    SpanCorruption,
}

/// `hint.data.Corpus`: text for pretraining, the options of [`register_text_corpus`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorpusOptions {
    /// The task name.
    pub name: String,
    /// Training files (`*` allowed in file names); empty: off.
    pub train_files: Vec<PathBuf>,
    /// Validation files.
    pub validation_files: Vec<PathBuf>,
    /// `hint_pretrain` (default) or `span_corruption`.
    pub objective: CorpusObjective,
    /// Tokens per segment (`hint_pretrain`; span corruption sizes its segments to the run's
    /// input length, as seqio does).
    pub segment_length: usize,
    /// Parts per segment: 3 (hypernetwork, encoder, target), or the reference's 4- and
    /// 6-part ablations ([`PretrainSplit`]).
    pub parts: usize,
    /// Fraction of tokens noised (`span_corruption`; T5: 0.15).
    pub noise_density: f64,
    /// Mean length of a noised span (`span_corruption`; T5: 3).
    pub mean_noise_span_length: f64,
    /// Consecutive texts concatenated into one example before segmenting (seqio's
    /// `reduce_concat_tokens`, which T5's span corruption applies to 128); 0: the objective's
    /// default, 128 for span corruption and 1 (each text alone) for HINT's split.
    pub texts_per_example: usize,
}

impl Default for CorpusOptions {
    fn default() -> Self {
        Self {
            name: "pretrain_corpus".into(),
            train_files: Vec::new(),
            validation_files: Vec::new(),
            objective: CorpusObjective::HintPretrain,
            segment_length: 511,
            parts: 3,
            noise_density: 0.15,
            mean_noise_span_length: 3.0,
            texts_per_example: 0,
        }
    }
}

impl CorpusOptions {
    /// Whether training files are named (the corpus is off without them).
    pub fn enabled(&self) -> bool {
        !self.train_files.is_empty()
    }

    /// Texts per example after resolving 0 to the objective's default.
    pub fn effective_texts_per_example(&self) -> usize {
        match (self.texts_per_example, self.objective) {
            (0, CorpusObjective::SpanCorruption) => 128,
            (0, CorpusObjective::HintPretrain) => 1,
            (n, _) => n,
        }
    }
}

/// Registers the gin configurable `hint.data.Corpus`.
pub fn register(registry: &mut hint_config::Registry) -> Result<(), hint_config::ConfigError> {
    registry.register_struct::<CorpusOptions>("hint.data.Corpus")?;
    Ok(())
}

/// Registers `options.name`, the pretraining task over a text corpus: with
/// `hint_pretrain` each text of `train_files` (and `validation_files`, when given) is cut into
/// segments of `segment_length` tokens, each split into hypernetwork input, encoder input and
/// target continuation ([`PretrainSplit`], `hint.md` §12); with `span_corruption`,
/// `texts_per_example` consecutive texts are concatenated and cut into segments that fit the
/// input length after noising ([`SpanCorruption`]). Files are plain text (one text per line)
/// or JSON Lines, Parquet or Arrow with a `text` field.
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
        ..
    } = options;
    let first = train_files
        .first()
        .ok_or_else(|| DataError::Config(format!("text corpus `{name}`: no training files")))?;
    let format = Format::from_path(first).ok_or_else(|| {
        DataError::Config(format!(
            "text corpus `{name}`: cannot tell the format of {} (use .txt, .jsonl, .parquet or .arrow)",
            first.display()
        ))
    })?;
    let mut files = FileSource::new(format).split("train", train_files.to_vec());
    if !validation_files.is_empty() {
        files = files.split("validation", validation_files.to_vec());
    }
    let source = GroupedTexts {
        inner: files,
        field: "text".into(),
        group: options.effective_texts_per_example(),
    };
    let builder = Task::builder(name, source);
    let builder = match options.objective {
        CorpusObjective::HintPretrain => {
            let split = PretrainSplit {
                field: "text".into(),
                segment_length: options.segment_length,
                parts: options.parts,
            };
            split
                .validate()
                .map_err(|e| DataError::Config(format!("hint.data.Corpus.parts: {e}")))?;
            builder.preprocessor(split)
        }
        CorpusObjective::SpanCorruption => {
            let span_corruption = SpanCorruption {
                field: "text".into(),
                inputs_length: lengths.inputs,
                noise_density: options.noise_density,
                mean_noise_span_length: options.mean_noise_span_length,
            };
            span_corruption
                .validate(Some(lengths.targets))
                .map_err(|e| {
                    DataError::Config(format!("hint.data.Corpus (span_corruption): {e}"))
                })?;
            crate::span_corruption::sentinel_id(&vocabulary, span_corruption.max_noise_spans()?)
                .map_err(|e| {
                    DataError::Config(format!("hint.data.Corpus (span_corruption): {e}"))
                })?;
            builder.preprocessor(span_corruption)
        }
    };
    let task = builder.hint_features(&vocabulary, lengths, true).build()?;
    registry.add_task(task)?;
    Ok(())
}

/// A source whose examples are `group` consecutive records of another, their `field` texts
/// gathered as a list (seqio's `reduce_concat_tokens` before tokenization: the preprocessor
/// tokenizes each text and concatenates the ids). A group keeps its first record's origin;
/// `group` 1 passes records through unchanged.
struct GroupedTexts<S> {
    inner: S,
    field: String,
    group: usize,
}

impl<S: Source> Source for GroupedTexts<S> {
    fn splits(&self) -> Vec<String> {
        self.inner.splits()
    }

    fn texts_per_record(&self) -> usize {
        self.group.max(1)
    }

    fn num_input_examples(&self, split: &str) -> Option<u64> {
        let n = self.inner.num_input_examples(split)?;
        Some(n.div_ceil(self.group.max(1) as u64))
    }

    fn open(&self, split: &str, options: &OpenOptions) -> Result<RecordStream, DataError> {
        let mut records = self.inner.open(split, options)?;
        if self.group <= 1 {
            return Ok(records);
        }
        let (field, group) = (self.field.clone(), self.group);
        // An unreadable record ends the group gathered so far and is reported right after it.
        let mut pending: Option<DataError> = None;
        Ok(Box::new(std::iter::from_fn(move || {
            if let Some(e) = pending.take() {
                return Some(Err(e));
            }
            let mut first: Option<Record> = None;
            let mut texts = Vec::new();
            while texts.len() < group {
                let error = match records.next() {
                    None => break,
                    Some(Err(e)) => e,
                    Some(Ok(record)) => match record.example.get(&field) {
                        Some(FeatureValue::Text(text)) => {
                            texts.push(text.clone());
                            first.get_or_insert(record);
                            continue;
                        }
                        _ => record.field_error(
                            &field,
                            "missing or not a text (texts_per_example > 1 groups texts only)",
                        ),
                    },
                };
                if first.is_none() {
                    return Some(Err(error));
                }
                pending = Some(error);
                break;
            }
            let mut record = first?;
            let mut example = Example::new();
            example.insert(
                field.clone(),
                FeatureValue::Texts(std::mem::take(&mut texts)),
            );
            record.example = example;
            Some(Ok(record))
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::MemorySource;

    fn text(t: &str) -> Example {
        let mut e = Example::new();
        e.insert("text".into(), FeatureValue::Text(t.into()));
        e
    }

    fn open(examples: Vec<Example>, group: usize) -> Vec<Result<Record, DataError>> {
        let source = GroupedTexts {
            inner: MemorySource::new().split("train", examples),
            field: "text".into(),
            group,
        };
        source
            .open("train", &OpenOptions::default())
            .unwrap()
            .collect()
    }

    fn texts(record: &Result<Record, DataError>) -> Vec<String> {
        match record.as_ref().unwrap().example.get("text") {
            Some(FeatureValue::Texts(t)) => t.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn consecutive_texts_are_grouped_the_last_group_shorter() {
        let records = open(["a", "b", "c", "d", "e"].map(text).to_vec(), 2);
        let groups: Vec<Vec<String>> = records.iter().map(texts).collect();
        assert_eq!(groups, [vec!["a", "b"], vec!["c", "d"], vec!["e"]]);
    }

    #[test]
    fn a_bad_record_ends_its_group_and_is_reported_after_it() {
        let mut bad = Example::new();
        bad.insert("text".into(), FeatureValue::Int(3));
        let records = open(vec![text("a"), bad, text("b"), text("c")], 3);
        assert_eq!(texts(&records[0]), ["a"]);
        let error = records[1].as_ref().unwrap_err().to_string();
        assert!(
            error.contains("text") && error.contains("not a text"),
            "{error}"
        );
        assert_eq!(texts(&records[2]), ["b", "c"]);
        assert_eq!(records.len(), 3);
    }
}
