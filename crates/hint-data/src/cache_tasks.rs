//! Writing offline caches of tokenized tasks (seqio's `seqio_cache_tasks`), in Parquet, in
//! the layout [`crate::cache`] reads.
//!
//! Everything is written under `.tmp-<task>-<pid>` next to the final folder (a
//! [`hint_fs::WorkingDir`], locked while written) and renamed into place at the end, so a
//! crash never leaves a half-written cache that looks complete, and the next caching into
//! the folder removes what a crashed writer left.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::Deserialize;
use serde_json::json;

use crate::cache::task_cache_dir;
use crate::error::DataError;
use crate::example::{Example, FeatureValue};
use crate::source::columnar::{examples_to_batch, schema_of};
use crate::task::{ReadOptions, Stage, Task};

/// How `cache_task` writes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct CacheOptions {
    /// Shards per split (at least 1).
    pub min_shards: usize,
    /// The seed of preprocessors before the placeholder.
    pub seed: u64,
    /// Skip bad records (counted in the summary) instead of failing.
    pub skip_bad_records: bool,
    /// Splits to cache; empty = all of the source's.
    pub splits: Vec<String>,
    /// Rows per Parquet row group.
    pub rows_per_group: usize,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            min_shards: 1,
            seed: 0,
            skip_bad_records: false,
            splits: Vec::new(),
            rows_per_group: 1024,
        }
    }
}

/// What `cache_task` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSummary {
    /// The task's cache folder.
    pub dir: PathBuf,
    /// (split, examples written, records skipped).
    pub splits: Vec<(String, u64, u64)>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |e| DataError::io(path, e)
}

fn cache_error(dir: &Path, message: impl Into<String>) -> DataError {
    DataError::Cache {
        dir: dir.to_path_buf(),
        message: message.into(),
    }
}

fn dtype(value: &FeatureValue) -> (&'static str, serde_json::Value) {
    match value {
        FeatureValue::Int(_) => ("int64", json!([])),
        FeatureValue::Float(_) => ("float64", json!([])),
        FeatureValue::Text(_) => ("string", json!([])),
        FeatureValue::Texts(_) => ("string", json!([null])),
        FeatureValue::Tokens(_) => ("int32", json!([null])),
    }
}

#[derive(Default)]
struct Stats {
    examples: u64,
    tokens: BTreeMap<String, (u64, u64)>,
}

impl Stats {
    fn add(&mut self, example: &Example) {
        self.examples += 1;
        for (name, value) in example {
            if let FeatureValue::Tokens(t) = value {
                let entry = self.tokens.entry(name.clone()).or_default();
                entry.0 += t.len() as u64;
                entry.1 = entry.1.max(t.len() as u64);
            }
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert("examples".into(), json!(self.examples));
        for (name, (total, max)) in &self.tokens {
            map.insert(format!("{name}_tokens"), json!(total));
            map.insert(format!("{name}_max_tokens"), json!(max));
        }
        serde_json::Value::Object(map)
    }
}

struct ShardWriter {
    path: PathBuf,
    writer: ArrowWriter<File>,
    rows: Vec<Example>,
}

fn write_rows(shard: &mut ShardWriter, schema: &SchemaRef) -> Result<(), DataError> {
    if shard.rows.is_empty() {
        return Ok(());
    }
    let batch = examples_to_batch(&shard.rows, schema).map_err(|(row, field, message)| {
        DataError::field(
            field,
            format!(
                "row {row} of the group bound for {}: {message}",
                shard.path.display()
            ),
        )
    })?;
    shard
        .writer
        .write(&batch)
        .map_err(|e| cache_error(&shard.path, e.to_string()))?;
    shard.rows.clear();
    Ok(())
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), DataError> {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    std::fs::write(path, text + "\n").map_err(io(path))
}

/// What watches caching: progress, and whether to stop (SIGINT/SIGTERM).
pub trait CacheMonitor {
    /// Every [`PROGRESS_EVERY`] examples of a split, and at its end.
    fn on_examples(&mut self, _task: &str, _split: &str, _examples: u64) {}
    /// Checked before every example; `true` ends caching with [`DataError::Interrupted`]
    /// (the task's temporary folder is removed; caches already complete stay).
    fn should_stop(&self) -> bool {
        false
    }
}

/// How often (in examples) [`CacheMonitor::on_examples`] is called.
pub const PROGRESS_EVERY: u64 = 1000;

struct Unwatched;

impl CacheMonitor for Unwatched {}

/// Writes one split into `dir`; returns (examples, skipped).
fn cache_split(
    task: &Arc<Task>,
    split: &str,
    dir: &Path,
    options: &CacheOptions,
    monitor: &mut dyn CacheMonitor,
) -> Result<(u64, u64), DataError> {
    let read = ReadOptions {
        seed: options.seed,
        skip_bad_records: options.skip_bad_records,
        ..ReadOptions::default()
    };
    let mut stream = task.open_stage(split, &read, Stage::BeforeCache)?;
    let num_shards = options.min_shards.max(1);
    let rows_per_group = options.rows_per_group.max(1);
    let mut shards: Vec<ShardWriter> = Vec::new();
    let mut schema: Option<SchemaRef> = None;
    let mut features = serde_json::Map::new();
    let mut stats = Stats::default();
    for (index, item) in stream.by_ref().enumerate() {
        if monitor.should_stop() {
            return Err(DataError::Interrupted {
                task: task.name().to_string(),
            });
        }
        if index > 0 && index as u64 % PROGRESS_EVERY == 0 {
            monitor.on_examples(task.name(), split, index as u64);
        }
        let example = item?;
        if schema.is_none() {
            let s: SchemaRef = Arc::new(schema_of(&example));
            for (name, value) in &example {
                let (dtype, shape) = dtype(value);
                features.insert(name.clone(), json!({"dtype": dtype, "shape": shape}));
            }
            let properties = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_max_row_group_size(rows_per_group)
                .build();
            for i in 0..num_shards {
                let path = dir.join(format!("{split}-{i:05}-of-{num_shards:05}.parquet"));
                let file = File::create(&path).map_err(io(&path))?;
                let writer = ArrowWriter::try_new(file, Arc::clone(&s), Some(properties.clone()))
                    .map_err(|e| cache_error(&path, e.to_string()))?;
                shards.push(ShardWriter {
                    path,
                    writer,
                    rows: Vec::new(),
                });
            }
            schema = Some(s);
        }
        if let Some(extra) = example.keys().find(|k| !features.contains_key(k.as_str())) {
            return Err(DataError::InTask {
                task: task.name().to_string(),
                split: split.to_string(),
                origin: format!("example {index}"),
                source: Box::new(DataError::field(
                    extra,
                    "not present in the first example, so not in the cache schema",
                )),
            });
        }
        stats.add(&example);
        let shard = &mut shards[index % num_shards];
        shard.rows.push(example);
        if shard.rows.len() >= rows_per_group {
            if let Some(schema) = schema.as_ref() {
                write_rows(shard, schema)?;
            }
        }
    }
    let written = if let Some(schema) = schema.as_ref() {
        for shard in &mut shards {
            write_rows(shard, schema)?;
        }
        let n = shards.len();
        for shard in shards {
            let path = shard.path.clone();
            shard
                .writer
                .close()
                .map_err(|e| cache_error(&path, e.to_string()))?;
        }
        n
    } else {
        0
    };
    write_json(
        &dir.join(format!("info.{split}.json")),
        &json!({
            "features": features,
            "num_shards": written,
            "seqio_version": format!("hint-data {}", env!("CARGO_PKG_VERSION")),
            "hint": task.cache_signature().to_json(),
            "fingerprint": task.cache_signature().fingerprint(),
        }),
    )?;
    write_json(&dir.join(format!("stats.{split}.json")), &stats.to_json())?;
    Ok((stats.examples, stream.skipped()))
}

/// Caches `task` under `output_dir` (seqio's `seqio_cache_tasks` for one task): runs the
/// preprocessors before the placeholder over every split and writes Parquet shards, info,
/// stats and `COMPLETED` into a temporary folder that is renamed into place; an existing
/// cache of the task is replaced only once the new one is complete.
pub fn cache_task(
    task: &Arc<Task>,
    output_dir: &Path,
    options: &CacheOptions,
) -> Result<CacheSummary, DataError> {
    cache_task_monitored(task, output_dir, options, &mut Unwatched)
}

/// [`cache_task`], reporting to `monitor`, which may stop it.
pub fn cache_task_monitored(
    task: &Arc<Task>,
    output_dir: &Path,
    options: &CacheOptions,
    monitor: &mut dyn CacheMonitor,
) -> Result<CacheSummary, DataError> {
    let final_dir = task_cache_dir(output_dir, task.name());
    let parent = final_dir.parent().unwrap_or(output_dir).to_path_buf();
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    let leaf = final_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("task")
        .to_string();
    // What a crashed or killed writer left (a full disk must not stay full); the folders
    // of writers still at work are locked and stay.
    let removed = hint_fs::remove_abandoned_working_dirs(&parent)?;
    if !removed.is_empty() {
        tracing::info!(
            ?removed,
            "removed the temporary folders of interrupted caching"
        );
    }
    let work = hint_fs::WorkingDir::create(&parent, &leaf)?;
    let tmp = work.path().to_path_buf();
    let splits = if options.splits.is_empty() {
        task.splits()
    } else {
        options.splits.clone()
    };
    let mut summary = CacheSummary {
        dir: final_dir.clone(),
        splits: Vec::new(),
    };
    let result: Result<(), DataError> = (|| {
        for split in &splits {
            let (examples, skipped) = cache_split(task, split, &tmp, options, monitor)?;
            monitor.on_examples(task.name(), split, examples);
            summary.splits.push((split.clone(), examples, skipped));
        }
        let completed = tmp.join("COMPLETED");
        File::create(&completed).map_err(io(&completed))?;
        Ok(())
    })();
    // On failure `work` is dropped here, which removes it.
    result?;
    work.persist(&final_dir)?;
    Ok(summary)
}

#[cfg(test)]
mod tests;
