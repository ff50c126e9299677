//! The model directory of a run: `config.gin`, `metrics.jsonl`, checkpoints, results.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hint_fs::FileLock;
use thiserror::Error;

/// Why a model directory cannot be used.
#[derive(Debug, Error)]
pub enum ModelDirError {
    /// The folder holds files but no marker of ours: writing there could destroy someone's data.
    #[error("{path} is not empty and is not a hint model directory (no `{marker}` file); choose an empty or new folder")]
    Foreign {
        /// The folder.
        path: PathBuf,
        /// The marker file name that was looked for.
        marker: &'static str,
    },
    /// Another process writes into the folder.
    #[error(transparent)]
    Busy(#[from] hint_fs::LockError),
    /// The path exists but is a file.
    #[error("{0} exists and is not a directory")]
    NotADirectory(PathBuf),
    /// The file system refused.
    #[error("cannot prepare model directory {path}: {source}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// A model directory that is known to be ours — either created now or marked by an
/// earlier run (which a new run resumes) — and held by this process alone: its marker is
/// locked for as long as any clone of it lives (the kernel drops the lock when the process
/// dies, so a killed run never leaves a stale lock).
#[derive(Debug, Clone)]
pub struct ModelDir {
    root: PathBuf,
    resumed: bool,
    _lock: Option<Arc<FileLock>>,
}

impl ModelDir {
    /// The file that marks a folder as a hint model directory.
    pub const MARKER: &'static str = "HINT_MODEL_DIR";

    /// A directory another rank of this run prepared (and holds the lock on): read its
    /// checkpoints and tokenizer, write nothing. Fails unless it carries the marker.
    pub fn follow(root: impl Into<PathBuf>) -> Result<Self, ModelDirError> {
        let root = root.into();
        if !root.join(Self::MARKER).is_file() {
            return Err(ModelDirError::Foreign {
                path: root,
                marker: Self::MARKER,
            });
        }
        Ok(Self {
            root,
            resumed: true,
            _lock: None,
        })
    }

    /// Opens `path` for a run: creates it (and the marker) when missing or empty, reopens
    /// it when it carries the marker, and refuses anything else before a byte is written.
    pub fn prepare(path: impl AsRef<Path>) -> Result<Self, ModelDirError> {
        let root = path.as_ref().to_path_buf();
        let io_err = |source| ModelDirError::Io {
            path: root.clone(),
            source,
        };
        if root.exists() && !root.is_dir() {
            return Err(ModelDirError::NotADirectory(root));
        }
        let marker = root.join(Self::MARKER);
        let resumed = marker.is_file();
        if !resumed {
            if root.is_dir() && fs::read_dir(&root).map_err(io_err)?.next().is_some() {
                return Err(ModelDirError::Foreign {
                    path: root,
                    marker: Self::MARKER,
                });
            }
            fs::create_dir_all(&root).map_err(io_err)?;
            hint_fs::write_atomically(&marker, b"This folder is a hint model directory.\n")
                .map_err(|e| io_err(e.source))?;
        }
        let lock = FileLock::try_acquire(&marker)?;
        // Holding the lock, whatever temporary files are here were left by a writer that
        // died (a crash, a full disk): a full disk must not stay full after a resume.
        let removed = hint_fs::remove_stale_temporaries(&root).map_err(|e| io_err(e.source))?;
        if !removed.is_empty() {
            tracing::info!(?removed, "removed temporary files of an interrupted run");
        }
        Ok(Self {
            root,
            resumed,
            _lock: Some(Arc::new(lock)),
        })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Whether an earlier run created the folder.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// Where the operative configuration is written (t5x's name).
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.gin")
    }

    /// Where per-step scalars are appended, one JSON object a line.
    pub fn metrics_path(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_a_new_directory_and_reopens_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ModelDir::prepare(tmp.path().join("run")).unwrap();
        assert!(!dir.resumed());
        assert!(dir.path().join(ModelDir::MARKER).is_file());
        fs::write(dir.metrics_path(), "{}\n").unwrap();
        // One writer at a time: while `dir` lives, the folder is taken.
        let busy = ModelDir::prepare(dir.path()).unwrap_err();
        assert!(matches!(busy, ModelDirError::Busy(_)), "{busy}");
        assert!(busy.to_string().contains("in use by process"), "{busy}");
        let path = dir.path().to_path_buf();
        drop(dir);
        let again = ModelDir::prepare(&path).unwrap();
        assert!(again.resumed());
        assert_eq!(again.config_path(), path.join("config.gin"));
    }

    #[test]
    fn refuses_a_foreign_non_empty_directory_and_leaves_it_alone() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("thesis.tex"), "precious").unwrap();
        let err = ModelDir::prepare(tmp.path()).unwrap_err();
        assert!(matches!(err, ModelDirError::Foreign { .. }), "{err}");
        assert!(err.to_string().contains("not empty"));
        let names: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(
            names.len(),
            1,
            "nothing may be written into a foreign folder"
        );
    }

    #[test]
    fn refuses_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        fs::write(&file, "x").unwrap();
        assert!(matches!(
            ModelDir::prepare(&file),
            Err(ModelDirError::NotADirectory(_))
        ));
    }
}
