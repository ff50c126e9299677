//! HINT: a hypernetwork that turns an instruction into adapters, prefixes, LoRA and
//! prompt tokens for the underlying T5 (`hint.md`).

pub mod config;
pub mod decoder;
pub mod flops;
pub mod hypernet;
pub mod layout;
pub mod model;
pub mod task_adaptation;
