//! Few-shot variants of a task: the original HINT's `seqio_tasks/few_shot.py` (after FLAN
//! and seqio's `FewshotDataSource`), as it registers T0's `{task}_{k}_shot` tasks.
//!
//! An example gets `k` demonstrations from its own task's demonstration split (`train`;
//! `validation` for a task without one, as story_cloze), each formatted
//! `"{inputs} Output: {targets}\n\n"`. Demonstrations are kept while the running sum of
//! their input and target tokens stays within `max_input_length` minus the example's own
//! input tokens (960 in the original: 1,024 less 64 for the separators, as FLAN), and the
//! result is `shots + " Definition: " + feature`, where the feature is the hypernetwork
//! input (HINT) or the encoder input (the concatenation baseline).
//!
//! Departures from the original, for reasons:
//! * The original draws demonstrations per example from a shuffled stream of the split (an
//!   example can be its own demonstration). Here they are drawn once per task, seeded by the
//!   run's seed and the task, from a pool of rows spread over the split
//!   ([`DemonstrationPool`]): every example of a task reads the same hypernetwork input, so
//!   HINT encodes it once per task, as its efficiency claim and evaluation (one adaptation
//!   per instruction) need, and as the built-in and BIG-bench suites do. An example that is
//!   itself one of them gets the task's next demonstration instead.
//! * The original put training shots in `inputs` and evaluation shots in `hyper_inputs`
//!   (`reference/hint.md` §10); here one setting, [`ShotsInto`], holds for both.
//! * Demonstrations also stop where the receiving feature's length would cut off the
//!   definition (the hypernetwork input is shorter than 960 tokens in every configuration).

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::example::{Example, FeatureValue};
use crate::preprocessors::{text_field, Context, Preprocessor};
use crate::rng::SplitMix64;
use crate::source::{OpenOptions, Record, ShardInfo, Source};

/// Where the demonstrations go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShotsInto {
    /// Before the instruction, in `hyper_inputs` (HINT: encoded once per task).
    #[default]
    HyperInputs,
    /// Before the input, in `inputs` (concatenation: encoded with every instance).
    Inputs,
}

impl ShotsInto {
    /// The feature the demonstrations are prepended to.
    pub fn feature(self) -> &'static str {
        match self {
            Self::HyperInputs => "hyper_inputs",
            Self::Inputs => "inputs",
        }
    }
}

/// One demonstration: an input and its target, as texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demonstration {
    /// The demonstration's input.
    pub inputs: String,
    /// Its target.
    pub targets: String,
}

/// Reads a record of the demonstration split as a [`Demonstration`] (for P3: the
/// `inputs_pretokenized` and stripped `targets_pretokenized` fields).
pub type ToDemonstration = fn(&Record) -> Result<Demonstration, DataError>;

/// The demonstrations of one task: up to `size` rows of one split of its source, spread over
/// the split (every `n / size`-th row when the source knows its row count `n`, since some
/// splits are sorted by label), read on first use (a task that is never opened reads
/// nothing) and shared by its `k`-shot variants.
pub struct DemonstrationPool {
    source: Arc<dyn Source>,
    split: String,
    size: usize,
    to_demonstration: ToDemonstration,
    loaded: Mutex<Option<Arc<Vec<Demonstration>>>>,
}

impl std::fmt::Debug for DemonstrationPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemonstrationPool")
            .field("split", &self.split)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl DemonstrationPool {
    /// A pool of the first `size` rows of `split` of `source`.
    pub fn new(
        source: Arc<dyn Source>,
        split: impl Into<String>,
        size: usize,
        to_demonstration: ToDemonstration,
    ) -> Self {
        Self {
            source,
            split: split.into(),
            size,
            to_demonstration,
            loaded: Mutex::new(None),
        }
    }

    /// The split the demonstrations come from.
    pub fn split(&self) -> &str {
        &self.split
    }

    /// The pool's size limit.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The demonstrations, read on the first call. A record that cannot be read is a
    /// configuration error naming its file, row and field (not a bad record of the example
    /// being read, which a run may be told to skip).
    pub fn demonstrations(&self) -> Result<Arc<Vec<Demonstration>>, DataError> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pool) = loaded.as_ref() {
            return Ok(Arc::clone(pool));
        }
        let rows = self.source.num_input_examples(&self.split);
        let stride = rows.map_or(1, |n| (n as usize / self.size.max(1)).max(1));
        let options = OpenOptions {
            shard: ShardInfo {
                index: 0,
                num_shards: stride,
            },
            ..OpenOptions::default()
        };
        let read = || -> Result<Vec<Demonstration>, DataError> {
            let mut pool = Vec::with_capacity(self.size.min(4096));
            for record in self.source.open(&self.split, &options)?.take(self.size) {
                pool.push((self.to_demonstration)(&record?)?);
            }
            Ok(pool)
        };
        let pool = Arc::new(read().map_err(|e| {
            DataError::Config(format!(
                "reading few-shot demonstrations from split `{}`: {e}",
                self.split
            ))
        })?);
        *loaded = Some(Arc::clone(&pool));
        Ok(pool)
    }
}

/// The preprocessor that makes an example `k`-shot (see the module documentation). It
/// reads the text features `inputs`, `targets` and the one of [`ShotsInto`], so it runs
/// before tokenization.
#[derive(Debug, Clone)]
pub struct FewShot {
    /// Demonstrations per example (before pruning).
    pub shots: usize,
    /// Where they go.
    pub into: ShotsInto,
    /// The token budget of the demonstrations and the example's input together.
    pub max_input_length: usize,
    /// Where they come from.
    pub pool: Arc<DemonstrationPool>,
    /// The task's own seed (a hash of its name): with the run's seed it decides the task's
    /// demonstrations.
    pub task_seed: u64,
    /// The task's drawn demonstrations, formatted and counted once (every example of the
    /// task reads the same ones), with the (run seed, step) they were drawn for.
    drawn: Arc<Mutex<Option<DrawnFor>>>,
}

/// A task's drawn demonstrations and the (run seed, step) they were drawn for.
type DrawnFor = ((u64, usize), Arc<Vec<Drawn>>);

/// One of a task's drawn demonstrations, ready to prepend.
#[derive(Debug)]
struct Drawn {
    /// Its input, to recognise the example itself.
    inputs: String,
    /// `"{inputs} Output: {targets}\n\n"`.
    block: String,
    /// The original's count: input and target tokens.
    tokens: usize,
    /// The block's tokens, separators included.
    formatted: usize,
}

impl FewShot {
    /// `shots` demonstrations per example from `pool`, into `into`, within
    /// `max_input_length` tokens; `task_seed` tells the task's draw apart from others'.
    pub fn new(
        shots: usize,
        into: ShotsInto,
        max_input_length: usize,
        pool: Arc<DemonstrationPool>,
        task_seed: u64,
    ) -> Self {
        Self {
            shots,
            into,
            max_input_length,
            pool,
            task_seed,
            drawn: Arc::default(),
        }
    }

    /// The task's first `shots + 1` demonstrations in its own seeded order (the extra one
    /// stands in for an example that is itself among them), drawn and counted on first use.
    fn drawn(
        &self,
        ctx: &Context<'_>,
        count: impl Fn(&str) -> Result<usize, DataError>,
    ) -> Result<Arc<Vec<Drawn>>, DataError> {
        let key = (ctx.seed, ctx.step);
        let mut cached = self.drawn.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((drawn_for, drawn)) = cached.as_ref() {
            if *drawn_for == key {
                return Ok(Arc::clone(drawn));
            }
        }
        let pool = self.pool.demonstrations()?;
        let mut order: Vec<usize> = (0..pool.len()).collect();
        let mut rng = SplitMix64::derive(&[ctx.seed, ctx.step as u64, self.task_seed]);
        let taken = (self.shots + 1).min(order.len());
        for i in 0..taken {
            let j = i + rng.range(0, (order.len() - i) as u64) as usize;
            order.swap(i, j);
        }
        let drawn = order[..taken]
            .iter()
            .map(|&i| {
                let demonstration = &pool[i];
                let block = format!(
                    "{}{OUTPUT_SEPARATOR}{}{EXAMPLE_SEPARATOR}",
                    demonstration.inputs, demonstration.targets
                );
                Ok(Drawn {
                    inputs: demonstration.inputs.clone(),
                    tokens: count(&demonstration.inputs)? + count(&demonstration.targets)?,
                    formatted: count(&block)?,
                    block,
                })
            })
            .collect::<Result<Vec<_>, DataError>>()?;
        let drawn = Arc::new(drawn);
        *cached = Some((key, Arc::clone(&drawn)));
        Ok(drawn)
    }
}

/// Between a demonstration's input and its target (the original's `targets_prefix`).
pub const OUTPUT_SEPARATOR: &str = " Output: ";
/// After each demonstration (`example_separator`).
pub const EXAMPLE_SEPARATOR: &str = "\n\n";
/// Between the demonstrations and the feature (`definition_separator`).
pub const DEFINITION_SEPARATOR: &str = " Definition: ";

impl Preprocessor for FewShot {
    fn name(&self) -> String {
        format!(
            "few_shot({} from {}, pool {}, into {}, max {} tokens)",
            self.shots,
            self.pool.split(),
            self.pool.size(),
            self.into.feature(),
            self.max_input_length
        )
    }

    fn apply(&self, mut example: Example, ctx: &Context<'_>) -> Result<Vec<Example>, DataError> {
        let inputs = text_field(&example, "inputs")?.to_string();
        let feature = self.into.feature();
        let instruction = text_field(&example, feature)?.to_string();
        let vocabulary = &ctx
            .output_features
            .get("inputs")
            .ok_or_else(|| DataError::Config("few_shot needs an output feature `inputs`".into()))?
            .vocabulary;
        let count = |text: &str| -> Result<usize, DataError> {
            Ok(vocabulary.encode_with(text, false)?.len())
        };
        let drawn = self.drawn(ctx, count)?;
        // The original's budget counts the demonstrations' own tokens against the example's
        // input; the receiving feature's length bounds them with their separators, so that
        // the definition after them is never cut off.
        let mut budget = self.max_input_length.saturating_sub(count(&inputs)?);
        let mut room = match ctx
            .output_features
            .get(feature)
            .and_then(|f| f.default_length)
        {
            Some(length) => {
                length.saturating_sub(count(&format!("{DEFINITION_SEPARATOR}{instruction}"))?)
            }
            None => usize::MAX,
        };
        let mut shots = String::new();
        let chosen = drawn
            .iter()
            .filter(|demonstration| demonstration.inputs != inputs)
            .take(self.shots);
        for demonstration in chosen {
            // The original's cumulative-sum mask: once one does not fit, none after it does.
            if demonstration.tokens > budget || demonstration.formatted > room {
                break;
            }
            budget -= demonstration.tokens;
            room -= demonstration.formatted;
            shots.push_str(&demonstration.block);
        }
        let joined = format!("{shots}{DEFINITION_SEPARATOR}{instruction}");
        example.insert(feature.into(), FeatureValue::Text(joined));
        // `remove_trailing_spaces` on the inputs, whichever feature got the shots.
        let stripped = text_field(&example, "inputs")?.trim().to_string();
        example.insert("inputs".into(), FeatureValue::Text(stripped));
        Ok(vec![example])
    }
}

/// The registry name of the `k`-shot variant of a task or mixture (`{name}_{k}_shot`).
pub fn few_shot_name(name: &str, shots: usize) -> String {
    format!("{name}_{shots}_shot")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::{Feature, OutputFeatures};
    use crate::registry::toy_vocabulary;
    use crate::source::MemorySource;

    fn demonstration(record: &Record) -> Result<Demonstration, DataError> {
        let text = |field: &str| match record.example.get(field) {
            Some(FeatureValue::Text(t)) => Ok(t.clone()),
            _ => Err(record.field_error(field, "expected text")),
        };
        Ok(Demonstration {
            inputs: text("inputs")?,
            targets: text("targets")?,
        })
    }

    fn row(inputs: &str, targets: &str) -> Example {
        let mut example = Example::new();
        example.insert("inputs".into(), FeatureValue::from(inputs));
        example.insert("targets".into(), FeatureValue::from(targets));
        example.insert("hyper_inputs".into(), FeatureValue::from("copy it"));
        example
    }

    fn pool(rows: &[(&str, &str)]) -> Arc<DemonstrationPool> {
        let examples = rows.iter().map(|(i, t)| row(i, t)).collect();
        let source: Arc<dyn Source> = Arc::new(MemorySource::new().split("train", examples));
        Arc::new(DemonstrationPool::new(source, "train", 100, demonstration))
    }

    fn features() -> OutputFeatures {
        let vocabulary = Arc::new(toy_vocabulary().unwrap());
        let mut features = OutputFeatures::new();
        features.insert("inputs".into(), Feature::new(vocabulary));
        features
    }

    fn apply(few_shot: &FewShot, example: Example, index: u64) -> Example {
        let features = features();
        let ctx = Context {
            output_features: &features,
            seed: 3,
            step: 1,
            index,
        };
        few_shot.apply(example, &ctx).unwrap().remove(0)
    }

    fn text(example: &Example, field: &str) -> String {
        match &example[field] {
            FeatureValue::Text(t) => t.clone(),
            other => panic!("{field}: {other:?}"),
        }
    }

    const ROWS: [(&str, &str); 4] = [("a", "A"), ("b", "B"), ("c", "C"), ("d", "D")];

    /// `shots` demonstrations of [`ROWS`] into the hypernetwork input.
    fn into_hyper(shots: usize, max_input_length: usize, task_seed: u64) -> FewShot {
        FewShot::new(
            shots,
            ShotsInto::HyperInputs,
            max_input_length,
            pool(&ROWS),
            task_seed,
        )
    }

    #[test]
    fn demonstrations_precede_the_definition_in_the_chosen_feature() {
        let to_hyper = into_hyper(2, 960, 1);
        let out = apply(&to_hyper, row("b ", "B"), 0);
        let hyper = text(&out, "hyper_inputs");
        let parts: Vec<&str> = hyper.split(EXAMPLE_SEPARATOR).collect();
        assert_eq!(parts.len(), 3, "{hyper:?}");
        assert_eq!(parts[2], " Definition: copy it");
        for part in &parts[..2] {
            let (input, target) = part.split_once(OUTPUT_SEPARATOR).unwrap();
            assert_eq!(target, input.to_uppercase(), "{hyper:?}");
        }
        assert_ne!(parts[0], parts[1], "distinct demonstrations");
        assert_eq!(text(&out, "inputs"), "b", "inputs are stripped");

        let into_inputs = FewShot {
            into: ShotsInto::Inputs,
            ..to_hyper.clone()
        };
        let out = apply(&into_inputs, row("b", "B"), 0);
        assert_eq!(text(&out, "hyper_inputs"), "copy it");
        assert!(text(&out, "inputs").ends_with(" Definition: b"));
        assert!(text(&out, "inputs").contains(" Output: "));
    }

    #[test]
    fn a_task_draws_its_demonstrations_once_and_an_example_never_sees_itself() {
        let few_shot = |task_seed| into_hyper(2, 960, task_seed);
        let task = few_shot(7);
        let shared = text(&apply(&task, row("e", "E"), 0), "hyper_inputs");
        assert_eq!(shared.matches(OUTPUT_SEPARATOR).count(), 2);
        for index in 1..20 {
            let again = text(&apply(&task, row("e", "E"), index), "hyper_inputs");
            assert_eq!(again, shared, "one hypernetwork input per task");
        }
        // The examples that are themselves demonstrations get the task's next one instead.
        for (input, target) in ROWS {
            let hyper = text(&apply(&task, row(input, target), 3), "hyper_inputs");
            assert!(!hyper.contains(&format!("{input} Output:")), "{hyper:?}");
            assert_eq!(hyper.matches(OUTPUT_SEPARATOR).count(), 2, "{hyper:?}");
        }
        let tasks: std::collections::BTreeSet<String> = (0..8)
            .map(|seed| text(&apply(&few_shot(seed), row("e", "E"), 0), "hyper_inputs"))
            .collect();
        assert!(tasks.len() > 1, "tasks draw differently");
    }

    #[test]
    fn demonstrations_stop_where_the_feature_would_cut_off_the_definition() {
        let few_shot = into_hyper(3, 960, 0);
        let mut features = features();
        let vocabulary = Arc::clone(&features["inputs"].vocabulary);
        // " Definition: copy it" is 4 tokens; a demonstration "a Output: A\n\n" 4.
        features.insert("hyper_inputs".into(), Feature::new(vocabulary).length(12));
        let ctx = Context {
            output_features: &features,
            seed: 0,
            step: 0,
            index: 0,
        };
        let out = few_shot.apply(row("e", "E"), &ctx).unwrap().remove(0);
        let hyper = text(&out, "hyper_inputs");
        assert_eq!(hyper.matches(OUTPUT_SEPARATOR).count(), 2, "{hyper:?}");
        assert!(hyper.ends_with(" Definition: copy it"));
    }

    #[test]
    fn demonstrations_are_pruned_to_the_token_budget() {
        // The toy vocabulary's words are one token each; "a" and "A" make a demonstration
        // of 2 tokens, the example's input 1.
        let few_shot = into_hyper(3, 5, 0);
        let hyper = text(&apply(&few_shot, row("e", "E"), 0), "hyper_inputs");
        assert_eq!(hyper.matches(OUTPUT_SEPARATOR).count(), 2, "{hyper:?}");
        let none_fit = FewShot {
            max_input_length: 2,
            ..few_shot
        };
        let hyper = text(&apply(&none_fit, row("e", "E"), 0), "hyper_inputs");
        assert_eq!(hyper, " Definition: copy it");
    }

    #[test]
    fn a_bad_demonstration_row_is_named() {
        let mut bad = row("a", "A");
        bad.insert("targets".into(), FeatureValue::Int(3));
        let source: Arc<dyn Source> = Arc::new(MemorySource::new().split("train", vec![bad]));
        let pool = Arc::new(DemonstrationPool::new(source, "train", 10, demonstration));
        let few_shot = FewShot::new(1, ShotsInto::HyperInputs, 960, pool, 0);
        let features = features();
        let ctx = Context {
            output_features: &features,
            seed: 0,
            step: 0,
            index: 0,
        };
        let err = few_shot.apply(row("b", "B"), &ctx).unwrap_err().to_string();
        assert!(err.contains("targets"), "{err}");
    }
}
