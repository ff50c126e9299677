//! Where the ranks meet: torchrun's environment variables, read and checked.

use std::time::Duration;

use crate::error::DistError;

/// How a rank finds the others (torchrun's contract).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendezvous {
    /// This process's rank (`RANK`).
    pub rank: usize,
    /// The number of processes (`WORLD_SIZE`).
    pub world_size: usize,
    /// The rank on this machine (`LOCAL_RANK`, default `RANK`).
    pub local_rank: usize,
    /// The store's host (`MASTER_ADDR`).
    pub master_addr: String,
    /// The store's port (`MASTER_PORT`).
    pub master_port: u16,
    /// Whether torchrun's agent already serves the store (`TORCHELASTIC_USE_AGENT_STORE`):
    /// then every rank, rank 0 included, joins it as a client.
    pub agent_store: bool,
    /// Keys of this attempt live under this prefix (torchrun restarts count up in
    /// `TORCHELASTIC_RESTART_COUNT`), so a restarted group never reads an old attempt's.
    pub store_prefix: String,
    /// Bounds the rendezvous and every collective.
    pub timeout: Duration,
}

fn variable(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parsed<T: std::str::FromStr>(name: &'static str, value: String) -> Result<T, DistError> {
    value.trim().parse().map_err(|_| DistError::BadVariable {
        name,
        value,
        message: "not a number".into(),
    })
}

fn required(name: &'static str) -> Result<String, DistError> {
    variable(name).ok_or(DistError::MissingVariable { name })
}

impl Rendezvous {
    /// Reads torchrun's variables; `None` when `WORLD_SIZE` is unset (a plain `hint train`).
    pub fn from_env(timeout: Duration) -> Result<Option<Self>, DistError> {
        let Some(world) = variable("WORLD_SIZE") else {
            return Ok(None);
        };
        let world_size: usize = parsed("WORLD_SIZE", world.clone())?;
        if world_size == 0 {
            return Err(DistError::BadVariable {
                name: "WORLD_SIZE",
                value: world,
                message: "a world needs at least one rank".into(),
            });
        }
        let rank: usize = parsed("RANK", required("RANK")?)?;
        if rank >= world_size {
            return Err(DistError::BadVariable {
                name: "RANK",
                value: rank.to_string(),
                message: format!("must be below WORLD_SIZE={world_size}"),
            });
        }
        let local_rank = match variable("LOCAL_RANK") {
            Some(v) => parsed("LOCAL_RANK", v)?,
            None => rank,
        };
        let (master_addr, master_port) = if world_size == 1 {
            (
                variable("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into()),
                29500,
            )
        } else {
            (
                required("MASTER_ADDR")?,
                parsed("MASTER_PORT", required("MASTER_PORT")?)?,
            )
        };
        let agent_store = variable("TORCHELASTIC_USE_AGENT_STORE")
            .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
        let attempt = variable("TORCHELASTIC_RESTART_COUNT").unwrap_or_else(|| "0".into());
        Ok(Some(Self {
            rank,
            world_size,
            local_rank,
            master_addr,
            master_port,
            agent_store,
            store_prefix: format!("hint/attempt_{attempt}/"),
            timeout,
        }))
    }

    /// Whether this rank starts the store's server.
    pub fn serves_store(&self) -> bool {
        self.rank == 0 && !self.agent_store
    }

    /// Whether the master is this machine's loopback.
    pub fn master_is_local(&self) -> bool {
        matches!(self.master_addr.as_str(), "127.0.0.1" | "localhost" | "::1")
    }

    /// This machine's name, for Gloo to bind to when the master is elsewhere.
    pub fn hostname(&self) -> String {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into())
    }
}
