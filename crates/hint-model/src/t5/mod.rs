//! T5 (v1.0, v1.1, LM-adapted) as in Hugging Face transformers: one concept per file.

pub mod adaptation;
pub mod attention;
pub mod block;
pub mod checkpoint;
pub mod config;
pub mod feed_forward;
pub mod generation;
pub mod layers;
pub mod loss;
pub mod memory;
pub mod model;
pub mod position;
pub mod stack;
