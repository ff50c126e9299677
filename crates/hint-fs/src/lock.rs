//! One writer per folder: an exclusive advisory lock (`flock`) on a file the folder already
//! has, held for the life of the process. The kernel drops it when the process dies, so a
//! SIGKILL never leaves a stale lock, and nothing is written to take it (a refused command
//! changes nothing on disk).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use fs4::{FileExt, TryLockError};
use thiserror::Error;

use crate::FsError;

/// Why a lock was not taken.
#[derive(Debug, Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("{path} is in use by {holder}: one process writes into a model directory at a time (wait for it, or stop it)")]
    Held {
        /// The locked file.
        path: PathBuf,
        /// Who holds it, as far as the system tells (`process 1234 (hint), started …`).
        holder: String,
    },
    /// The file could not be opened or locked.
    #[error(transparent)]
    Io(#[from] FsError),
}

/// An exclusive lock on a file, released when dropped or when the process ends.
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
}

impl FileLock {
    /// Locks `path` (which must exist) without waiting; [`LockError::Held`] names the
    /// process that holds it.
    pub fn try_acquire(path: &Path) -> Result<Self, LockError> {
        let file = OpenOptions::new()
            .read(true)
            .open(path)
            .map_err(FsError::at(path))?;
        // Called through the trait: std's `File::try_lock` is newer than the workspace MSRV.
        match FileExt::try_lock(&file) {
            Ok(()) => Ok(Self {
                file,
                path: path.to_path_buf(),
            }),
            Err(TryLockError::WouldBlock) => Err(LockError::Held {
                path: path.to_path_buf(),
                holder: holder_of(&file).unwrap_or_else(|| "another process".into()),
            }),
            Err(TryLockError::Error(source)) => Err(FsError {
                path: path.to_path_buf(),
                source,
            }
            .into()),
        }
    }

    /// The locked file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = FileExt::unlock(&self.file);
    }
}

/// The process holding a lock on `file`, from Linux's `/proc/locks` (matched by inode),
/// with its command name and start time; `None` where the system does not say.
fn holder_of(file: &File) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let inode = file.metadata().ok()?.ino();
        let locks = std::fs::read_to_string("/proc/locks").ok()?;
        let pid = locks.lines().find_map(|line| {
            // `1: FLOCK  ADVISORY  WRITE 1234 00:2f:5678 0 EOF`
            let fields: Vec<&str> = line.split_whitespace().collect();
            let device_inode = fields.get(5)?;
            let found: u64 = device_inode.rsplit(':').next()?.parse().ok()?;
            (found == inode).then(|| fields.get(4).map(|p| p.to_string()))?
        })?;
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let name = std::fs::read_to_string(proc_dir.join("comm"))
            .map(|n| format!(" ({})", n.trim()))
            .unwrap_or_default();
        let started = std::fs::metadata(&proc_dir)
            .and_then(|m| m.modified())
            .map(|t| format!(", started {}", humantime::format_rfc3339_seconds(t)))
            .unwrap_or_default();
        Some(format!("process {pid}{name}{started}"))
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("MARKER");
        std::fs::write(&path, "x").unwrap();
        let first = FileLock::try_acquire(&path).unwrap();
        // flock locks belong to the open file description: a second open conflicts even
        // within one process, as a second process would.
        let err = FileLock::try_acquire(&path).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, LockError::Held { .. }), "{text}");
        if cfg!(target_os = "linux") {
            assert!(
                text.contains(&format!("process {}", std::process::id())),
                "{text}"
            );
            assert!(text.contains("started"), "{text}");
        }
        drop(first);
        FileLock::try_acquire(&path).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"x",
            "locking writes nothing"
        );
    }
}
