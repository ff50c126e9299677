//! `metrics.jsonl`: one JSON object per logged step, appended and flushed, so that a run
//! killed at any moment keeps every line written so far.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{io_error, Result};
use crate::tensorboard::EventWriter;

/// The scalars of one training step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Global step after the update.
    pub step: u64,
    /// Total loss (cross-entropy plus z-loss), as optimised.
    pub loss: f64,
    /// The z-loss part.
    pub z_loss: f64,
    /// Loss per target token (the loss divided by the number of real target tokens).
    pub loss_per_token: f64,
    /// Learning rate of each optimizer group at this step.
    pub learning_rate: BTreeMap<String, f64>,
    /// Global norm of the gradients before the update.
    pub grad_norm: f64,
    /// Non-padding tokens (inputs, instructions, targets) per second.
    pub tokens_per_second: f64,
    /// Examples per second.
    pub examples_per_second: f64,
    /// The most memory in use during the step (0 in lines written before it was
    /// recorded): on the CPU the process's resident set, on CUDA the bytes libtorch
    /// allocated to tensors.
    #[serde(default)]
    pub peak_memory_bytes: u64,
    /// The most bytes tensors held during the step (CPU: counted from libtorch's
    /// allocation reports; CUDA: as `peak_memory_bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_tensor_bytes: Option<u64>,
    /// CUDA: the most bytes libtorch's caching allocator reserved during the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_reserved_bytes: Option<u64>,
    /// With `TrainConfig.contrastive_metric`: the reference's cosine loss of the pooled
    /// instruction features ([`crate::contrastive`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cosine_loss: Option<f64>,
    /// With `TrainConfig.contrastive_metric`: the share of row pairs of the same task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive_cosine_samples: Option<f64>,
}

/// What held the memory of the first step a process trained: written once per process
/// (also after a resume) as a `{"step": …, "memory": {…}}` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryReport {
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// Bytes of every parameter (trainable or not).
    pub parameters: u64,
    /// Bytes of the gradients the step produced.
    pub gradients: u64,
    /// Bytes of this rank's optimizer state.
    pub optimizer_state: u64,
    /// The step's peak less what was in use before it and the gradients it made: the
    /// activations kept for the backward pass and the temporaries of the step.
    pub activations: u64,
    /// The step's peak of what was measured.
    pub peak: u64,
    /// What was measured in use before the step.
    pub before_step: u64,
    /// Examples this rank trained in the step.
    pub examples: usize,
    /// Distinct instructions among them (the instruction encoder and the hypernetwork
    /// ran once per distinct instruction).
    pub instructions: usize,
    /// What was measured: `tensors` (the bytes tensors held: CUDA's allocator, or on the
    /// CPU libtorch's allocation reports) or `resident set` (the process's, which also
    /// holds its code, its data and the C allocator's caches).
    pub measured: String,
}

/// Bytes as gigabytes for a log line (`1.234 GB`).
pub fn gigabytes(bytes: u64) -> String {
    format!("{:.3} GB", bytes as f64 / 1e9)
}

/// A line of `metrics.jsonl`: a training step or an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MetricsLine {
    /// A training step.
    Train(StepMetrics),
    /// Evaluation scores at a step: `{"step": …, "eval": {"task/metric": value}}`.
    Eval {
        /// The step.
        step: u64,
        /// Scores by `task/metric`.
        eval: BTreeMap<String, f64>,
    },
    /// The memory of a process's first step: `{"step": …, "memory": {…}}`.
    Memory {
        /// The step.
        step: u64,
        /// What held it.
        memory: MemoryReport,
    },
}

/// Appends lines to a `metrics.jsonl` and, optionally, the same scalars to a TensorBoard
/// event file.
#[derive(Debug)]
pub struct MetricsWriter {
    path: PathBuf,
    file: File,
    events: Option<EventWriter>,
}

impl MetricsWriter {
    /// Opens (creating or appending) `path`.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        Ok(Self {
            path,
            file,
            events: None,
        })
    }

    /// Also writes every line's scalars to a new event file in `dir` (tags `train/loss`,
    /// `train/learning_rate/<group>`, …, `eval/<set>/<metric>`).
    pub fn with_tensorboard(mut self, dir: &Path) -> Result<Self> {
        self.events = Some(EventWriter::create(dir)?);
        Ok(self)
    }

    /// Appends one line and flushes it.
    pub fn write(&mut self, line: &MetricsLine) -> Result<()> {
        let mut text = serde_json::to_string(line).unwrap_or_default();
        text.push('\n');
        self.file
            .write_all(text.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(io_error(&self.path))?;
        if let Some(events) = &mut self.events {
            let (step, scalars) = scalars_of(line);
            let refs: Vec<(&str, f32)> = scalars.iter().map(|(t, v)| (t.as_str(), *v)).collect();
            events.scalars(step, &refs)?;
        }
        Ok(())
    }
}

/// The TensorBoard tags and values of a metrics line.
fn scalars_of(line: &MetricsLine) -> (u64, Vec<(String, f32)>) {
    match line {
        MetricsLine::Train(m) => {
            let mut scalars = vec![
                ("train/loss".to_string(), m.loss as f32),
                ("train/z_loss".to_string(), m.z_loss as f32),
                ("train/loss_per_token".to_string(), m.loss_per_token as f32),
                ("train/grad_norm".to_string(), m.grad_norm as f32),
                (
                    "train/tokens_per_second".to_string(),
                    m.tokens_per_second as f32,
                ),
                (
                    "train/examples_per_second".to_string(),
                    m.examples_per_second as f32,
                ),
            ];
            scalars.extend(
                m.learning_rate
                    .iter()
                    .map(|(group, lr)| (format!("train/learning_rate/{group}"), *lr as f32)),
            );
            if m.peak_memory_bytes > 0 {
                scalars.push((
                    "train/peak_memory_gb".to_string(),
                    (m.peak_memory_bytes as f64 / 1e9) as f32,
                ));
            }
            if let (Some(loss), Some(share)) = (m.cosine_loss, m.positive_cosine_samples) {
                scalars.push(("train/cosine_loss".to_string(), loss as f32));
                scalars.push(("train/positive_cosine_samples".to_string(), share as f32));
            }
            if let Some(reserved) = m.peak_reserved_bytes {
                scalars.push((
                    "train/peak_reserved_gb".to_string(),
                    (reserved as f64 / 1e9) as f32,
                ));
            }
            (m.step, scalars)
        }
        MetricsLine::Memory { step, memory } => (
            *step,
            [
                ("parameters", memory.parameters),
                ("gradients", memory.gradients),
                ("optimizer_state", memory.optimizer_state),
                ("activations", memory.activations),
            ]
            .iter()
            .map(|(what, bytes)| (format!("memory/{what}_gb"), (*bytes as f64 / 1e9) as f32))
            .collect(),
        ),
        MetricsLine::Eval { step, eval } => (
            *step,
            eval.iter()
                .map(|(tag, v)| (format!("eval/{tag}"), *v as f32))
                .collect(),
        ),
    }
}

/// Reads a `metrics.jsonl`, skipping lines that are not metrics (and a torn last line).
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsLine>> {
    let file = File::open(path).map_err(io_error(path))?;
    let mut lines = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line.map_err(io_error(path))?;
        if let Ok(parsed) = serde_json::from_str(&line) {
            lines.push(parsed);
        }
    }
    Ok(lines)
}

/// Keeps only the lines of steps `≤ step` (after a resume, later lines belong to the run
/// that was interrupted and are rewritten by the resumed one). The lines kept stay byte for
/// byte as they were written, and a file with nothing to drop is not touched at all; a
/// torn last line (a crash mid-write) is dropped so that the next line starts afresh.
pub fn truncate_after(path: &Path, step: u64) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(path)(e)),
    };
    let mut kept = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let keep = line.ends_with('\n')
            && match serde_json::from_str::<MetricsLine>(line) {
                Ok(MetricsLine::Train(m)) => m.step <= step,
                Ok(MetricsLine::Eval { step: s, .. } | MetricsLine::Memory { step: s, .. }) => {
                    s <= step
                }
                // Not ours to judge (e.g. a note a user added): kept as it is.
                Err(_) => true,
            };
        if keep {
            kept.push_str(line);
        }
    }
    if kept.len() == text.len() {
        return Ok(());
    }
    crate::atomic::write_atomically(path, kept.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn train_line(step: u64) -> String {
        // Spelled as an earlier version might have written it: the history is kept as
        // written, not re-serialised.
        format!(
            "{{\"step\":{step},\"loss\":2.5,\"z_loss\":0.0,\"loss_per_token\":0.25,\"learning_rate\":{{}},\"grad_norm\":1.0,\"tokens_per_second\":10.0,\"examples_per_second\":1.0}}\n"
        )
    }

    #[test]
    fn resuming_keeps_the_history_byte_for_byte_and_drops_only_later_steps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let history = format!(
            "{}{}{{\"step\":2,\"eval\":{{\"seen/rouge_l\":5.0}}}}\n",
            train_line(1),
            train_line(2)
        );
        std::fs::write(&path, &history).unwrap();
        // A rewrite goes through a temporary file and a rename, which gives the path a new
        // inode; a modification time can be too coarse to tell.
        let inode = || std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
        let before = inode();
        truncate_after(&path, 2).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), history);
        assert_eq!(
            inode(),
            before,
            "nothing to drop: the file is not rewritten"
        );

        let torn = &train_line(4)[..20];
        std::fs::write(&path, format!("{history}{}{torn}", train_line(3))).unwrap();
        let torn_file = inode();
        truncate_after(&path, 2).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), history);
        assert_ne!(inode(), torn_file, "rewritten atomically");
        assert_eq!(read_metrics(&path).unwrap().len(), 3);
    }
}
