//! Batches for training and evaluation: mixture sampling, seeded shuffling, sharding,
//! background prefetch, and a checkpointable [`IteratorState`] (seqio's `get_dataset` plus
//! t5x's dataset checkpointing).
//!
//! # How the trainer uses it
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use hint_data::{DataError, TaskRegistry};
//! # use hint_data::iterator::{BatchIterator, DatasetConfig, IteratorState};
//! # use hint_data::feature_converter::HintConverter;
//! # fn demo(registry: &TaskRegistry) -> Result<(), DataError> {
//! let config = DatasetConfig { batch_size: 32, seed: 42, ..DatasetConfig::default() };
//! let converter = Arc::new(HintConverter::new(1024, 1024, 256));
//! let mut batches = BatchIterator::new(registry, "natural_instructions", config.clone(), converter.clone())?
//!     .prefetch(4);
//! let batch = batches.next().transpose()?;          // a `Batch` of [32, len] i64 arrays
//! let saved = serde_json::to_string(batches.state()).unwrap(); // store with the checkpoint
//! // …later, after a restart:
//! let state: IteratorState = serde_json::from_str(&saved).unwrap();
//! let resumed = BatchIterator::restore(registry, "natural_instructions", config, converter, &state)?;
//! # Ok(()) }
//! ```
//!
//! # Determinism
//!
//! Every random choice derives from the seed and a position, never from a running RNG:
//! mixture draw `d` uses `(seed, d)`; the shuffle of a window uses (seed, task, epoch, first
//! record of the window); preprocessors use (seed, epoch, step, record index). A state is
//! therefore a handful of counters per task plus the rows converted but not yet batched, and
//! restoring re-reads the current window of each task (skipping earlier records without
//! preprocessing them).
//!
//! Shuffling is a block shuffle: records are read in windows of `shuffle_buffer`, each
//! window is preprocessed (on all cores) and shuffled; file order is shuffled per epoch.
//! seqio's rolling shuffle buffer mixes across window boundaries; a block shuffle of the
//! same size mixes as well within a window and makes exact resumption cheap.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::example::Example;
use crate::feature_converter::{Batch, FeatureConverter, Row};
use crate::rng::{fnv1a, SplitMix64};
use crate::source::ShardInfo;
use crate::task::{ReadOptions, Task, TaskRegistry, TaskStream};

/// How batches are drawn from a task or mixture.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct DatasetConfig {
    /// The split (`train`, `validation`, `test`).
    pub split: String,
    /// The seed of shuffling, mixture draws and preprocessor randomness.
    pub seed: u64,
    /// Shuffle records (block shuffle) and file order.
    pub shuffle: bool,
    /// Records per shuffled window (also the unit of parallel preprocessing).
    pub shuffle_buffer: usize,
    /// Passes over each task; `None` repeats forever (training).
    pub num_epochs: Option<u64>,
    /// The shard this worker reads.
    pub shard: ShardInfo,
    /// Rows per batch.
    pub batch_size: usize,
    /// Log, count and skip bad records instead of stopping.
    pub skip_bad_records: bool,
    /// Read tasks from their caches in `cache_dirs`.
    pub use_cached: bool,
    /// Cache folders.
    pub cache_dirs: Vec<PathBuf>,
    /// Fill each batch from one task of the mixture (drawn per batch at the mixture rates),
    /// so that a batch shares few instructions; see also `BatchFeature::unique_rows`.
    pub group_by_task: bool,
    /// Drop a last incomplete batch instead of yielding it.
    pub drop_remainder: bool,
}

impl Default for DatasetConfig {
    fn default() -> Self {
        Self {
            split: "train".into(),
            seed: 0,
            shuffle: true,
            shuffle_buffer: 10_000,
            num_epochs: None,
            shard: ShardInfo::default(),
            batch_size: 8,
            skip_bad_records: false,
            use_cached: false,
            cache_dirs: Vec::new(),
            group_by_task: false,
            drop_remainder: false,
        }
    }
}

/// Where one task's stream stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberState {
    /// The task.
    pub task: String,
    /// 0-based epoch.
    pub epoch: u64,
    /// Source records read before the current window.
    pub window_start: u64,
    /// Examples of the current window already used.
    pub window_offset: u64,
    /// Whether the task has run out (with `num_epochs`).
    pub exhausted: bool,
}

/// Everything needed to resume a [`BatchIterator`] exactly; serialise it with serde.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IteratorState {
    /// The task or mixture.
    pub name: String,
    /// The split.
    pub split: String,
    /// The seed.
    pub seed: u64,
    /// The shard.
    pub shard: ShardInfo,
    /// Batches yielded.
    pub batches: u64,
    /// Mixture draws made.
    pub draws: u64,
    /// Per task, in mixture order.
    pub members: Vec<MemberState>,
    /// Rows converted but not yet batched (packing leftovers).
    pub pending_rows: Vec<Row>,
    /// Whether the data ran out.
    pub finished: bool,
}

struct Member {
    task: Arc<Task>,
    cumulative_rate: f64,
    state: MemberState,
    stream: Option<TaskStream>,
    window: VecDeque<Example>,
    produced_this_epoch: bool,
}

impl Member {
    fn read_options(&self, config: &DatasetConfig) -> ReadOptions {
        ReadOptions {
            shard: config.shard,
            // Each epoch draws new preprocessor randomness and file order.
            seed: SplitMix64::derive(&[config.seed, self.state.epoch]).next_u64(),
            shuffle_files: config.shuffle,
            skip_bad_records: config.skip_bad_records,
            use_cached: config.use_cached,
            cache_dirs: config.cache_dirs.clone(),
        }
    }

    /// Reads the next window of records into `self.window`; false at the end of the epoch.
    fn fill_window(&mut self, config: &DatasetConfig) -> Result<bool, DataError> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(false);
        };
        let start = stream.records_read();
        let window = config.shuffle_buffer / stream.task().source().texts_per_record().max(1);
        let Some(chunk) = stream.next_chunk(window.max(1)) else {
            return Ok(false);
        };
        let mut examples = chunk.into_iter().collect::<Result<Vec<_>, _>>()?;
        if config.shuffle {
            SplitMix64::derive(&[
                config.seed,
                fnv1a(self.state.task.as_bytes()),
                self.state.epoch,
                start,
            ])
            .shuffle(&mut examples);
        }
        self.state.window_start = start;
        self.state.window_offset = 0;
        self.window = examples.into();
        Ok(true)
    }

    /// Opens the epoch's stream, positioned where the state says (resuming if needed).
    fn open(&mut self, config: &DatasetConfig) -> Result<(), DataError> {
        let mut stream = self.task.open(&config.split, &self.read_options(config))?;
        stream.skip_records(self.state.window_start)?;
        self.stream = Some(stream);
        let offset = self.state.window_offset;
        // Resuming past the start of the epoch: earlier windows produced examples.
        self.produced_this_epoch = self.state.window_start > 0;
        if offset > 0 {
            self.fill_window(config)?;
            let drop = (offset as usize).min(self.window.len());
            self.window.drain(..drop);
            self.state.window_offset = offset;
            self.produced_this_epoch = true;
        }
        Ok(())
    }

    fn next_example(&mut self, config: &DatasetConfig) -> Result<Option<Example>, DataError> {
        loop {
            if self.state.exhausted {
                return Ok(None);
            }
            if let Some(example) = self.window.pop_front() {
                self.state.window_offset += 1;
                self.produced_this_epoch = true;
                return Ok(Some(example));
            }
            if self.stream.is_none() {
                self.open(config)?;
                if !self.window.is_empty() {
                    continue;
                }
            }
            if self.fill_window(config)? {
                continue;
            }
            // End of the epoch.
            if !self.produced_this_epoch {
                return Err(DataError::Config(format!(
                    "task `{}` split `{}` yields no examples",
                    self.state.task, config.split
                )));
            }
            self.state.epoch += 1;
            self.state.window_start = 0;
            self.state.window_offset = 0;
            self.stream = None;
            self.produced_this_epoch = false;
            if config.num_epochs.is_some_and(|n| self.state.epoch >= n) {
                self.state.exhausted = true;
            }
        }
    }
}

/// Yields batches of a task or mixture; see the module documentation.
pub struct BatchIterator {
    name: String,
    config: DatasetConfig,
    converter: Arc<dyn FeatureConverter>,
    members: Vec<Member>,
    batches: u64,
    draws: u64,
    pending: VecDeque<Row>,
    finished: bool,
}

impl std::fmt::Debug for BatchIterator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchIterator")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("batches", &self.batches)
            .finish_non_exhaustive()
    }
}

impl BatchIterator {
    /// Starts iterating `name` (a task or mixture of `registry`) from the beginning.
    pub fn new(
        registry: &TaskRegistry,
        name: &str,
        config: DatasetConfig,
        converter: Arc<dyn FeatureConverter>,
    ) -> Result<Self, DataError> {
        if config.batch_size == 0 {
            return Err(DataError::Config("batch_size must be positive".into()));
        }
        config.shard.validate()?;
        let tasks = registry.resolve(name, &config.split, &config.cache_dirs)?;
        let mut cumulative = 0.0;
        let members = tasks
            .into_iter()
            .map(|(task, rate)| {
                cumulative += rate;
                Member {
                    state: MemberState {
                        task: task.name().to_string(),
                        epoch: 0,
                        window_start: 0,
                        window_offset: 0,
                        exhausted: false,
                    },
                    task,
                    cumulative_rate: cumulative,
                    stream: None,
                    window: VecDeque::new(),
                    produced_this_epoch: false,
                }
            })
            .collect();
        Ok(Self {
            name: name.to_string(),
            config,
            converter,
            members,
            batches: 0,
            draws: 0,
            pending: VecDeque::new(),
            finished: false,
        })
    }

    /// Resumes from a saved state: the next batches are exactly those the saved iterator
    /// would have yielded. The name, split, seed, shard and tasks must match.
    pub fn restore(
        registry: &TaskRegistry,
        name: &str,
        config: DatasetConfig,
        converter: Arc<dyn FeatureConverter>,
        state: &IteratorState,
    ) -> Result<Self, DataError> {
        let mut iterator = Self::new(registry, name, config, converter)?;
        let mismatch = |what: &str, saved: String, now: String| {
            DataError::State(format!("{what} was {saved}, is {now}"))
        };
        if state.name != iterator.name {
            return Err(mismatch(
                "the task or mixture",
                state.name.clone(),
                iterator.name,
            ));
        }
        if state.split != iterator.config.split {
            return Err(mismatch(
                "the split",
                state.split.clone(),
                iterator.config.split,
            ));
        }
        if state.seed != iterator.config.seed {
            return Err(mismatch(
                "the seed",
                state.seed.to_string(),
                iterator.config.seed.to_string(),
            ));
        }
        if state.shard != iterator.config.shard {
            return Err(mismatch(
                "the shard",
                format!("{:?}", state.shard),
                format!("{:?}", iterator.config.shard),
            ));
        }
        let saved: Vec<&str> = state.members.iter().map(|m| m.task.as_str()).collect();
        let now: Vec<&str> = iterator.members.iter().map(|m| m.task.name()).collect();
        if saved != now {
            return Err(mismatch("the tasks", saved.join(","), now.join(",")));
        }
        for (member, saved) in iterator.members.iter_mut().zip(&state.members) {
            member.state = saved.clone();
        }
        iterator.batches = state.batches;
        iterator.draws = state.draws;
        iterator.pending = state.pending_rows.iter().cloned().collect();
        iterator.finished = state.finished;
        Ok(iterator)
    }

    /// The state after the last batch yielded.
    pub fn state(&self) -> IteratorState {
        IteratorState {
            name: self.name.clone(),
            split: self.config.split.clone(),
            seed: self.config.seed,
            shard: self.config.shard,
            batches: self.batches,
            draws: self.draws,
            members: self.members.iter().map(|m| m.state.clone()).collect(),
            pending_rows: self.pending.iter().cloned().collect(),
            finished: self.finished,
        }
    }

    /// Records skipped so far by open task streams under `skip_bad_records`.
    pub fn skipped(&self) -> u64 {
        self.members
            .iter()
            .filter_map(|m| m.stream.as_ref())
            .map(TaskStream::skipped)
            .sum()
    }

    /// Moves iteration to a background thread that keeps up to `depth` batches ready.
    pub fn prefetch(self, depth: usize) -> Prefetch {
        Prefetch::new(self, depth)
    }

    fn pick(&self, draw: f64) -> usize {
        self.members
            .iter()
            .position(|m| draw < m.cumulative_rate)
            .unwrap_or(self.members.len() - 1)
    }

    fn draw(&mut self, kind: u64, index: u64) -> usize {
        if self.members.len() == 1 {
            return 0;
        }
        let x = SplitMix64::derive(&[self.config.seed, kind, index]).next_f64();
        self.pick(x)
    }

    fn next_batch(&mut self) -> Result<Option<Batch>, DataError> {
        let batch_size = self.config.batch_size;
        let group = self
            .config
            .group_by_task
            .then(|| self.draw(0x0067_726f_7570, self.batches));
        while self.pending.len() < batch_size && !self.finished {
            let mut window = Vec::with_capacity(self.converter.window());
            for _ in 0..self.converter.window() {
                let member = match group {
                    Some(m) => m,
                    None => {
                        let d = self.draws;
                        self.draws += 1;
                        self.draw(0x6472_6177, d)
                    }
                };
                let config = &self.config;
                let m = &mut self.members[member];
                match m.next_example(config)? {
                    Some(example) => window.push((m.task.name().to_string(), example)),
                    None => {
                        // As seqio's `stop_on_empty_dataset`: one task running out ends a mixture.
                        self.finished = true;
                        break;
                    }
                }
            }
            if !window.is_empty() {
                self.pending.extend(self.converter.convert(window)?);
            }
        }
        if self.pending.is_empty()
            || (self.pending.len() < batch_size && self.config.drop_remainder)
        {
            self.pending.clear();
            return Ok(None);
        }
        let take = batch_size.min(self.pending.len());
        let rows: Vec<Row> = self.pending.drain(..take).collect();
        self.batches += 1;
        Batch::from_rows(&rows).map(Some)
    }
}

impl Iterator for BatchIterator {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch().transpose()
    }
}

/// A [`BatchIterator`] running on a background thread with a bounded queue.
///
/// [`Prefetch::state`] is the state after the last batch *received* (batches still in the
/// queue are not counted), so saving it with a checkpoint resumes exactly.
pub struct Prefetch {
    receiver: Option<Receiver<Result<(Batch, IteratorState), DataError>>>,
    state: IteratorState,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Prefetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetch")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Prefetch {
    /// Starts the background thread.
    pub fn new(mut iterator: BatchIterator, depth: usize) -> Self {
        let state = iterator.state();
        let (sender, receiver) = sync_channel(depth.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("hint-data-prefetch".into())
            .spawn(move || {
                while !stop_flag.load(Ordering::Relaxed) {
                    let item = match iterator.next() {
                        None => break,
                        Some(Ok(batch)) => Ok((batch, iterator.state())),
                        Some(Err(err)) => Err(err),
                    };
                    let failed = item.is_err();
                    if sender.send(item).is_err() || failed {
                        break;
                    }
                }
            })
            .ok();
        Self {
            receiver: Some(receiver),
            state,
            stop,
            handle,
        }
    }

    /// The state after the last batch received.
    pub fn state(&self) -> &IteratorState {
        &self.state
    }
}

impl Iterator for Prefetch {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.handle.is_none() {
            // Report the failed start once, then end.
            return self.receiver.take().map(|_| {
                Err(DataError::Config(
                    "the prefetch thread could not be started".into(),
                ))
            });
        }
        let receiver = self.receiver.as_ref()?;
        match receiver.recv() {
            Ok(Ok((batch, state))) => {
                self.state = state;
                Some(Ok(batch))
            }
            Ok(Err(err)) => Some(Err(err)),
            Err(_) => None,
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receiver unblocks a sender waiting on a full queue.
        self.receiver = None;
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests;
