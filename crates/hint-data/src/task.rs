//! Tasks, mixtures and the registry (seqio's `Task`, `Mixture`, `TaskRegistry`).
//!
//! # Defining a task
//!
//! A [`Task`] is a name, a [`Source`], ordered [`Preprocessor`]s, [`OutputFeatures`] (the
//! features the model reads, each with its vocabulary, EOS rule and optional default length)
//! and the names of its metrics:
//!
//! ```
//! # use std::sync::Arc;
//! # use hint_data::{Task, MemorySource, Feature, preprocessors::{HintSplit, Tokenize}};
//! # fn demo(vocab: Arc<hint_data::Vocabulary>) -> Result<Task, hint_data::DataError> {
//! let task = Task::builder("my_task", MemorySource::new().split("train", vec![]))
//!     .preprocessor(HintSplit::new("{definition}", "{input}")?)
//!     .preprocessor(Tokenize::default())
//!     .output_feature("inputs", Feature::new(Arc::clone(&vocab)))
//!     .output_feature("hyper_inputs", Feature::new(Arc::clone(&vocab)))
//!     .output_feature("targets", Feature::new(vocab))
//!     .metric("rouge_l")
//!     .build()?;
//! # Ok(task) }
//! ```
//!
//! Tokenization is an ordinary preprocessor ([`crate::preprocessors::Tokenize`]), placed
//! where the task needs it (the C4 split works on tokens, so it comes after). Put
//! [`TaskBuilder::cache_placeholder`] where offline caching stops: steps before it run once
//! in `hint cache-tasks`, steps after it run at read time.
//!
//! # Reading a task
//!
//! [`Task::open`] streams a split's preprocessed examples (`Result<Example, DataError>`),
//! reading records in chunks and running the preprocessors of a chunk on all cores; errors
//! name the task, split, file and line (or row) and field. With
//! [`ReadOptions::skip_bad_records`] bad records are logged, counted
//! ([`TaskStream::skipped`]) and skipped. With [`ReadOptions::use_cached`] the stream starts
//! from the task's Parquet cache.
//!
//! # Mixtures and the registry
//!
//! A [`Mixture`] lists tasks or sub-mixtures with a [`Rate`]: explicit, or
//! example-proportional with an optional cap and temperature (seqio's
//! `mixing_rate_num_examples`). A [`TaskRegistry`] holds both; adding a mixture whose member
//! is unknown fails with [`DataError::UnknownTask`], which suggests the closest name.
//! [`TaskRegistry::resolve`] flattens a task or mixture into (task, rate) pairs, which
//! [`crate::iterator::BatchIterator`] samples from.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use rayon::prelude::*;
use regex::Regex;
use serde::Deserialize;

use crate::cache::{CacheSignature, CachedSource};
use crate::error::{suggest, DataError};
use crate::example::Example;
use crate::feature_converter::FeatureLengths;
use crate::features::{Feature, OutputFeatures};
use crate::preprocessors::{Context, Preprocessor};
use crate::source::{skip_bad_records, OpenOptions, Record, RecordStream, ShardInfo, Source};
use crate::vocabulary::Vocabulary;

/// A seqio-style task: source + preprocessors + output features + metrics.
pub struct Task {
    name: String,
    source: Arc<dyn Source>,
    preprocessors: Vec<Arc<dyn Preprocessor>>,
    cache_boundary: Option<usize>,
    output_features: OutputFeatures,
    metrics: Vec<String>,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("name", &self.name)
            .field("splits", &self.source.splits())
            .field("preprocessors", &self.preprocessor_names())
            .field("output_features", &self.output_features)
            .field("metrics", &self.metrics)
            .finish()
    }
}

/// Builds a [`Task`].
pub struct TaskBuilder {
    task: Task,
}

impl TaskBuilder {
    /// Appends a preprocessor.
    pub fn preprocessor(mut self, preprocessor: impl Preprocessor + 'static) -> Self {
        self.task.preprocessors.push(Arc::new(preprocessor));
        self
    }

    /// Appends an already shared preprocessor (e.g. from [`crate::preprocessors::PreprocessorSpec::build`]).
    pub fn shared_preprocessor(mut self, preprocessor: Arc<dyn Preprocessor>) -> Self {
        self.task.preprocessors.push(preprocessor);
        self
    }

    /// Marks where offline caching stops (seqio's `CacheDatasetPlaceholder`): the
    /// preprocessors added so far run when caching, later ones at read time.
    pub fn cache_placeholder(mut self) -> Self {
        self.task.cache_boundary = Some(self.task.preprocessors.len());
        self
    }

    /// Adds an output feature.
    pub fn output_feature(mut self, name: impl Into<String>, feature: Feature) -> Self {
        self.task.output_features.insert(name.into(), feature);
        self
    }

    /// Adds HINT's three output features over one vocabulary: `inputs`, `hyper_inputs`
    /// (EOS when `inputs_eos`) and `targets` (always EOS), with default lengths `lengths`.
    pub fn hint_features(
        self,
        vocabulary: &Arc<Vocabulary>,
        lengths: FeatureLengths,
        inputs_eos: bool,
    ) -> Self {
        let FeatureLengths {
            inputs: li,
            hyper_inputs: lh,
            targets: lt,
        } = lengths;
        let feature = |length| Feature::new(Arc::clone(vocabulary)).length(length);
        self.output_feature("inputs", feature(li).add_eos(inputs_eos))
            .output_feature("hyper_inputs", feature(lh).add_eos(inputs_eos))
            .output_feature("targets", feature(lt))
    }

    /// Adds a metric name (resolved by the evaluator, e.g. `rouge_l`, `exact_match`).
    pub fn metric(mut self, name: impl Into<String>) -> Self {
        self.task.metrics.push(name.into());
        self
    }

    /// Checks and returns the task.
    pub fn build(self) -> Result<Task, DataError> {
        if self.task.name.is_empty() {
            return Err(DataError::Config("a task needs a name".into()));
        }
        if self.task.output_features.is_empty() {
            return Err(DataError::Config(format!(
                "task `{}` has no output features",
                self.task.name
            )));
        }
        // Checked here, when the configuration is built, not after training.
        if let Some(metric) = self
            .task
            .metrics
            .iter()
            .find(|m| !crate::metrics::METRIC_NAMES.contains(&m.as_str()))
        {
            return Err(DataError::UnknownMetric {
                task: self.task.name.clone(),
                metric: metric.clone(),
                known: crate::metrics::METRIC_NAMES.join(", "),
            });
        }
        Ok(self.task)
    }
}

/// How a task's split is read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ReadOptions {
    /// The shard to read.
    pub shard: ShardInfo,
    /// The seed of preprocessors' randomness (and of file shuffling).
    pub seed: u64,
    /// Shuffle file order (seeded).
    pub shuffle_files: bool,
    /// Log, count and skip records that fail instead of stopping.
    pub skip_bad_records: bool,
    /// Read from the task's cache in `cache_dirs` (error when absent or mismatched).
    pub use_cached: bool,
    /// Folders searched for caches (the first with a completed cache of the task wins).
    pub cache_dirs: Vec<PathBuf>,
}

/// Which preprocessors a stream runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// All of them (reading the source).
    All,
    /// Those before the cache placeholder (writing a cache).
    BeforeCache,
}

impl Task {
    /// Starts building a task.
    pub fn builder(name: impl Into<String>, source: impl Source + 'static) -> TaskBuilder {
        Self::builder_shared(name, Arc::new(source))
    }

    /// Starts building a task over a shared source.
    pub fn builder_shared(name: impl Into<String>, source: Arc<dyn Source>) -> TaskBuilder {
        TaskBuilder {
            task: Task {
                name: name.into(),
                source,
                preprocessors: Vec::new(),
                cache_boundary: None,
                output_features: OutputFeatures::new(),
                metrics: Vec::new(),
            },
        }
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The source.
    pub fn source(&self) -> &Arc<dyn Source> {
        &self.source
    }

    /// The split names.
    pub fn splits(&self) -> Vec<String> {
        self.source.splits()
    }

    /// The output features.
    pub fn output_features(&self) -> &OutputFeatures {
        &self.output_features
    }

    /// The metric names.
    pub fn metrics(&self) -> &[String] {
        &self.metrics
    }

    /// The preprocessors' names, in order (`cache_placeholder` shown where it sits).
    pub fn preprocessor_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.preprocessors.iter().map(|p| p.name()).collect();
        if let Some(b) = self.cache_boundary {
            names.insert(b, "cache_placeholder".into());
        }
        names
    }

    /// What a cache of this task records and a cached read checks: the output features
    /// and the preprocessors before the cache placeholder.
    pub fn cache_signature(&self) -> CacheSignature {
        let names = self.preprocessor_names();
        CacheSignature::new(
            &self.output_features,
            &names[..self.cache_boundary().min(names.len())],
        )
    }

    /// How many preprocessors run before caching.
    pub fn cache_boundary(&self) -> usize {
        self.cache_boundary.unwrap_or(self.preprocessors.len())
    }

    /// The number of examples of a split: from cache statistics in `cache_dirs` when a
    /// completed cache exists, else from the source when it knows.
    pub fn num_examples(&self, split: &str, cache_dirs: &[PathBuf]) -> Option<u64> {
        crate::cache::cached_num_examples(&self.name, split, cache_dirs)
            .or_else(|| self.source.num_input_examples(split))
    }

    fn check_split(&self, split: &str) -> Result<(), DataError> {
        let splits = self.source.splits();
        if splits.iter().any(|s| s == split) {
            Ok(())
        } else {
            Err(DataError::UnknownSplit {
                task: self.name.clone(),
                split: split.into(),
                available: splits.join(", "),
            })
        }
    }

    /// Streams the preprocessed examples of `split`.
    pub fn open(
        self: &Arc<Self>,
        split: &str,
        options: &ReadOptions,
    ) -> Result<TaskStream, DataError> {
        self.open_stage(split, options, Stage::All)
    }

    /// Streams `split` through the preprocessors of `stage`.
    pub fn open_stage(
        self: &Arc<Self>,
        split: &str,
        options: &ReadOptions,
        stage: Stage,
    ) -> Result<TaskStream, DataError> {
        let open_options = OpenOptions {
            shard: options.shard,
            shuffle_files_seed: options.shuffle_files.then_some(options.seed),
        };
        let (records, steps) = if options.use_cached && stage == Stage::All {
            let cached =
                CachedSource::find(&self.name, &options.cache_dirs, self.cache_signature())?;
            let records = cached.open(split, &open_options)?;
            (records, self.cache_boundary()..self.preprocessors.len())
        } else {
            self.check_split(split)?;
            let records = self
                .source
                .open(split, &open_options)
                .map_err(|e| match e {
                    DataError::UnknownSplit {
                        split, available, ..
                    } => DataError::UnknownSplit {
                        task: self.name.clone(),
                        split,
                        available,
                    },
                    other => other,
                })?;
            let end = match stage {
                Stage::All => self.preprocessors.len(),
                Stage::BeforeCache => self.cache_boundary(),
            };
            (records, 0..end)
        };
        let skipped = Arc::new(AtomicU64::new(0));
        Ok(TaskStream {
            task: Arc::clone(self),
            split: split.to_string(),
            records: skip_bad_records(records, options.skip_bad_records, Arc::clone(&skipped)),
            steps,
            seed: options.seed,
            skip_bad_records: options.skip_bad_records,
            skipped,
            records_read: 0,
            pending: VecDeque::new(),
            chunk_size: 256,
            exhausted: false,
        })
    }

    /// Runs preprocessors `steps` on one record; errors carry the task, split and origin.
    fn preprocess(
        &self,
        split: &str,
        record: Record,
        index: u64,
        seed: u64,
        steps: std::ops::Range<usize>,
    ) -> Result<Vec<Example>, DataError> {
        let origin = record.origin();
        let mut examples = vec![record.example];
        for step in steps {
            let ctx = Context {
                output_features: &self.output_features,
                seed,
                step,
                index,
            };
            let mut next = Vec::with_capacity(examples.len());
            for example in examples {
                let out = self.preprocessors[step].apply(example, &ctx).map_err(|e| {
                    DataError::InTask {
                        task: self.name.clone(),
                        split: split.to_string(),
                        origin: origin.clone(),
                        source: Box::new(e),
                    }
                })?;
                next.extend(out);
            }
            examples = next;
        }
        Ok(examples)
    }
}

/// A stream of a task split's preprocessed examples.
pub struct TaskStream {
    task: Arc<Task>,
    split: String,
    records: RecordStream,
    steps: std::ops::Range<usize>,
    seed: u64,
    skip_bad_records: bool,
    skipped: Arc<AtomicU64>,
    records_read: u64,
    pending: VecDeque<Result<Example, DataError>>,
    chunk_size: usize,
    exhausted: bool,
}

impl std::fmt::Debug for TaskStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskStream")
            .field("task", &self.task.name)
            .field("split", &self.split)
            .field("records_read", &self.records_read)
            .finish_non_exhaustive()
    }
}

impl TaskStream {
    /// The task.
    pub fn task(&self) -> &Arc<Task> {
        &self.task
    }

    /// Records skipped so far (reader and preprocessing failures) under `skip_bad_records`.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Source records consumed so far.
    pub fn records_read(&self) -> u64 {
        self.records_read
    }

    /// Sets how many records are preprocessed together (in parallel).
    pub fn with_chunk_size(mut self, chunk_size: usize) -> Self {
        self.chunk_size = chunk_size.max(1);
        self
    }

    /// Reads and discards `n` source records without preprocessing them (to resume).
    pub fn skip_records(&mut self, n: u64) -> Result<(), DataError> {
        for _ in 0..n {
            match self.records.next() {
                None => break,
                Some(Err(e)) if !e.is_record_error() => return Err(e),
                Some(_) => self.records_read += 1,
            }
        }
        Ok(())
    }

    /// Reads up to `max_records` source records and preprocesses them on all cores; the
    /// examples (or errors) come back in source order. `None` once the source is exhausted.
    pub fn next_chunk(&mut self, max_records: usize) -> Option<Vec<Result<Example, DataError>>> {
        if self.exhausted {
            return None;
        }
        let mut chunk = Vec::with_capacity(max_records);
        while chunk.len() < max_records.max(1) {
            match self.records.next() {
                None => {
                    self.exhausted = true;
                    break;
                }
                Some(item) => {
                    chunk.push((self.records_read, item));
                    self.records_read += 1;
                }
            }
        }
        if chunk.is_empty() {
            return None;
        }
        let task = &self.task;
        let split = &self.split;
        let seed = self.seed;
        let steps = self.steps.clone();
        let run = |(index, item): (u64, Result<Record, DataError>)| match item {
            Ok(record) => match task.preprocess(split, record, index, seed, steps.clone()) {
                Ok(examples) => examples.into_iter().map(Ok).collect(),
                Err(err) => vec![Err(err)],
            },
            Err(err) => vec![Err(err)],
        };
        let results: Vec<Vec<Result<Example, DataError>>> = if chunk.len() >= 16 {
            chunk.into_par_iter().map(run).collect()
        } else {
            chunk.into_iter().map(run).collect()
        };
        let mut out = Vec::new();
        for item in results.into_iter().flatten() {
            match item {
                Err(err) if self.skip_bad_records && err.is_record_error() => {
                    tracing::warn!("skipping bad record: {err}");
                    self.skipped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                other => out.push(other),
            }
        }
        Some(out)
    }
}

impl Iterator for TaskStream {
    type Item = Result<Example, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            let chunk = self.next_chunk(self.chunk_size)?;
            self.pending.extend(chunk);
        }
    }
}

/// A mixing rate (seqio `seqio.md` §3).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rate {
    /// A fixed rate.
    Explicit(f64),
    /// seqio's `mixing_rate_num_examples`: `n · scale`, capped at `maximum`, then raised to
    /// `1 / temperature`; `n` comes from cache statistics or the source.
    ExampleProportional {
        /// The cap (T0: 500,000).
        maximum: Option<f64>,
        /// A factor applied before the cap.
        scale: f64,
        /// The temperature (1 = proportional).
        temperature: f64,
    },
}

impl Rate {
    /// Example-proportional with a cap and temperature 1.
    pub fn proportional(maximum: Option<f64>) -> Self {
        Self::ExampleProportional {
            maximum,
            scale: 1.0,
            temperature: 1.0,
        }
    }

    /// The rate for a member with `n` examples.
    pub fn value(&self, n: Option<u64>) -> Option<f64> {
        match *self {
            Self::Explicit(rate) => Some(rate),
            Self::ExampleProportional {
                maximum,
                scale,
                temperature,
            } => {
                let mut rate = n? as f64 * scale;
                if let Some(max) = maximum {
                    rate = rate.min(max);
                }
                if temperature != 1.0 {
                    rate = rate.powf(1.0 / temperature);
                }
                Some(rate)
            }
        }
    }
}

/// A mixture: tasks or sub-mixtures with rates.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Mixture {
    /// The name.
    pub name: String,
    /// (task or mixture name, rate), in order.
    pub members: Vec<(String, Rate)>,
}

impl Mixture {
    /// A mixture of `members`.
    pub fn new<S: Into<String>>(
        name: impl Into<String>,
        members: impl IntoIterator<Item = (S, Rate)>,
    ) -> Self {
        Self {
            name: name.into(),
            members: members.into_iter().map(|(n, r)| (n.into(), r)).collect(),
        }
    }

    /// All members with the same rate.
    pub fn uniform<S: Into<String>>(
        name: impl Into<String>,
        members: impl IntoIterator<Item = S>,
    ) -> Self {
        Self::new(name, members.into_iter().map(|m| (m, Rate::Explicit(1.0))))
    }
}

/// Whether a registry entry is a task or a mixture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EntryKind {
    /// A task.
    Task,
    /// A mixture.
    Mixture,
}

/// Registered tasks and mixtures (one namespace, as seqio's `get_mixture_or_task`).
#[derive(Debug, Default)]
pub struct TaskRegistry {
    tasks: BTreeMap<String, Arc<Task>>,
    mixtures: BTreeMap<String, Arc<Mixture>>,
}

impl TaskRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn check_new_name(&self, name: &str) -> Result<(), DataError> {
        if self.tasks.contains_key(name) || self.mixtures.contains_key(name) {
            return Err(DataError::Duplicate(name.to_string()));
        }
        Ok(())
    }

    /// Adds a task; a duplicate name is an error.
    pub fn add_task(&mut self, task: Task) -> Result<Arc<Task>, DataError> {
        self.check_new_name(&task.name)?;
        let task = Arc::new(task);
        self.tasks.insert(task.name.clone(), Arc::clone(&task));
        Ok(task)
    }

    /// Adds a mixture; its members must already be registered, and rates must be finite
    /// and non-negative.
    pub fn add_mixture(&mut self, mixture: Mixture) -> Result<Arc<Mixture>, DataError> {
        self.check_new_name(&mixture.name)?;
        if mixture.members.is_empty() {
            return Err(DataError::Config(format!(
                "mixture `{}` has no members",
                mixture.name
            )));
        }
        for (member, rate) in &mixture.members {
            self.entry_kind(member)?;
            if let Rate::Explicit(r) = rate {
                if !r.is_finite() || *r < 0.0 {
                    return Err(DataError::Config(format!(
                        "mixture `{}`: rate {r} of `{member}` is not a non-negative number",
                        mixture.name
                    )));
                }
            }
        }
        let mixture = Arc::new(mixture);
        self.mixtures
            .insert(mixture.name.clone(), Arc::clone(&mixture));
        Ok(mixture)
    }

    fn unknown(&self, name: &str) -> DataError {
        DataError::UnknownTask {
            name: name.to_string(),
            suggestion: suggest(
                name,
                self.tasks
                    .keys()
                    .chain(self.mixtures.keys())
                    .map(String::as_str),
            ),
        }
    }

    /// Whether `name` is a task or a mixture.
    pub fn entry_kind(&self, name: &str) -> Result<EntryKind, DataError> {
        if self.tasks.contains_key(name) {
            Ok(EntryKind::Task)
        } else if self.mixtures.contains_key(name) {
            Ok(EntryKind::Mixture)
        } else {
            Err(self.unknown(name))
        }
    }

    /// A task by name.
    pub fn task(&self, name: &str) -> Result<Arc<Task>, DataError> {
        self.tasks
            .get(name)
            .cloned()
            .ok_or_else(|| self.unknown(name))
    }

    /// A mixture by name.
    pub fn mixture(&self, name: &str) -> Result<Arc<Mixture>, DataError> {
        self.mixtures
            .get(name)
            .cloned()
            .ok_or_else(|| self.unknown(name))
    }

    /// All names (tasks and mixtures) matching `regex` (searched, not anchored), sorted.
    pub fn list(&self, regex: Option<&Regex>) -> Vec<(String, EntryKind)> {
        let mut names: Vec<(String, EntryKind)> = self
            .tasks
            .keys()
            .map(|n| (n.clone(), EntryKind::Task))
            .chain(
                self.mixtures
                    .keys()
                    .map(|n| (n.clone(), EntryKind::Mixture)),
            )
            .filter(|(n, _)| regex.is_none_or(|r| r.is_match(n)))
            .collect();
        names.sort();
        names
    }

    /// The tasks whose names match `regex` entirely (as `seqio_cache_tasks --tasks`).
    pub fn tasks_matching(&self, regex: &Regex) -> Vec<Arc<Task>> {
        self.tasks
            .iter()
            .filter(|(name, _)| {
                regex
                    .find(name)
                    .is_some_and(|m| m.start() == 0 && m.end() == name.len())
            })
            .map(|(_, t)| Arc::clone(t))
            .collect()
    }

    /// Flattens a task or mixture into (task, normalised rate) pairs for `split`. A task
    /// inside sub-mixture M gets `rate(M) · M.rate(task) / M.total`; a task reached twice sums
    /// its contributions. Example-proportional rates need example counts (cache statistics
    /// in `cache_dirs`, or the source's count).
    pub fn resolve(
        &self,
        name: &str,
        split: &str,
        cache_dirs: &[PathBuf],
    ) -> Result<Vec<(Arc<Task>, f64)>, DataError> {
        let mut out: Vec<(Arc<Task>, f64)> = Vec::new();
        self.resolve_into(name, split, cache_dirs, 1.0, &mut out, 0)?;
        let total: f64 = out.iter().map(|(_, r)| r).sum();
        if total.is_nan() || total <= 0.0 {
            return Err(DataError::Config(format!(
                "`{name}`: the mixing rates sum to {total}"
            )));
        }
        for (_, r) in &mut out {
            *r /= total;
        }
        Ok(out)
    }

    fn resolve_into(
        &self,
        name: &str,
        split: &str,
        cache_dirs: &[PathBuf],
        weight: f64,
        out: &mut Vec<(Arc<Task>, f64)>,
        depth: usize,
    ) -> Result<(), DataError> {
        if depth > 32 {
            return Err(DataError::Config(format!(
                "mixture `{name}` nests more than 32 levels"
            )));
        }
        match self.entry_kind(name)? {
            EntryKind::Task => {
                let task = self.task(name)?;
                match out.iter_mut().find(|(t, _)| t.name == task.name) {
                    Some((_, r)) => *r += weight,
                    None => out.push((task, weight)),
                }
            }
            EntryKind::Mixture => {
                let mixture = self.mixture(name)?;
                let mut rates = Vec::with_capacity(mixture.members.len());
                for (member, rate) in &mixture.members {
                    rates.push(self.member_rate(&mixture.name, member, rate, split, cache_dirs)?);
                }
                let total: f64 = rates.iter().sum();
                if total.is_nan() || total <= 0.0 {
                    return Err(DataError::Config(format!(
                        "mixture `{}`: the rates sum to {total}",
                        mixture.name
                    )));
                }
                for ((member, _), rate) in mixture.members.iter().zip(rates) {
                    self.resolve_into(
                        member,
                        split,
                        cache_dirs,
                        weight * rate / total,
                        out,
                        depth + 1,
                    )?;
                }
            }
        }
        Ok(())
    }

    fn member_rate(
        &self,
        mixture: &str,
        member: &str,
        rate: &Rate,
        split: &str,
        cache_dirs: &[PathBuf],
    ) -> Result<f64, DataError> {
        let n = match rate {
            Rate::Explicit(_) => None,
            Rate::ExampleProportional { .. } => Some(self.num_examples(member, split, cache_dirs)?),
        };
        rate.value(n).ok_or_else(|| {
            DataError::Config(format!(
                "mixture `{mixture}`: the number of examples of `{member}` is unknown"
            ))
        })
    }

    /// The number of examples of a task, or the sum over a mixture's members.
    fn num_examples(
        &self,
        name: &str,
        split: &str,
        cache_dirs: &[PathBuf],
    ) -> Result<u64, DataError> {
        match self.entry_kind(name)? {
            EntryKind::Task => self.task(name)?.num_examples(split, cache_dirs).ok_or_else(|| {
                DataError::Config(format!(
                    "the number of examples of task `{name}` split `{split}` is unknown: cache the task or declare the count on its source"
                ))
            }),
            EntryKind::Mixture => {
                let mixture = self.mixture(name)?;
                let mut total = 0;
                for (member, _) in &mixture.members {
                    total += self.num_examples(member, split, cache_dirs)?;
                }
                Ok(total)
            }
        }
    }
}

#[cfg(test)]
mod tests;
