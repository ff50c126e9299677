//! A folder written under a temporary name and renamed into place when complete, in a
//! parent that several processes may write into at once (a cache of many tasks). Each
//! writer holds a lock beside its folder for as long as it writes, so that the next start
//! can tell a crashed writer's leftovers (lock free) from a live writer's folder (locked).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use crate::lock::{FileLock, LockError};
use crate::FsError;

/// A folder being written: `.tmp-<name>-<pid>` in its parent, locked through
/// `.tmp-<name>-<pid>.lock`. Dropped without [`WorkingDir::persist`], it is removed.
///
/// ```
/// let parent = tempfile::tempdir().unwrap();
/// let work = hint_fs::WorkingDir::create(parent.path(), "task").unwrap();
/// std::fs::write(work.path().join("COMPLETED"), "").unwrap();
/// work.persist(&parent.path().join("task")).unwrap();
/// assert!(parent.path().join("task/COMPLETED").is_file());
/// assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 1, "nothing else is left");
/// ```
#[derive(Debug)]
pub struct WorkingDir {
    path: PathBuf,
    lock_path: PathBuf,
    lock: Option<FileLock>,
}

impl WorkingDir {
    /// Takes the lock, then creates the folder (empty: an earlier one of this name is
    /// removed) in `parent`, which must exist.
    pub fn create(parent: &Path, name: &str) -> Result<Self, LockError> {
        let path = parent.join(format!(".tmp-{name}-{}", std::process::id()));
        let lock_path = lock_path_of(&path);
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&lock_path)
            .map_err(FsError::at(&lock_path))?;
        let lock = FileLock::try_acquire(&lock_path)?;
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(FsError::at(&path))?;
        }
        std::fs::create_dir(&path).map_err(FsError::at(&path))?;
        Ok(Self {
            path,
            lock_path,
            lock: Some(lock),
        })
    }

    /// The folder to write into.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the folder to `target`, replacing a folder already there, and drops the lock.
    pub fn persist(mut self, target: &Path) -> Result<(), FsError> {
        if target.exists() {
            std::fs::remove_dir_all(target).map_err(FsError::at(target))?;
        }
        std::fs::rename(&self.path, target).map_err(FsError::at(target))?;
        // Still locked while it goes: a cleaner never sees the folder without its lock.
        let _ = std::fs::remove_file(&self.lock_path);
        self.lock = None;
        Ok(())
    }
}

impl Drop for WorkingDir {
    fn drop(&mut self) {
        if self.lock.is_some() {
            let _ = std::fs::remove_dir_all(&self.path);
            let _ = std::fs::remove_file(&self.lock_path);
        }
    }
}

fn lock_path_of(folder: &Path) -> PathBuf {
    let mut name = folder.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    folder.with_file_name(name)
}

/// Removes the [`WorkingDir`]s in `parent` whose writer is gone (a crash, a full disk, a
/// SIGKILL), and their lock files; a folder whose lock is held is a live writer's and
/// stays. Returns what was removed.
pub fn remove_abandoned_working_dirs(parent: &Path) -> Result<Vec<PathBuf>, FsError> {
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(parent) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(FsError::at(parent)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(FsError::at(parent))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if !name.starts_with(".tmp-") || !path.is_dir() {
            continue;
        }
        let lock_path = lock_path_of(&path);
        // Held for the whole removal, so a writer cannot start over under the same name.
        let _lock = if lock_path.exists() {
            match FileLock::try_acquire(&lock_path) {
                Ok(lock) => Some(lock),
                Err(LockError::Held { .. }) => continue,
                Err(LockError::Io(e)) => return Err(e),
            }
        } else {
            None
        };
        std::fs::remove_dir_all(&path).map_err(FsError::at(&path))?;
        let _ = std::fs::remove_file(&lock_path);
        removed.push(path);
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_abandoned_working_dirs_are_removed() {
        let parent = tempfile::tempdir().unwrap();
        let live = WorkingDir::create(parent.path(), "live").unwrap();
        std::fs::write(live.path().join("part-0.parquet"), "x").unwrap();
        // What a killed writer of an older version (no lock) and of this one leave.
        let old = parent.path().join(".tmp-old-1");
        std::fs::create_dir(&old).unwrap();
        let crashed = parent.path().join(".tmp-crashed-2");
        std::fs::create_dir(&crashed).unwrap();
        std::fs::write(lock_path_of(&crashed), "").unwrap();
        std::fs::create_dir(parent.path().join("finished")).unwrap();

        let removed = remove_abandoned_working_dirs(parent.path()).unwrap();
        assert_eq!(removed, vec![crashed.clone(), old.clone()]);
        assert!(!lock_path_of(&crashed).exists());
        assert!(
            live.path().join("part-0.parquet").is_file(),
            "a live writer's folder stays"
        );
        assert!(parent.path().join("finished").is_dir());

        let path = live.path().to_path_buf();
        drop(live);
        assert!(
            !path.exists() && !lock_path_of(&path).exists(),
            "dropped unpersisted: removed"
        );
    }
}
