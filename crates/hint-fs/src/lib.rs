//! hint-fs: crash-safe file writing, the one implementation every hint crate writes files
//! with. A file is written under a temporary name beside its final one ([`temporary_path`]),
//! synced, and renamed over it, so a crash at any instant leaves the old file or the new
//! one, never a half-written one; a failed write removes its temporary file. [`FileLock`]
//! keeps a folder to one writing process, and [`remove_stale_temporaries`] clears what a
//! crashed writer left. Where several processes write into one parent (a cache of many
//! tasks), each writes a [`WorkingDir`], and [`remove_abandoned_working_dirs`] clears only
//! those whose writer is gone.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("results.json");
//! hint_fs::write_atomically(&path, b"{}").unwrap();
//! assert_eq!(std::fs::read(&path).unwrap(), b"{}");
//! assert!(!hint_fs::temporary_path(&path).exists());
//! ```

use std::fs::File;
use std::path::{Path, PathBuf};

use thiserror::Error;

mod lock;
mod working_dir;

pub use lock::{FileLock, LockError};
pub use working_dir::{remove_abandoned_working_dirs, WorkingDir};

/// A file operation that failed, with the file it was about.
#[derive(Debug, Error)]
#[error("{path}: {source}")]
pub struct FsError {
    /// The file.
    pub path: PathBuf,
    /// The underlying error.
    pub source: std::io::Error,
}

impl FsError {
    /// A closure that wraps an `io::Error` about `path`.
    pub fn at(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The suffix of every temporary file: a leftover of a crash is recognisable by it.
pub const TEMPORARY_SUFFIX: &str = ".tmp";

/// `dir/.name.tmp` for `dir/name`: in the same directory, so the rename stays on one file
/// system (and is therefore atomic), and hidden, so it is not mistaken for the file.
pub fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}{TEMPORARY_SUFFIX}"))
}

/// Whether a folder entry is a leftover of an interrupted write: a temporary file of
/// [`write_atomically`] (`.name.tmp`, or the older `name.tmp`), or a checkpoint or cache
/// folder being written or replaced (`.tmp-…`, `.old-…`).
pub fn is_temporary(name: &str) -> bool {
    name.ends_with(TEMPORARY_SUFFIX) || name.starts_with(".tmp-") || name.starts_with(".old-")
}

/// Removes the leftovers of interrupted writes directly inside `dir` ([`is_temporary`]);
/// returns what was removed. Call it only while holding the folder's [`FileLock`]: a
/// temporary of a live writer looks the same.
pub fn remove_stale_temporaries(dir: &Path) -> Result<Vec<PathBuf>, FsError> {
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(FsError::at(dir))? {
        let entry = entry.map_err(FsError::at(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_temporary(&name) {
            continue;
        }
        let path = entry.path();
        let result = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        result.map_err(FsError::at(&path))?;
        removed.push(path);
    }
    removed.sort();
    Ok(removed)
}

/// Writes `bytes` to `path` through a temporary file, a sync and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), FsError> {
    write_atomically_with(path, |tmp| {
        std::fs::write(tmp, bytes).map_err(FsError::at(tmp))
    })
}

/// Lets `write` fill the temporary file of `path`, then syncs it and renames it over
/// `path`. When `write` (or the sync) fails, the temporary file is removed and `path` is
/// untouched.
pub fn write_atomically_with<E: From<FsError>>(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    let tmp = temporary_path(path);
    let result = write(&tmp).and_then(|()| {
        // Without the sync a crash shortly after the rename can leave the real name
        // pointing at an empty file.
        File::open(&tmp)
            .and_then(|file| file.sync_all())
            .map_err(|source| {
                E::from(FsError {
                    path: tmp.clone(),
                    source,
                })
            })
    });
    if let Err(err) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(err);
    }
    std::fs::rename(&tmp, path).map_err(|source| {
        E::from(FsError {
            path: path.to_path_buf(),
            source,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.json");
        write_atomically(&path, b"old").unwrap();
        let err = write_atomically_with(&path, |tmp| {
            std::fs::write(tmp, b"half").unwrap();
            Err(FsError {
                path: tmp.to_path_buf(),
                source: std::io::Error::other("disk full"),
            })
        })
        .unwrap_err();
        assert!(err.to_string().contains("disk full"));
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert!(!temporary_path(&path).exists());
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "only the file itself"
        );
    }

    #[test]
    fn stale_temporaries_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "config.gin",
            "checkpoint_00000003",
            ".config.gin.tmp",
            "tokenizer.json.tmp",
        ] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        std::fs::create_dir(dir.path().join(".tmp-checkpoint_00000006-77")).unwrap();
        std::fs::write(
            dir.path()
                .join(".tmp-checkpoint_00000006-77/model.safetensors"),
            "x",
        )
        .unwrap();
        let removed = remove_stale_temporaries(dir.path()).unwrap();
        assert_eq!(removed.len(), 3, "{removed:?}");
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["checkpoint_00000003", "config.gin"]);
    }

    #[test]
    fn the_temporary_name_is_hidden_beside_the_file() {
        let tmp = temporary_path(Path::new("/runs/a/config.gin"));
        assert_eq!(tmp, Path::new("/runs/a/.config.gin.tmp"));
    }
}
