//! Evaluation metrics: the Super-NaturalInstructions pair (ROUGE-L and exact match, max over
//! references, mean × 100), seqio-style accuracy, and rank-classification accuracy from
//! per-choice scores (the T0 / P3 held-out evaluation).
//!
//! ROUGE-L is the F-measure of Google's `rouge-score` 0.1.2 with `use_stemmer=True`: its
//! tokenizer (lowercase, `[^a-z0-9]+` → space, NLTK Porter stemmer on tokens longer than three
//! characters) and the LCS over the whole token sequence (`rougeL`, not `rougeLsum`). The
//! `rougers` crate implements exactly that; `tests/metrics_golden.rs` checks it against numbers
//! produced by the Python package (`scripts/metrics_golden.py`).

use thiserror::Error;

/// Why a metric could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MetricError {
    /// Predictions and references (or targets, or labels) differ in number.
    #[error("{what}: {predictions} predictions but {references} references")]
    LengthMismatch {
        /// Which metric was asked.
        what: &'static str,
        /// Number of predictions.
        predictions: usize,
        /// Number of references (targets, labels).
        references: usize,
    },
    /// An example has no reference to compare with (Super-NI's `max` would fail too).
    #[error("{what}: example {index} has no references")]
    NoReferences {
        /// Which metric was asked.
        what: &'static str,
        /// The example's position.
        index: usize,
    },
    /// A rank-classification example has no answer choice.
    #[error("rank classification: example {index} has no answer choices")]
    NoChoices {
        /// The example's position (or its `idx[0]`).
        index: usize,
    },
    /// A metric name that [`evaluate_named`] does not know.
    #[error("unknown metric `{0}` (known: rouge_l, exact_match, accuracy)")]
    UnknownMetric(String),
    /// A rank-classification label points outside the example's choices.
    #[error("rank classification: example {index} has label {label} but {choices} choices")]
    LabelOutOfRange {
        /// The example's position.
        index: usize,
        /// The label.
        label: usize,
        /// How many choices the example has.
        choices: usize,
    },
}

/// Super-NI's answer normalisation (`eval/automatic/evaluation.py`): lowercase, remove every
/// ASCII punctuation character (Python's `string.punctuation`), collapse whitespace.
///
/// Articles are kept, unlike SQuAD's normalisation. Lowercasing is Unicode-aware, as Python's
/// `str.lower`.
pub fn normalize_answer(text: &str) -> String {
    let lowered = text.to_lowercase();
    let without_punctuation: String = lowered
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    // `str.split()` without arguments splits on Unicode whitespace, as Rust's `split_whitespace`.
    without_punctuation
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Super-NI exact match of one prediction against one reference, after [`normalize_answer`].
pub fn exact_match(prediction: &str, reference: &str) -> bool {
    normalize_answer(prediction) == normalize_answer(reference)
}

/// A reusable ROUGE-L scorer with rouge-score's tokenizer and Porter stemmer.
///
/// Tokenisation is `rougers`' copy of rouge-score's (checked against it); the LCS and the
/// F-measure are rouge-score's `_score_lcs`: `P = LCS/len(pred)`, `R = LCS/len(ref)`,
/// `F = 2PR/(P+R)`, and 0 when either side has no tokens.
#[derive(Debug, Clone, Copy)]
pub struct RougeL {
    tokenizer: rougers::Tokenizer,
}

impl Default for RougeL {
    /// Stemming on, as [`RougeL::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl RougeL {
    /// A scorer with stemming on, as the Super-NI evaluation uses it.
    pub fn new() -> Self {
        Self {
            tokenizer: rougers::Tokenizer::new(true),
        }
    }

    /// rouge-score's tokens of `text` (lowercased, split on non-alphanumerics, stemmed).
    pub fn tokenize(&self, text: &str) -> Vec<String> {
        self.tokenizer.tokenize(text)
    }

    /// ROUGE-L F-measure of `prediction` against `reference` (0 when either has no tokens).
    pub fn fmeasure(&self, prediction: &str, reference: &str) -> f64 {
        lcs_fmeasure(&self.tokenize(prediction), &self.tokenize(reference))
    }

    /// The best ROUGE-L F-measure over several references; `None` when there are none.
    pub fn max_fmeasure<S: AsRef<str>>(&self, prediction: &str, references: &[S]) -> Option<f64> {
        let prediction = self.tokenize(prediction);
        references
            .iter()
            .map(|reference| lcs_fmeasure(&prediction, &self.tokenize(reference.as_ref())))
            .reduce(f64::max)
    }
}

/// rouge-score's `_score_lcs` on token lists.
fn lcs_fmeasure(prediction: &[String], reference: &[String]) -> f64 {
    if prediction.is_empty() || reference.is_empty() {
        return 0.0;
    }
    let lcs = lcs_length(prediction, reference);
    let precision = lcs as f64 / prediction.len() as f64;
    let recall = lcs as f64 / reference.len() as f64;
    rougers::fmeasure(precision, recall)
}

/// Length of the longest common subsequence, with one DP row (O(n·m) time, O(m) memory).
fn lcs_length(a: &[String], b: &[String]) -> usize {
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        let mut diagonal = 0;
        for (j, y) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if x == y {
                diagonal + 1
            } else {
                above.max(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// ROUGE-L F-measure of one prediction against one reference (builds a scorer; use [`RougeL`]
/// in loops).
pub fn rouge_l(prediction: &str, reference: &str) -> f64 {
    RougeL::new().fmeasure(prediction, reference)
}

/// The best exact match over several references; `None` when there are none.
pub fn max_exact_match<S: AsRef<str>>(prediction: &str, references: &[S]) -> Option<bool> {
    let normalized = normalize_answer(prediction);
    references
        .iter()
        .map(|reference| normalize_answer(reference.as_ref()) == normalized)
        .reduce(|a, b| a || b)
}

/// Per-example Super-NI scores (each in `[0, 1]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SuperNiExampleScore {
    /// 1 when the prediction equals some reference after normalisation, else 0.
    pub exact_match: f64,
    /// The best ROUGE-L F-measure over the references.
    pub rouge_l: f64,
}

/// Aggregated Super-NI scores: means over examples × 100, as `evaluation.py` reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct SuperNiScores {
    /// Mean exact match × 100.
    pub exact_match: f64,
    /// Mean ROUGE-L × 100.
    pub rouge_l: f64,
    /// Number of examples.
    pub count: usize,
    /// The per-example scores, in input order.
    pub per_example: Vec<SuperNiExampleScore>,
}

impl SuperNiScores {
    /// Exact match rounded to 4 decimals, as Super-NI prints it.
    pub fn exact_match_rounded(&self) -> f64 {
        round_to(self.exact_match, 4)
    }

    /// ROUGE-L rounded to 4 decimals, as Super-NI prints it.
    pub fn rouge_l_rounded(&self) -> f64 {
        round_to(self.rouge_l, 4)
    }
}

/// Rounds to `decimals` places, half away from zero. Python's `round` rounds half to even on
/// the exact binary value; the two only differ on exact binary ties, which means of ×100 scores
/// practically never hit.
pub fn round_to(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// The Super-NI evaluation of `predictions` against `references` (one list per example, max
/// over the list). An empty list of examples gives zeros.
pub fn superni_scores<P, R>(
    predictions: &[P],
    references: &[R],
) -> Result<SuperNiScores, MetricError>
where
    P: AsRef<str>,
    R: AsRef<[String]>,
{
    if predictions.len() != references.len() {
        return Err(MetricError::LengthMismatch {
            what: "Super-NI scores",
            predictions: predictions.len(),
            references: references.len(),
        });
    }
    let scorer = RougeL::new();
    let mut per_example = Vec::with_capacity(predictions.len());
    for (index, (prediction, refs)) in predictions.iter().zip(references).enumerate() {
        let refs = refs.as_ref();
        let prediction = prediction.as_ref();
        let no_refs = || MetricError::NoReferences {
            what: "Super-NI scores",
            index,
        };
        let em = max_exact_match(prediction, refs).ok_or_else(no_refs)?;
        let rl = scorer.max_fmeasure(prediction, refs).ok_or_else(no_refs)?;
        per_example.push(SuperNiExampleScore {
            exact_match: if em { 1.0 } else { 0.0 },
            rouge_l: rl,
        });
    }
    let count = per_example.len();
    Ok(SuperNiScores {
        exact_match: mean_times_100(per_example.iter().map(|s| s.exact_match), count),
        rouge_l: mean_times_100(per_example.iter().map(|s| s.rouge_l), count),
        count,
        per_example,
    })
}

/// Sums left to right as Python's `sum` does, so that the aggregate equals `evaluation.py`'s.
fn mean_times_100(values: impl Iterator<Item = f64>, count: usize) -> f64 {
    if count == 0 {
        return 0.0;
    }
    100.0 * values.sum::<f64>() / count as f64
}

/// seqio's `accuracy`: the percentage (× 100) of predictions equal to their targets. Empty
/// input gives 0.
pub fn accuracy<T: PartialEq>(predictions: &[T], targets: &[T]) -> Result<f64, MetricError> {
    if predictions.len() != targets.len() {
        return Err(MetricError::LengthMismatch {
            what: "accuracy",
            predictions: predictions.len(),
            references: targets.len(),
        });
    }
    let correct = predictions
        .iter()
        .zip(targets)
        .filter(|(p, t)| p == t)
        .count();
    Ok(mean_times_100(
        std::iter::once(correct as f64),
        predictions.len(),
    ))
}

/// The index of the highest score; the first one on ties (as `numpy.argmax`). NaN scores never
/// win. `None` for an empty slice.
pub fn argmax(scores: &[f64]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, &s) in scores.iter().enumerate() {
        match best {
            None => best = Some((i, s)),
            Some((_, b)) if s > b || (b.is_nan() && !s.is_nan()) => best = Some((i, s)),
            _ => {}
        }
    }
    best.map(|(i, _)| i)
}

/// Rank-classification accuracy (× 100): per example, the choice with the highest score (the
/// summed target log-likelihood, no length normalisation) is the prediction; it is correct when
/// it equals the label.
pub fn rank_classification_accuracy(
    choice_scores: &[Vec<f64>],
    labels: &[usize],
) -> Result<f64, MetricError> {
    if choice_scores.len() != labels.len() {
        return Err(MetricError::LengthMismatch {
            what: "rank classification",
            predictions: choice_scores.len(),
            references: labels.len(),
        });
    }
    let mut correct = 0usize;
    for (index, (scores, &label)) in choice_scores.iter().zip(labels).enumerate() {
        let best = argmax(scores).ok_or(MetricError::NoChoices { index })?;
        if label >= scores.len() {
            return Err(MetricError::LabelOutOfRange {
                index,
                label,
                choices: scores.len(),
            });
        }
        correct += usize::from(best == label);
    }
    Ok(mean_times_100(
        std::iter::once(correct as f64),
        labels.len(),
    ))
}

/// One row of seqio's rank-classification layout: one (example, choice) pair with its score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankedChoice {
    /// The example index (`idx[0]`).
    pub example: usize,
    /// The model's score for this choice (summed target log-likelihood).
    pub score: f64,
    /// Whether this choice is a correct answer.
    pub is_correct: bool,
}

/// seqio's `rank_classification` metric on rows: groups rows by example (in order of first
/// appearance), takes the highest-scoring row of each group (the first on ties) and counts the
/// example as correct when that row `is_correct`. Returns accuracy × 100.
pub fn rank_classification_accuracy_rows(rows: &[RankedChoice]) -> f64 {
    let mut order: Vec<usize> = Vec::new();
    let mut best: std::collections::HashMap<usize, (f64, bool)> = std::collections::HashMap::new();
    for row in rows {
        match best.get_mut(&row.example) {
            None => {
                order.push(row.example);
                best.insert(row.example, (row.score, row.is_correct));
            }
            Some(entry) => {
                if row.score > entry.0 || (entry.0.is_nan() && !row.score.is_nan()) {
                    *entry = (row.score, row.is_correct);
                }
            }
        }
    }
    let correct = order
        .iter()
        .filter(|e| best.get(e).is_some_and(|(_, ok)| *ok))
        .count();
    mean_times_100(std::iter::once(correct as f64), order.len())
}

/// The metric names a task may declare ([`crate::task::TaskBuilder::metric`]): `exact_match`
/// and `rouge_l` (Super-NI, max over references), `accuracy` (the prediction equals the
/// first reference) and `rank_classification` (T0's: the highest-scoring answer choice is
/// the right one).
pub const METRIC_NAMES: &[&str] = &["exact_match", "rouge_l", "accuracy", "rank_classification"];

/// Evaluates the metrics a task names (`Task::metrics`): `rouge_l` and `exact_match` (Super-NI,
/// max over references, × 100) and `accuracy` (prediction equals the first reference, × 100).
/// Returns name → score in the order asked; an unknown name is an error.
pub fn evaluate_named<P, R>(
    names: &[String],
    predictions: &[P],
    references: &[R],
) -> Result<Vec<(String, f64)>, MetricError>
where
    P: AsRef<str>,
    R: AsRef<[String]>,
{
    let mut superni: Option<SuperNiScores> = None;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let value = match name.as_str() {
            "rouge_l" | "exact_match" => {
                if superni.is_none() {
                    superni = Some(superni_scores(predictions, references)?);
                }
                let scores = superni
                    .as_ref()
                    .map_or((0.0, 0.0), |s| (s.rouge_l, s.exact_match));
                if name == "rouge_l" {
                    scores.0
                } else {
                    scores.1
                }
            }
            "accuracy" => {
                let firsts: Vec<&str> = references
                    .iter()
                    .map(|r| r.as_ref().first().map_or("", String::as_str))
                    .collect();
                let preds: Vec<&str> = predictions.iter().map(AsRef::as_ref).collect();
                accuracy(&preds, &firsts)?
            }
            other => return Err(MetricError::UnknownMetric(other.to_string())),
        };
        out.push((name.clone(), value));
    }
    Ok(out)
}

/// The mean of per-prompt scores (HINT's aggregation over prompts); `None` when empty.
pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// The median of per-prompt scores (T0's aggregation over prompts; the mean of the two middle
/// values for an even count, as `numpy.median`); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_keeps_articles_and_drops_ascii_punctuation() {
        assert_eq!(
            normalize_answer("  The Answer, is: 42! "),
            "the answer is 42"
        );
        assert_eq!(normalize_answer("an apple"), "an apple");
        assert_eq!(normalize_answer("café—ok"), "café—ok");
        assert!(exact_match("a, 34, f.", "A 34 F"));
        assert!(!exact_match("an apple", "apple"));
    }

    #[test]
    fn rouge_l_matches_the_documented_samples() {
        let scorer = RougeL::new();
        let f = scorer.fmeasure(
            "The quick brown dog jumps on the log.",
            "The quick brown fox jumps over the lazy dog",
        );
        assert!((f - 0.588_235_294_117_647).abs() < 1e-12, "{f}");
        assert!((rouge_l("[33, 47, 268, 114]", "[33, 47, 114, 268]") - 0.75).abs() < 1e-12);
        assert_eq!(rouge_l("", "anything"), 0.0);
        assert_eq!(rouge_l("北京", "北京"), 0.0);
        assert_eq!(
            rouge_l(
                "running runs ran runner generously generalization",
                "run running ran runners generous generalizations"
            ),
            1.0
        );
    }

    #[test]
    fn superni_scores_take_the_max_over_references() {
        let scores = superni_scores(
            &["yes", "blue sky", ""],
            &[
                vec!["no".to_string(), "Yes.".to_string()],
                vec!["the blue sky".to_string()],
                vec!["x".to_string()],
            ],
        )
        .unwrap();
        assert_eq!(scores.count, 3);
        assert_eq!(scores.per_example[0].exact_match, 1.0);
        assert_eq!(scores.per_example[1].exact_match, 0.0);
        assert!((scores.per_example[1].rouge_l - 0.8).abs() < 1e-12);
        assert!((scores.exact_match - 100.0 / 3.0).abs() < 1e-9);
        assert!((scores.rouge_l - 60.0).abs() < 1e-9);
        assert_eq!(scores.exact_match_rounded(), 33.3333);
    }

    #[test]
    fn bad_shapes_are_errors() {
        let err = superni_scores(&["a"], &[vec!["a".to_string()], vec![]]).unwrap_err();
        assert!(matches!(err, MetricError::LengthMismatch { .. }));
        let err = superni_scores(&["a"], &[Vec::<String>::new()]).unwrap_err();
        assert_eq!(
            err,
            MetricError::NoReferences {
                what: "Super-NI scores",
                index: 0
            }
        );
        assert!(accuracy(&[1, 2], &[1]).is_err());
        assert_eq!(
            rank_classification_accuracy(&[vec![]], &[0]).unwrap_err(),
            MetricError::NoChoices { index: 0 }
        );
        assert!(matches!(
            rank_classification_accuracy(&[vec![0.0, 1.0]], &[2]).unwrap_err(),
            MetricError::LabelOutOfRange { label: 2, .. }
        ));
    }

    #[test]
    fn accuracy_and_rank_classification() {
        assert_eq!(
            accuracy(&["a", "b", "c", "d"], &["a", "x", "c", "d"]).unwrap(),
            75.0
        );
        assert_eq!(accuracy::<i32>(&[], &[]).unwrap(), 0.0);
        let scores = vec![
            vec![-1.0, -3.0],
            vec![-2.0, -0.5, -4.0],
            vec![-1.0, -1.0],
            vec![f64::NAN, -7.0],
        ];
        // argmax: 0, 1, 0 (first on ties), 1 (NaN never wins).
        assert_eq!(argmax(&scores[2]), Some(0));
        assert_eq!(argmax(&scores[3]), Some(1));
        assert_eq!(
            rank_classification_accuracy(&scores, &[0, 1, 1, 1]).unwrap(),
            75.0
        );
        let rows = [
            RankedChoice {
                example: 7,
                score: -1.0,
                is_correct: false,
            },
            RankedChoice {
                example: 7,
                score: -0.5,
                is_correct: true,
            },
            RankedChoice {
                example: 3,
                score: -2.0,
                is_correct: true,
            },
            RankedChoice {
                example: 3,
                score: -2.0,
                is_correct: false,
            },
        ];
        assert_eq!(rank_classification_accuracy_rows(&rows), 100.0);
        assert_eq!(rank_classification_accuracy_rows(&[]), 0.0);
    }

    #[test]
    fn named_metrics() {
        let names = vec![
            "exact_match".to_string(),
            "accuracy".to_string(),
            "rouge_l".to_string(),
        ];
        let refs = vec![
            vec!["a b".to_string()],
            vec!["x".to_string(), "y".to_string()],
        ];
        let scores = evaluate_named(&names, &["A b.", "y"], &refs).unwrap();
        assert_eq!(scores[0], ("exact_match".to_string(), 100.0));
        assert_eq!(scores[1], ("accuracy".to_string(), 0.0));
        assert_eq!(scores[2], ("rouge_l".to_string(), 100.0));
        let err = evaluate_named(&["bleu".to_string()], &["a"], &[vec!["a".to_string()]]);
        assert_eq!(err.unwrap_err(), MetricError::UnknownMetric("bleu".into()));
    }

    #[test]
    fn mean_and_median() {
        assert_eq!(mean(&[1.0, 2.0, 6.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(mean(&[]), None);
    }
}
