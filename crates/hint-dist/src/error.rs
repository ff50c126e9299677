//! What can go wrong forming a process group or running a collective.

use thiserror::Error;

/// Why a process group could not be formed or a collective failed.
#[derive(Debug, Error)]
pub enum DistError {
    /// A torchrun variable is set but not usable.
    #[error("environment variable {name}={value:?}: {message}")]
    BadVariable {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        message: String,
    },
    /// Some of torchrun's variables are set but not all that a rendezvous needs.
    #[error("environment variable {name} is not set (torchrun sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT together)")]
    MissingVariable {
        /// The variable.
        name: &'static str,
    },
    /// The store or the Gloo group could not be formed (busy port, unreachable master,
    /// a rank that never came).
    #[error("rendezvous at {address} as rank {rank} of {world_size} failed: {message}")]
    Rendezvous {
        /// `host:port` of the store.
        address: String,
        /// This process's rank.
        rank: usize,
        /// Ranks expected.
        world_size: usize,
        /// What c10d said.
        message: String,
    },
    /// A collective failed or timed out (e.g. another rank died).
    #[error("{collective} on rank {rank} of {world_size} failed: {message}")]
    Collective {
        /// The collective, e.g. `all_reduce`.
        collective: &'static str,
        /// This process's rank.
        rank: usize,
        /// Ranks in the group.
        world_size: usize,
        /// What c10d said.
        message: String,
    },
    /// Ranks started with different settings.
    #[error("rank {rank} has another {what} than rank 0: {mine} here, {rank0} on rank 0")]
    Mismatch {
        /// What differs, e.g. `operative configuration`.
        what: String,
        /// The rank that noticed.
        rank: usize,
        /// Its value (or a digest of it).
        mine: String,
        /// Rank 0's.
        rank0: String,
    },
    /// Parameters that took no part in a step's loss, so their gradients were never
    /// summed (every rank would wait for them).
    #[error(
        "rank {rank}: these trainable parameters received no gradient in the step, so the \
         ranks could not sum their gradients: {}; data parallelism needs every trainable \
         parameter in every step's loss (freeze the others)",
        names.join(", ")
    )]
    UnusedParameters {
        /// This process's rank.
        rank: usize,
        /// The parameters.
        names: Vec<String>,
    },
    /// A tensor a collective cannot take.
    #[error("{collective}: {message}")]
    BadTensor {
        /// The collective.
        collective: &'static str,
        /// What is wrong.
        message: String,
    },
}
