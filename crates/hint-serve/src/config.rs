//! How a server runs: its limits (so that no request can make it allocate without bound),
//! its batching window, and its adaptation cache.

use std::path::PathBuf;
use std::time::Duration;

/// Bounds on what one request may ask for; each refused with a 400 naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of a request body (413 above).
    pub max_body_bytes: usize,
    /// Tokens of an instruction with its demonstrations (the model reads at most its
    /// `hyper_inputs` length of them: longer ones are refused, not cut).
    pub max_instruction_tokens: usize,
    /// Demonstrations of one instruction.
    pub max_demonstrations: usize,
    /// Inputs of one request.
    pub max_inputs: usize,
    /// Choices of one scored input.
    pub max_choices: usize,
    /// New tokens one request may ask for.
    pub max_new_tokens: i64,
    /// Beams.
    pub max_beams: i64,
    /// Requests waiting for the model before new ones get a 503.
    pub max_queue: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_instruction_tokens: 2048,
            max_demonstrations: 16,
            max_inputs: 256,
            max_choices: 32,
            max_new_tokens: 512,
            max_beams: 8,
            max_queue: 1024,
        }
    }
}

/// A server's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    /// Request limits.
    pub limits: Limits,
    /// After a request arrives, how long the model waits for others to batch with it.
    pub batch_window: Duration,
    /// The most input rows one batched forward pass takes.
    pub max_batch_rows: usize,
    /// Bytes of adaptations kept in memory (least recently used ones are evicted).
    pub cache_bytes: u64,
    /// Where adaptations are also written (and read back after a restart): a folder of
    /// `<id>.safetensors` files. None: memory only.
    pub cache_dir: Option<PathBuf>,
    /// New tokens when a request does not say (`max_new_tokens`).
    pub default_max_new_tokens: i64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            batch_window: Duration::from_millis(5),
            max_batch_rows: 64,
            cache_bytes: 1 << 30,
            cache_dir: None,
            default_max_new_tokens: 64,
        }
    }
}
