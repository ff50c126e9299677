//! T5's pretraining objective, span corruption (`t5.data.preprocessors.span_corruption`, the
//! preprocessor of T5's `c4_v220_span_corruption` task): 15% of each segment's tokens, in
//! spans of mean length 3, are replaced in the input by one sentinel per span
//! (`<extra_id_0>`, `<extra_id_1>`, … counted down from the vocabulary's last id), and the
//! target lists the dropped spans, each after its sentinel:
//!
//! ```text
//! tokens   Thank you for inviting me to your party last week .
//! inputs   Thank you <X> me to your party <Y> week . </s>
//! targets  <X> for inviting <Y> last <Z> </s>
//! ```
//!
//! The steps are seqio's: each text of an example is tokenized, a text over 65,536 tokens is
//! cut to one random chunk of that length (`select_random_chunk`), empty ones are dropped,
//! and the texts are concatenated (`reduce_concat_tokens`; the corpus groups 128 texts per
//! example by default); the tokens are split into segments of the length [`random_spans_helper`] derives from the
//! model's input length (568 tokens for 512), and each segment is noised
//! ([`random_spans_noise_mask`], [`noise_span_to_unique_sentinel`],
//! [`nonnoise_span_to_unique_sentinel`]) and ends with EOS (`append_eos_after_trim`).
//!
//! Given the same seed pairs, the masks are T5's bit for bit: its segmentation shuffles with
//! TensorFlow's stateless Philox numbers, which [`crate::tf_random`] reproduces (golden test
//! against `t5` and `seqio` from PyPI: `tests/span_corruption_golden.rs`). Where the seed
//! pairs come from differs: seqio zips the dataset with `tf.data.Dataset.random` streams,
//! whose draws depend on the position in the whole pipeline; hint draws each segment's pairs
//! from the task's (seed, step, example index) generator, as every hint preprocessor does, so
//! that a run resumes and shards to the same examples.

use serde::Deserialize;

use crate::error::DataError;
use crate::example::{Example, FeatureValue};
use crate::preprocessors::{corpus_documents, Context, Preprocessor};
use crate::tf_random::{stateless_shuffle, stateless_uniform_int};
use crate::vocabulary::Vocabulary;

/// seqio's `select_random_chunk` bound used by `span_corruption`: longer documents are cut to
/// one chunk of this many tokens.
pub const MAX_CHUNK_TOKENS: usize = 65_536;

/// T5's sentinel for the first span of a segment: the vocabulary's last id (seqio's
/// `sentinel_id`), which must be `<extra_id_0>`, followed downwards by `<extra_id_1>` … up to
/// `<extra_id_{spans − 1}>` for segments of up to `spans` noise spans — a vocabulary without
/// enough sentinels would have real pieces overwritten.
pub fn sentinel_id(vocabulary: &Vocabulary, spans: usize) -> Result<u32, DataError> {
    let last = vocabulary.vocab_size().saturating_sub(1) as u32;
    for n in 0..spans.max(1) {
        let expected = last.checked_sub(n as u32);
        let found = vocabulary.token_to_id(&format!("<extra_id_{n}>"));
        if found.is_none() || found != expected {
            return Err(DataError::Config(format!(
                "span corruption needs {} `<extra_id_N>` sentinels counted down from the \
                 vocabulary's last id ({last}), but `<extra_id_{n}>` is {} (T5's tokenizer has \
                 100; a trained one gets them with hint.data.Vocabulary.num_sentinels)",
                spans.max(1),
                found.map_or("missing".to_string(), |id| format!("id {id}"))
            )));
        }
    }
    Ok(last)
}

/// The counts of t5's `random_spans_noise_mask` for `length` tokens, in float32 as TF
/// computes them: `(noise tokens, noise spans, kept tokens)` of the padded length
/// (`max(length, 2)`).
fn noise_counts(length: usize, noise_density: f64, mean_noise_span_length: f64) -> (i64, i64, i64) {
    let padded_length = length.max(2) as i64;
    let noise_tokens = ((padded_length as f32 * noise_density as f32).round_ties_even() as i64)
        .max(1)
        .min(padded_length - 1);
    let noise_spans =
        ((noise_tokens as f32 / mean_noise_span_length as f32).round_ties_even() as i64).max(1);
    (noise_tokens, noise_spans, padded_length - noise_tokens)
}

/// Lengths of one segment before noising, and of its targets after, for inputs of
/// `inputs_length` tokens (EOS included): t5's `random_spans_helper` with one sentinel per
/// span in inputs and targets. `(568, 114)` for 512 at T5's defaults.
///
/// ```
/// use hint_data::span_corruption::random_spans_helper;
/// assert_eq!(random_spans_helper(512, 0.15, 3.0), (568, 114));
/// ```
pub fn random_spans_helper(
    inputs_length: usize,
    noise_density: f64,
    mean_noise_span_length: f64,
) -> (usize, usize) {
    // Python's round() rounds half to even, as round_ties_even.
    let lengths = |tokens: usize| {
        let noise = (tokens as f64 * noise_density).round_ties_even() as usize;
        let nonnoise = tokens - noise.min(tokens);
        let spans = (noise as f64 / mean_noise_span_length).round_ties_even() as usize;
        // Inputs: kept tokens, a sentinel per span, EOS; targets: dropped tokens, the same.
        (nonnoise + spans + 1, noise + spans + 1)
    };
    let mut tokens = inputs_length.saturating_sub(1);
    while lengths(tokens + 1).0 <= inputs_length {
        tokens += 1;
    }
    let (_, mut targets) = lengths(tokens);
    // t5's "minor hack" so that prefix-LM-like densities give equal lengths.
    if noise_density == 0.5 && targets > inputs_length {
        tokens -= 1;
        targets -= 1;
    }
    (tokens, targets)
}

/// t5's `random_spans_noise_mask`: which of `length` tokens are noise. The counts are fixed
/// (`round(length · density)` noise tokens in `round(noise / mean span length)` spans, at
/// least one of each, in float32 as TF computes them); spans alternate kept/noise, starting
/// with kept, and every such mask is equally likely. `seeds[0]` segments the noise tokens,
/// `seeds[1]` the kept ones. Settings with more noise spans than kept tokens (which TF refuses)
/// give a short mask; [`SpanCorruption::validate`] rules them out.
pub fn random_spans_noise_mask(
    length: usize,
    noise_density: f64,
    seeds: [[i64; 2]; 2],
    mean_noise_span_length: f64,
) -> Vec<bool> {
    if noise_density == 0.0 {
        return vec![false; length];
    }
    let (noise_tokens, noise_spans, nonnoise_tokens) =
        noise_counts(length, noise_density, mean_noise_span_length);
    let noise_lengths = random_segmentation(noise_tokens, noise_spans, seeds[0]);
    let nonnoise_lengths = random_segmentation(nonnoise_tokens, noise_spans, seeds[1]);
    let mut mask = Vec::with_capacity(length.max(2));
    for (kept, noise) in nonnoise_lengths.into_iter().zip(noise_lengths) {
        mask.extend(std::iter::repeat_n(false, kept));
        mask.extend(std::iter::repeat_n(true, noise));
    }
    mask.truncate(length);
    mask
}

/// `num_items` split into `num_segments` non-empty runs, all splits equally likely: the
/// `num_segments − 1` run starts are a stateless shuffle of the `num_items − 1` gaps.
fn random_segmentation(num_items: i64, num_segments: i64, seed: [i64; 2]) -> Vec<usize> {
    let gaps: Vec<bool> = (0..num_items - 1).map(|i| i < num_segments - 1).collect();
    let starts = stateless_shuffle(&gaps, seed);
    let mut lengths = vec![1];
    for start in starts {
        if start {
            lengths.push(1);
        } else {
            *lengths.last_mut().expect("one segment at least") += 1;
        }
    }
    lengths
}

/// t5's `noise_span_to_unique_sentinel`: each run of noise tokens becomes one sentinel
/// (`first_sentinel`, then counting down); other tokens are kept.
pub fn noise_span_to_unique_sentinel(
    tokens: &[u32],
    noise_mask: &[bool],
    first_sentinel: u32,
) -> Vec<u32> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut spans = 0;
    let mut previous_noise = false;
    for (&token, &noise) in tokens.iter().zip(noise_mask) {
        if !noise {
            out.push(token);
        } else if !previous_noise {
            out.push(first_sentinel - spans);
            spans += 1;
        }
        previous_noise = noise;
    }
    out
}

/// t5's `nonnoise_span_to_unique_sentinel`: the targets, each run of kept tokens replaced.
pub fn nonnoise_span_to_unique_sentinel(
    tokens: &[u32],
    noise_mask: &[bool],
    first_sentinel: u32,
) -> Vec<u32> {
    let inverted: Vec<bool> = noise_mask.iter().map(|noise| !noise).collect();
    noise_span_to_unique_sentinel(tokens, &inverted, first_sentinel)
}

/// One noised segment: `(inputs, targets)` without EOS. An error when the settings give more
/// noise spans than kept tokens for this length (TF fails there too).
pub fn corrupt_segment(
    tokens: &[u32],
    noise_density: f64,
    mean_noise_span_length: f64,
    seeds: [[i64; 2]; 2],
    first_sentinel: u32,
) -> Result<(Vec<u32>, Vec<u32>), DataError> {
    let mask = random_spans_noise_mask(tokens.len(), noise_density, seeds, mean_noise_span_length);
    if mask.len() != tokens.len() {
        return Err(DataError::Config(format!(
            "span corruption of {} tokens at noise density {noise_density} and mean span length \
             {mean_noise_span_length} makes more noise spans than kept tokens",
            tokens.len()
        )));
    }
    Ok((
        noise_span_to_unique_sentinel(tokens, &mask, first_sentinel),
        nonnoise_span_to_unique_sentinel(tokens, &mask, first_sentinel),
    ))
}

/// The span-corruption preprocessor (see the module documentation). Reads `field` — a text,
/// a list of texts (concatenated after tokenization) or token ids — and emits one example per
/// segment with `inputs`, `targets`, an empty instruction (`hyper_inputs`: EOS alone, for plain
/// T5) and `task_names` 0.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanCorruption {
    /// The field holding the text (`text`).
    pub field: String,
    /// The model's input length, EOS included (seqio's `sequence_length["inputs"]`).
    pub inputs_length: usize,
    /// Fraction of tokens noised (T5: 0.15).
    #[serde(default = "default_noise_density")]
    pub noise_density: f64,
    /// Mean length of a noise span (T5: 3).
    #[serde(default = "default_mean_noise_span_length")]
    pub mean_noise_span_length: f64,
}

fn default_noise_density() -> f64 {
    0.15
}

fn default_mean_noise_span_length() -> f64 {
    3.0
}

impl SpanCorruption {
    /// T5's objective (density 0.15, mean span 3) over `field` for inputs of `inputs_length`.
    pub fn new(field: impl Into<String>, inputs_length: usize) -> Self {
        Self {
            field: field.into(),
            inputs_length,
            noise_density: default_noise_density(),
            mean_noise_span_length: default_mean_noise_span_length(),
        }
    }

    /// Refuses settings seqio refuses or that leave nothing to learn; `targets_length` is the
    /// targets' room (EOS included), which must hold [`random_spans_helper`]'s targets.
    pub fn validate(&self, targets_length: Option<usize>) -> Result<(), DataError> {
        self.checked_limits(targets_length).map(|_| ())
    }

    /// [`SpanCorruption::validate`], returning the limits it computed.
    fn checked_limits(&self, targets_length: Option<usize>) -> Result<Limits, DataError> {
        if !(self.noise_density > 0.0 && self.noise_density < 1.0) {
            return Err(DataError::field(
                "noise_density",
                format!("{}: must lie in (0, 1)", self.noise_density),
            ));
        }
        if self.mean_noise_span_length < 1.0 || !self.mean_noise_span_length.is_finite() {
            return Err(DataError::field(
                "mean_noise_span_length",
                format!("{}: must be at least 1", self.mean_noise_span_length),
            ));
        }
        if self.inputs_length < 3 {
            return Err(DataError::field(
                "inputs_length",
                format!("{}: span corruption needs at least 3", self.inputs_length),
            ));
        }
        let limits = self.limits()?;
        if let Some(targets_length) = targets_length {
            if targets_length < limits.targets {
                return Err(DataError::Config(format!(
                    "span corruption with inputs of {} tokens makes targets of up to {} tokens, \
                     but targets have room for {targets_length}: raise the targets length \
                     (hint.train.Run.lengths)",
                    self.inputs_length, limits.targets
                )));
            }
        }
        Ok(limits)
    }

    /// The most noise spans a segment gets (the sentinels needed).
    pub fn max_noise_spans(&self) -> Result<usize, DataError> {
        Ok(self.checked_limits(None)?.spans)
    }

    /// What segments of up to the segment length make at most, for every length (a corpus
    /// ends in shorter segments): targets (EOS included) and noise spans. An error when some
    /// length has more noise spans than kept tokens.
    fn limits(&self) -> Result<Limits, DataError> {
        let (segment_length, _) = self.segment_lengths();
        let mut limits = Limits {
            targets: 0,
            spans: 0,
        };
        for length in 1..=segment_length {
            let (noise, spans, kept) =
                noise_counts(length, self.noise_density, self.mean_noise_span_length);
            if spans > kept {
                return Err(DataError::field(
                    "noise_density",
                    format!(
                        "{} with mean_noise_span_length {}: a segment of {length} tokens would \
                         have {spans} noise spans but {kept} kept tokens to put between them",
                        self.noise_density, self.mean_noise_span_length
                    ),
                ));
            }
            limits.targets = limits.targets.max((noise + spans + 1) as usize);
            limits.spans = limits.spans.max(spans as usize);
        }
        Ok(limits)
    }

    /// `(tokens per segment, targets length)` ([`random_spans_helper`]).
    pub fn segment_lengths(&self) -> (usize, usize) {
        random_spans_helper(
            self.inputs_length,
            self.noise_density,
            self.mean_noise_span_length,
        )
    }
}

/// Upper bounds over a corpus' segments ([`SpanCorruption::validate`]).
struct Limits {
    targets: usize,
    spans: usize,
}

impl Preprocessor for SpanCorruption {
    fn name(&self) -> String {
        format!(
            "span_corruption({}, inputs {}, density {}, mean span {})",
            self.field, self.inputs_length, self.noise_density, self.mean_noise_span_length
        )
    }

    fn apply(&self, example: Example, ctx: &Context<'_>) -> Result<Vec<Example>, DataError> {
        // Checked once per example, the limits computed once.
        let limits = self.checked_limits(None)?;
        let feature = |name: &str| {
            ctx.output_features.get(name).ok_or_else(|| {
                DataError::Config(format!(
                    "span_corruption needs an output feature `{name}` (inputs, targets)"
                ))
            })
        };
        let targets = feature("targets")?;
        let add_eos = (feature("inputs")?.add_eos, targets.add_eos);
        let add_instruction_eos = ctx.output_features.get("hyper_inputs").map(|f| f.add_eos);
        let first_sentinel = sentinel_id(&targets.vocabulary, limits.spans)?;
        let mut rng = ctx.rng();
        let mut seed = || rng.next_u64() as i64;
        let mut tokens = Vec::new();
        for mut document in corpus_documents(&example, &self.field, &targets.vocabulary)? {
            // seqio drops padding (id 0) when it concatenates texts; T5's tokenizer never
            // emits it.
            document.retain(|&t| t != Vocabulary::PAD_ID);
            if document.len() > MAX_CHUNK_TOKENS {
                let chunks = document.len().div_ceil(MAX_CHUNK_TOKENS) as i32;
                let chunk = stateless_uniform_int([seed(), seed()], 0, chunks) as usize;
                let start = MAX_CHUNK_TOKENS * chunk;
                let end = (start + MAX_CHUNK_TOKENS).min(document.len());
                document = document[start..end].to_vec();
            }
            tokens.extend(document);
        }
        let (segment_length, _) = self.segment_lengths();
        let mut out = Vec::new();
        for segment in tokens.chunks(segment_length) {
            let seeds = [[seed(), seed()], [seed(), seed()]];
            let (mut inputs, mut targets) = corrupt_segment(
                segment,
                self.noise_density,
                self.mean_noise_span_length,
                seeds,
                first_sentinel,
            )?;
            // append_eos_after_trim: inputs keep room for EOS (float32 counts can exceed
            // random_spans_helper's float64 ones by a token).
            if add_eos.0 {
                inputs.truncate(self.inputs_length - 1);
                inputs.push(Vocabulary::EOS_ID);
            }
            if add_eos.1 {
                targets.push(Vocabulary::EOS_ID);
            }
            let mut row = Example::new();
            row.insert("inputs".into(), FeatureValue::Tokens(inputs));
            row.insert("targets".into(), FeatureValue::Tokens(targets));
            if let Some(add_eos) = add_instruction_eos {
                let instruction = if add_eos {
                    vec![Vocabulary::EOS_ID]
                } else {
                    Vec::new()
                };
                row.insert("hyper_inputs".into(), FeatureValue::Tokens(instruction));
            }
            row.insert("task_names".into(), FeatureValue::Int(0));
            out.push(row);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_matches_t5_for_its_usual_lengths() {
        // t5.data.preprocessors.random_spans_helper(…, 0.15, 3.0, 1, 1).
        assert_eq!(random_spans_helper(512, 0.15, 3.0), (568, 114));
        assert_eq!(random_spans_helper(1024, 0.15, 3.0), (1137, 229));
        assert_eq!(random_spans_helper(64, 0.15, 3.0), (70, 14));
        assert_eq!(random_spans_helper(64, 0.5, 3.0), (94, 64));
    }

    #[test]
    fn spans_alternate_and_sentinels_count_down() {
        let tokens: Vec<u32> = (10..40).collect();
        let seeds = [[3, 4], [5, 6]];
        let mask = random_spans_noise_mask(tokens.len(), 0.15, seeds, 3.0);
        assert_eq!(mask.len(), 30);
        assert!(!mask[0], "spans start with kept tokens");
        assert_eq!(mask.iter().filter(|&&m| m).count(), 4, "round(30 · 0.15)");
        let (inputs, targets) = corrupt_segment(&tokens, 0.15, 3.0, seeds, 99).unwrap();
        // Every token is in exactly one of them, each span marked by the same sentinel.
        let kept: Vec<u32> = inputs.iter().copied().filter(|&t| t < 90).collect();
        let dropped: Vec<u32> = targets.iter().copied().filter(|&t| t < 90).collect();
        assert_eq!(kept.len() + dropped.len(), 30);
        let sentinels = |ids: &[u32]| ids.iter().copied().filter(|&t| t >= 90).collect::<Vec<_>>();
        assert_eq!(
            sentinels(&inputs),
            sentinels(&targets)[..sentinels(&inputs).len()]
        );
        assert_eq!(sentinels(&inputs)[0], 99);
    }
}
