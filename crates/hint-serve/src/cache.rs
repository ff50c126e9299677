//! Task adaptations by id, bounded in bytes (least recently used evicted first), and
//! optionally written to a folder so that a restarted server starts warm.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use hint_model::TaskAdaptation;
use tch::{Device, Tensor};

use crate::metrics::Metrics;

/// What a task's requests reuse: the generated modules (HINT), or, for a model that reads
/// the instruction concatenated to every input (the baseline), the instruction's ids.
#[derive(Debug)]
pub enum Adaptation {
    /// A HINT model's adaptation.
    Hyper(TaskAdaptation),
    /// The instruction's ids, prepended to every input.
    Concat(Vec<i64>),
}

impl Adaptation {
    /// The same adaptation, sharing its tensors.
    pub fn shallow_clone(&self) -> Self {
        match self {
            Self::Hyper(adaptation) => Self::Hyper(adaptation.detach()),
            Self::Concat(ids) => Self::Concat(ids.clone()),
        }
    }

    /// Bytes it holds.
    pub fn bytes(&self) -> u64 {
        match self {
            Self::Hyper(adaptation) => adaptation
                .named_tensors()
                .iter()
                .map(|(_, t)| (t.numel() * t.kind().elt_size_in_bytes()) as u64)
                .sum(),
            Self::Concat(ids) => (ids.len() * 8) as u64,
        }
    }
}

struct Entry {
    adaptation: Adaptation,
    tokens: usize,
    bytes: u64,
    last_used: u64,
}

/// The cache. It lives with the model, on the model's thread.
pub struct AdaptationCache {
    entries: HashMap<String, Entry>,
    /// Last use → id: the eviction order.
    order: BTreeMap<u64, String>,
    clock: u64,
    bytes: u64,
    bound: u64,
    dir: Option<PathBuf>,
    device: Device,
    metrics: Metrics,
}

impl AdaptationCache {
    /// An empty cache of at most `bound` bytes, writing through to `dir` when given.
    pub fn new(bound: u64, dir: Option<PathBuf>, device: Device, metrics: Metrics) -> Self {
        Self {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            clock: 0,
            bytes: 0,
            bound,
            dir,
            device,
            metrics,
        }
    }

    fn touch(&mut self, id: &str) {
        self.clock += 1;
        if let Some(entry) = self.entries.get_mut(id) {
            self.order.remove(&entry.last_used);
            entry.last_used = self.clock;
            self.order.insert(self.clock, id.to_string());
        }
    }

    fn path(&self, id: &str, concat: bool) -> Option<PathBuf> {
        let extension = if concat { "json" } else { "safetensors" };
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{id}.{extension}")))
    }

    /// Whether `id` is in memory or in the cache folder (nothing counted, nothing read).
    pub fn contains(&self, id: &str) -> bool {
        self.entries.contains_key(id)
            || [false, true]
                .iter()
                .any(|&concat| self.path(id, concat).is_some_and(|p| p.is_file()))
    }

    /// The adaptation `id` and its instruction's length in tokens, from memory or (after a
    /// restart, or an eviction) from the cache folder.
    pub fn get(&mut self, id: &str) -> Option<(Adaptation, usize)> {
        if self.entries.contains_key(id) {
            self.metrics.cache_hits.inc();
        } else {
            self.metrics.cache_misses.inc();
            let (adaptation, tokens) = self.read(id)?;
            self.put(id, adaptation.shallow_clone(), tokens);
            return Some((adaptation, tokens));
        }
        self.touch(id);
        self.entries
            .get(id)
            .map(|e| (e.adaptation.shallow_clone(), e.tokens))
    }

    fn read(&self, id: &str) -> Option<(Adaptation, usize)> {
        if let Some(path) = self.path(id, false).filter(|p| p.is_file()) {
            match TaskAdaptation::load(&path, self.device) {
                Ok(adaptation) => {
                    let tokens = adaptation
                        .instruction
                        .as_ref()
                        .map_or(0, |(_, mask)| count(mask));
                    return Some((Adaptation::Hyper(adaptation), tokens));
                }
                Err(err) => {
                    tracing::warn!(path = %path.display(), %err, "unreadable cached adaptation")
                }
            }
        }
        let path = self.path(id, true).filter(|p| p.is_file())?;
        let ids: Vec<i64> = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())?;
        let tokens = ids.len();
        Some((Adaptation::Concat(ids), tokens))
    }

    /// Keeps `adaptation` as `id` (and writes it to the cache folder), evicting the least
    /// recently used ones while the cache would be over its bound. One larger than the
    /// whole bound is not kept in memory (the request that made it still uses it).
    pub fn insert(&mut self, id: &str, adaptation: &Adaptation, tokens: usize) {
        let concat = matches!(adaptation, Adaptation::Concat(_));
        if let Some(path) = self.path(id, concat) {
            let written = match adaptation {
                Adaptation::Hyper(a) => a.save(&path).map_err(|e| e.to_string()),
                Adaptation::Concat(ids) => hint_fs::write_atomically(
                    &path,
                    serde_json::to_string(ids).unwrap_or_default().as_bytes(),
                )
                .map_err(|e| e.to_string()),
            };
            if let Err(err) = written {
                tracing::warn!(path = %path.display(), %err, "could not write the adaptation to the cache folder");
            }
        }
        self.put(id, adaptation.shallow_clone(), tokens);
    }

    fn put(&mut self, id: &str, adaptation: Adaptation, tokens: usize) {
        let bytes = adaptation.bytes();
        if let Some(old) = self.entries.remove(id) {
            self.order.remove(&old.last_used);
            self.bytes -= old.bytes;
        }
        if bytes <= self.bound {
            while self.bytes + bytes > self.bound {
                let Some((_, victim)) = self.order.pop_first() else {
                    break;
                };
                if let Some(old) = self.entries.remove(&victim) {
                    self.bytes -= old.bytes;
                    self.metrics.cache_evictions.inc();
                }
            }
            self.clock += 1;
            self.order.insert(self.clock, id.to_string());
            self.entries.insert(
                id.to_string(),
                Entry {
                    adaptation,
                    tokens,
                    bytes,
                    last_used: self.clock,
                },
            );
            self.bytes += bytes;
        }
        self.metrics.cache_bytes.set(self.bytes as i64);
        self.metrics.cache_entries.set(self.entries.len() as i64);
    }
}

fn count(mask: &Tensor) -> usize {
    i64::try_from(mask.sum(tch::Kind::Int64))
        .unwrap_or(0)
        .max(0) as usize
}
