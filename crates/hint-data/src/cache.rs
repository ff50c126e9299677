//! Reading offline caches of tokenized tasks (seqio's `use_cached=True`): a cache is just
//! another [`Source`], whose records are the examples after the preprocessors before the
//! task's cache placeholder. Writing them is [`crate::cache_tasks`].
//!
//! Layout (`seqio.md` §4) under `<cache_dir>/<task name, ':' → '/'>/`:
//!
//! | file | content |
//! |---|---|
//! | `{split}-00000-of-0000N.parquet` | shards of the examples after the preprocessors before the cache placeholder |
//! | `info.{split}.json` | `{"features": {name: {"dtype", "shape"}}, "num_shards": N, "seqio_version", "hint": {output features (EOS rule, vocabulary fingerprint), preprocessors}, "fingerprint"}` |
//! | `stats.{split}.json` | `{"examples": n, "<feat>_tokens": total, "<feat>_max_tokens": max}` |
//! | `COMPLETED` | empty; written last |
//!
//! A cache records the [`CacheSignature`] of the task that wrote it; reading refuses a
//! cache whose signature differs from the reading task's (other output features, EOS
//! rules, vocabulary or preprocessors), naming both fingerprints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::DataError;
use crate::features::OutputFeatures;
use crate::source::{Format, OpenOptions, RecordStream, Source};

/// The task's folder inside a cache dir (`a:b` → `a/b`, as seqio).
pub fn task_cache_dir(cache_dir: &Path, task: &str) -> PathBuf {
    cache_dir.join(task.replace(':', "/"))
}

/// The first of `cache_dirs` holding a completed cache of `task`.
pub fn find_cache(task: &str, cache_dirs: &[PathBuf]) -> Option<PathBuf> {
    cache_dirs
        .iter()
        .map(|d| task_cache_dir(d, task))
        .find(|d| d.join("COMPLETED").is_file())
}

fn cache_error(dir: &Path, message: impl Into<String>) -> DataError {
    DataError::Cache {
        dir: dir.to_path_buf(),
        message: message.into(),
    }
}

/// What a cache must agree on with the task reading it: the output features (EOS rule and
/// vocabulary) and the names of the preprocessors that ran before the cache placeholder.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheSignature(serde_json::Value);

impl CacheSignature {
    /// The signature of a task with these output features whose preprocessors before the
    /// cache placeholder are `preprocessors`.
    pub fn new(output_features: &OutputFeatures, preprocessors: &[String]) -> Self {
        let features: BTreeMap<&String, serde_json::Value> = output_features
            .iter()
            .map(|(name, f)| {
                (
                    name,
                    json!({
                        "add_eos": f.add_eos,
                        "vocab_size": f.vocabulary.vocab_size(),
                        "vocab_fingerprint": format!("{:016x}", f.vocabulary.fingerprint()),
                    }),
                )
            })
            .collect();
        Self(json!({
            "output_features": features,
            "preprocessors": preprocessors,
        }))
    }

    /// The signature as stored in `info.{split}.json` (`"hint"`).
    pub fn to_json(&self) -> serde_json::Value {
        self.0.clone()
    }

    /// A short stable hash of the signature (16 hex digits), as the errors show it.
    pub fn fingerprint(&self) -> String {
        fingerprint_of(&self.0)
    }

    /// Which parts of `cached` differ from this signature, for the error message.
    fn difference(&self, cached: &serde_json::Value) -> String {
        let mut parts = Vec::new();
        let empty = serde_json::Map::new();
        let features = |v: &serde_json::Value| {
            v.get("output_features")
                .and_then(|f| f.as_object())
                .cloned()
                .unwrap_or_else(|| empty.clone())
        };
        let (mine, theirs) = (features(&self.0), features(cached));
        let names: std::collections::BTreeSet<&String> = mine.keys().chain(theirs.keys()).collect();
        for name in names {
            match (mine.get(name), theirs.get(name)) {
                (Some(a), Some(b)) if a == b => {}
                (Some(a), Some(b)) => {
                    let keys = ["add_eos", "vocab_size", "vocab_fingerprint"];
                    let changed: Vec<&str> =
                        keys.into_iter().filter(|k| a.get(k) != b.get(k)).collect();
                    parts.push(format!("feature `{name}`: {}", changed.join(", ")));
                }
                (Some(_), None) => parts.push(format!("feature `{name}` is not cached")),
                (None, _) => parts.push(format!("the task has no feature `{name}`")),
            }
        }
        if self.0.get("preprocessors") != cached.get("preprocessors") {
            parts.push(format!(
                "preprocessors: cached {}, the task's {}",
                cached
                    .get("preprocessors")
                    .unwrap_or(&serde_json::Value::Null),
                self.0["preprocessors"]
            ));
        }
        if parts.is_empty() {
            "the signatures differ".into()
        } else {
            parts.join("; ")
        }
    }
}

fn fingerprint_of(value: &serde_json::Value) -> String {
    // serde_json writes object keys sorted (no `preserve_order`), so equal values hash equal.
    format!("{:016x}", crate::rng::fnv1a(value.to_string().as_bytes()))
}

pub(crate) fn read_json(path: &Path) -> Result<serde_json::Value, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| DataError::Format {
        path: path.to_path_buf(),
        message: format!("malformed JSON: {e}"),
    })
}

/// The info of one cached split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheInfo {
    /// Feature name → `{"dtype", "shape"}`.
    pub features: serde_json::Value,
    /// Number of shards.
    pub num_shards: usize,
    /// Writer version.
    pub seqio_version: String,
    /// hint's signature (output features, preprocessors): [`CacheSignature::to_json`].
    #[serde(default)]
    pub hint: serde_json::Value,
}

/// Reads `info.<split>.json` of a task's cache folder.
pub fn read_info(dir: &Path, split: &str) -> Result<CacheInfo, DataError> {
    let path = dir.join(format!("info.{split}.json"));
    if !path.is_file() {
        return Err(cache_error(dir, format!("split `{split}` is not cached")));
    }
    serde_json::from_value(read_json(&path)?).map_err(|e| DataError::Format {
        path,
        message: e.to_string(),
    })
}

/// The completed cache of one task, read as a [`Source`]: its records are the cached
/// examples, in the order the uncached task yields them.
#[derive(Debug, Clone)]
pub struct CachedSource {
    task: String,
    dir: PathBuf,
    expected: CacheSignature,
}

impl CachedSource {
    /// The cache of `task` in the first of `cache_dirs` that has a completed one; its
    /// splits are read only if they were written for `expected`.
    pub fn find(
        task: &str,
        cache_dirs: &[PathBuf],
        expected: CacheSignature,
    ) -> Result<Self, DataError> {
        let Some(dir) = find_cache(task, cache_dirs) else {
            return Err(DataError::Cache {
                dir: cache_dirs
                    .first()
                    .map(|d| task_cache_dir(d, task))
                    .unwrap_or_default(),
                message: format!(
                    "no completed cache of task `{task}` in [{}] (write one with `hint cache-tasks`)",
                    cache_dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        };
        Ok(Self {
            task: task.to_string(),
            dir,
            expected,
        })
    }

    /// The task's cache folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The info of `split`, after checking that it was written for the expected task.
    pub fn checked_info(&self, split: &str) -> Result<CacheInfo, DataError> {
        let info = read_info(&self.dir, split)?;
        if info.hint != self.expected.to_json() {
            return Err(DataError::StaleCache {
                dir: self.dir.clone(),
                task: self.task.clone(),
                cached: fingerprint_of(&info.hint),
                expected: self.expected.fingerprint(),
                difference: self.expected.difference(&info.hint),
            });
        }
        Ok(info)
    }
}

impl Source for CachedSource {
    fn splits(&self) -> Vec<String> {
        let mut splits: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                Some(
                    name.strip_prefix("info.")?
                        .strip_suffix(".json")?
                        .to_string(),
                )
            })
            .collect();
        splits.sort();
        splits
    }

    fn num_input_examples(&self, split: &str) -> Option<u64> {
        read_json(&self.dir.join(format!("stats.{split}.json")))
            .ok()?
            .get("examples")?
            .as_u64()
    }

    fn open(&self, split: &str, options: &OpenOptions) -> Result<RecordStream, DataError> {
        let info = self.checked_info(split)?;
        // File order is not shuffled: reading the shards round-robin restores the source
        // order, so a cached task yields the same examples in the same order as the
        // uncached one.
        options.shard.validate()?;
        let files: Vec<PathBuf> = (0..info.num_shards)
            .map(|i| {
                self.dir
                    .join(format!("{split}-{i:05}-of-{:05}.parquet", info.num_shards))
            })
            .collect();
        // Whole files per worker when there are enough; otherwise every n-th record.
        let (files, record_shard) = if files.len() >= options.shard.num_shards {
            let mine = files
                .into_iter()
                .enumerate()
                .filter(|(i, _)| options.shard.contains(*i as u64))
                .map(|(_, f)| f)
                .collect::<Vec<_>>();
            (mine, None)
        } else {
            (files, Some(options.shard))
        };
        let mut streams = Vec::with_capacity(files.len());
        for file in &files {
            streams.push(Format::Parquet.open_file(file)?);
        }
        // Shards were dealt round-robin, so reading them round-robin restores the order.
        let mut next = 0usize;
        let mut index = 0u64;
        Ok(Box::new(std::iter::from_fn(move || loop {
            if streams.is_empty() {
                return None;
            }
            next %= streams.len();
            match streams[next].next() {
                None => {
                    drop(streams.remove(next));
                }
                Some(item) => {
                    next += 1;
                    let i = index;
                    index += 1;
                    if record_shard.is_none_or(|s| s.contains(i)) {
                        return Some(item);
                    }
                }
            }
        })))
    }
}

/// The `examples` count of a completed cache's statistics, if any.
pub fn cached_num_examples(task: &str, split: &str, cache_dirs: &[PathBuf]) -> Option<u64> {
    let dir = find_cache(task, cache_dirs)?;
    read_json(&dir.join(format!("stats.{split}.json")))
        .ok()?
        .get("examples")?
        .as_u64()
}
