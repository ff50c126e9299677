//! Checkpoints: `checkpoint_<step>/` folders in the model directory, each written under a
//! temporary name, synced and renamed, so that a crash at any instant leaves every earlier
//! checkpoint intact; only the newest `keep` survive.
//!
//! What a training checkpoint holds is decided here, not in the loop: the parameters
//! ([`PARAMETERS_FILE`]), the optimizer state with its step ([`OPTIMIZER_FILE`]) and the
//! [`TrainState`] — step, data position and seed ([`TRAIN_STATE_FILE`], written last).

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use hint_model::{load_parameters, save_parameters};
use hint_optim::{Adafactor, RestoreOptions};
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::Tensor;

use crate::error::{io_error, Result, TrainError};

/// The file that completes a checkpoint (written last, inside the temporary folder).
pub const TRAIN_STATE_FILE: &str = "train_state.json";

/// The parameters of a checkpoint, by name.
pub const PARAMETERS_FILE: &str = "model.safetensors";

/// The optimizer state of a checkpoint.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// What `train_state.json` holds besides parameters and optimizer state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    /// Global step.
    pub step: u64,
    /// The data source's position ([`crate::BatchSource::state`]).
    pub data: serde_json::Value,
    /// The run's seed (dropout masks are drawn from `(seed, step)`).
    pub seed: i64,
}

/// A complete checkpoint on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// The global step it holds.
    pub step: u64,
    /// Its folder.
    pub path: PathBuf,
}

/// Writes, lists and prunes the checkpoints of one model directory.
#[derive(Debug, Clone)]
pub struct CheckpointManager {
    dir: PathBuf,
    keep: usize,
}

fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_error(path))
}

impl CheckpointManager {
    /// Manages `checkpoint_*` folders under `dir`, keeping the newest `keep` (at least 1).
    pub fn new(dir: impl Into<PathBuf>, keep: usize) -> Self {
        Self {
            dir: dir.into(),
            keep: keep.max(1),
        }
    }

    /// The folder a checkpoint of `step` has in this model directory.
    pub fn path_of(&self, step: u64) -> PathBuf {
        self.dir.join(Self::name(step))
    }

    /// The folder name of a step's checkpoint.
    pub fn name(step: u64) -> String {
        format!("checkpoint_{step:08}")
    }

    /// Complete checkpoints, oldest first. Leftover temporary folders (from a crash) and
    /// folders without their state file are not checkpoints.
    pub fn list(&self) -> Result<Vec<CheckpointInfo>> {
        let mut found = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
            Err(e) => return Err(io_error(&self.dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_error(&self.dir))?;
            let name = entry.file_name().to_string_lossy().to_string();
            let Some(step) = name
                .strip_prefix("checkpoint_")
                .and_then(|s| s.parse().ok())
            else {
                continue;
            };
            if entry.path().join(TRAIN_STATE_FILE).is_file() {
                found.push(CheckpointInfo {
                    step,
                    path: entry.path(),
                });
            }
        }
        found.sort_by_key(|c| c.step);
        Ok(found)
    }

    /// The newest complete checkpoint.
    pub fn latest(&self) -> Result<Option<CheckpointInfo>> {
        Ok(self.list()?.pop())
    }

    /// Writes the checkpoint of `step`: `write` fills a temporary folder (it must write
    /// [`TRAIN_STATE_FILE`]); every file is synced, the folder renamed into place and the
    /// directory synced; then older checkpoints beyond `keep` are removed.
    pub fn save(
        &self,
        step: u64,
        write: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<CheckpointInfo> {
        let final_path = self.dir.join(Self::name(step));
        let tmp = self
            .dir
            .join(format!(".tmp-{}-{}", Self::name(step), std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io_error(&tmp))?;
        }
        fs::create_dir_all(&tmp).map_err(io_error(&tmp))?;
        write(&tmp)?;
        if !tmp.join(TRAIN_STATE_FILE).is_file() {
            return Err(TrainError::Checkpoint {
                path: tmp,
                message: format!("the writer did not produce {TRAIN_STATE_FILE}"),
            });
        }
        for entry in fs::read_dir(&tmp).map_err(io_error(&tmp))? {
            let path = entry.map_err(io_error(&tmp))?.path();
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(io_error(&path))?;
        }
        sync_dir(&tmp)?;
        if final_path.exists() {
            // Re-saving a step (after a resume) replaces the old copy only once the new
            // one is complete.
            let old = self
                .dir
                .join(format!(".old-{}-{}", Self::name(step), std::process::id()));
            fs::rename(&final_path, &old).map_err(io_error(&final_path))?;
            fs::rename(&tmp, &final_path).map_err(io_error(&final_path))?;
            fs::remove_dir_all(&old).map_err(io_error(&old))?;
        } else {
            fs::rename(&tmp, &final_path).map_err(io_error(&final_path))?;
        }
        sync_dir(&self.dir)?;
        self.prune()?;
        Ok(CheckpointInfo {
            step,
            path: final_path,
        })
    }

    /// Writes the checkpoint of a training state: parameters, optimizer state and
    /// `state`, under the step `state.step`.
    pub fn save_training(
        &self,
        vs: &VarStore,
        optimizer: &Adafactor,
        state: &TrainState,
    ) -> Result<CheckpointInfo> {
        self.save_with_optimizer(vs, state, |path| Ok(optimizer.save_state(path)?))
    }

    /// [`CheckpointManager::save_training`] with the optimizer state given as named
    /// tensors (the shards of a sharded run, gathered), in the format of
    /// `Adafactor::save_state`, so that any world size restores it.
    pub fn save_training_with_state(
        &self,
        vs: &VarStore,
        optimizer_state: &[(String, Tensor)],
        state: &TrainState,
    ) -> Result<CheckpointInfo> {
        self.save_with_optimizer(vs, state, |path| {
            Tensor::write_safetensors(optimizer_state, path).map_err(|source| TrainError::Torch {
                context: format!("writing {}", path.display()),
                source,
            })
        })
    }

    fn save_with_optimizer(
        &self,
        vs: &VarStore,
        state: &TrainState,
        write_optimizer: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<CheckpointInfo> {
        self.save(state.step, |dir| {
            save_parameters(vs, dir.join(PARAMETERS_FILE))?;
            write_optimizer(&dir.join(OPTIMIZER_FILE))?;
            let path = dir.join(TRAIN_STATE_FILE);
            let text = serde_json::to_string_pretty(state).unwrap_or_default();
            std::fs::write(&path, text).map_err(io_error(&path))
        })
    }

    /// Restores parameters and optimizer state from the newest checkpoint into `vs` and
    /// `optimizer`, and returns it with its training state (`None`: no checkpoint yet).
    pub fn restore_latest(
        &self,
        vs: &VarStore,
        optimizer: &mut Adafactor,
    ) -> Result<Option<(CheckpointInfo, TrainState)>> {
        let Some(latest) = self.latest()? else {
            return Ok(None);
        };
        let state = read_train_state(&latest.path)?;
        load_parameters(vs, latest.path.join(PARAMETERS_FILE))?;
        optimizer.load_state(latest.path.join(OPTIMIZER_FILE), &RestoreOptions::default())?;
        optimizer.set_global_step(state.step);
        Ok(Some((latest, state)))
    }

    fn prune(&self) -> Result<()> {
        let all = self.list()?;
        let excess = all.len().saturating_sub(self.keep);
        for old in &all[..excess] {
            // Renamed first: a kill in the middle of removing the files must not leave a
            // `checkpoint_…` folder that looks whole but is not (the fault-injection test
            // found one). A `.old-` leftover is removed at the next start.
            let doomed = self.dir.join(format!(
                ".old-{}-{}",
                Self::name(old.step),
                std::process::id()
            ));
            fs::rename(&old.path, &doomed).map_err(io_error(&old.path))?;
            fs::remove_dir_all(&doomed).map_err(io_error(&doomed))?;
        }
        Ok(())
    }
}

/// Reads the [`TrainState`] of a checkpoint folder.
pub fn read_train_state(checkpoint: &Path) -> Result<TrainState> {
    let path = checkpoint.join(TRAIN_STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint {
        path: checkpoint.to_path_buf(),
        message: format!("{TRAIN_STATE_FILE}: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_state(dir: &Path) -> Result<()> {
        fs::write(dir.join(TRAIN_STATE_FILE), "{}").map_err(io_error(dir))
    }

    #[test]
    fn keeps_the_newest_and_ignores_incomplete_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let manager = CheckpointManager::new(tmp.path(), 2);
        for step in [10, 20, 30] {
            manager.save(step, write_state).unwrap();
        }
        // A crash mid-write leaves a temporary folder and a folder without state.
        fs::create_dir_all(tmp.path().join(".tmp-checkpoint_00000040-1")).unwrap();
        fs::create_dir_all(tmp.path().join("checkpoint_00000050")).unwrap();
        let steps: Vec<u64> = manager.list().unwrap().iter().map(|c| c.step).collect();
        assert_eq!(steps, vec![20, 30]);
        assert_eq!(manager.latest().unwrap().unwrap().step, 30);
    }

    #[test]
    fn a_failed_write_leaves_earlier_checkpoints_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let manager = CheckpointManager::new(tmp.path(), 3);
        manager.save(1, write_state).unwrap();
        let err = manager
            .save(2, |_| Err(TrainError::invalid("test", "disk full")))
            .unwrap_err();
        assert!(err.to_string().contains("disk full"));
        let steps: Vec<u64> = manager.list().unwrap().iter().map(|c| c.step).collect();
        assert_eq!(steps, vec![1]);
        assert!(
            manager.save(3, |_| Ok(())).is_err(),
            "a checkpoint without state is refused"
        );
    }
}
