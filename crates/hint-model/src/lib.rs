//! hint-model: T5 and the HINT hypernetwork on tch (libtorch) — forward passes,
//! losses, generation and scoring, with weight names that match Hugging Face.
//!
//! The runtime facts (libtorch version, devices) come first; T5 and HyperT5 build on them.

mod runtime;

pub use runtime::{libtorch_version, select_device, RuntimeInfo};
