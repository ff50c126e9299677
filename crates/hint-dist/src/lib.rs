//! hint-dist: the process groups of HINT's data parallelism, on the engine PyTorch's own
//! DDP uses — libtorch's c10d (a TCPStore for the rendezvous, ProcessGroupGloo for
//! collectives on CPU tensors, ProcessGroupNCCL for CUDA tensors with the `nccl` feature,
//! and the `Reducer` that sums gradients during the backward pass) through a small C++
//! shim, since tch exposes none of it.
//!
//! A group is formed from torchrun's variables (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
//! `MASTER_ADDR`, `MASTER_PORT`, `TORCHELASTIC_USE_AGENT_STORE`) by [`ProcessGroup::from_env`];
//! without them it is a world of one, which needs no network. Every collective has a
//! timeout: a rank that dies makes the others fail with [`DistError::Collective`], never
//! hang.
//!
//! hint-train's `Trainer::with_group` trains on it: sliced global batches, gradients summed
//! by a [`GradientReducer`] (onto every rank, or onto each parameter's owner for a sharded
//! optimizer).

mod error;
mod ffi;
mod group;
mod reducer;
mod rendezvous;

pub use error::DistError;
pub use group::{ProcessGroup, ReduceOp};
pub use reducer::{BucketConfig, GradientReducer};
pub use rendezvous::Rendezvous;
