//! hint-model: T5 and the HINT hypernetwork on tch (libtorch) — forward passes,
//! losses, generation and scoring, with weight names that match Hugging Face so that
//! checkpoints load by name.
//!
//! ```no_run
//! use hint_model::{T5Config, T5, generation::{generate, GenerationConfig}};
//! let config = T5Config::preset("tiny").unwrap();
//! let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! let model = T5::new(vs.root(), &config);
//! let inputs = tch::Tensor::from_slice(&[5i64, 6, 1]).view([1, 3]);
//! let out = generate(&model, &inputs, &inputs.ones_like(), &GenerationConfig::default()).unwrap();
//! ```

mod assignment;
mod error;
mod fused;
pub mod hyper;
mod memory;
mod packed;
mod parameters;
mod peft;
mod pretrained;
mod remat;
mod runtime;
mod shapes;
pub mod t5;
pub mod t5x_names;

pub use assignment::{load_weights_mapped, AssignmentMap, AssignmentNaming, AssignmentReport};
pub use error::ModelError;
pub use fused::{fused_kernels, set_fused_kernels, FUSED_KERNELS_ENV};
pub use hyper::config::{HyperConfig, LayerEmbedding};
pub use hyper::flops;
pub use hyper::model::{HyperT5, TaskAdaptation};
pub use memory::{
    count_cpu_tensors, memory_usage, release_gradients, reset_peak_memory, MemoryUsage,
};
pub use packed::{packed_weight_bytes, set_weight_packing, weight_packing, WEIGHT_PACKING_ENV};
pub use parameters::{load_parameters, save_parameters};
pub use peft::{peft_refusal, save_base_t5, save_peft_adapter};
pub use pretrained::{
    load_t5_weights, read_hint_config, Pretrained, PretrainedModel, HINT_CONFIG_KEY,
};
pub use remat::RematPolicy;
pub use runtime::{
    libtorch_version, open_device, retain_freed_memory, select_device, DeviceError, RuntimeInfo,
    RETAIN_FREED_MEMORY_ENV,
};
pub use shapes::parameter_shapes;
pub use t5::checkpoint::{load_weights, save_pretrained, weight_files, LoadReport};
pub use t5::config::{FeedForwardProj, T5Config};
pub use t5::generation;
pub use t5::loss::{
    cross_entropy, hf_mean_cross_entropy, rematerialised_cross_entropy, Loss, LossConfig,
    LossNormalization, REMAT_LOSS_CHUNK_LOGITS,
};
pub use t5::memory::EncoderMemory;
pub use t5::model::{LmHead, T5};
pub use t5::stack::DecoderCache;
