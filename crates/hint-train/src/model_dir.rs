//! The model directory of a run: `config.gin`, `metrics.jsonl`, checkpoints, results.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

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

/// A model directory that is known to be ours: either created now or marked by an
/// earlier run (which a new run resumes).
#[derive(Debug, Clone)]
pub struct ModelDir {
    root: PathBuf,
    resumed: bool,
}

impl ModelDir {
    /// The file that marks a folder as a hint model directory.
    pub const MARKER: &'static str = "HINT_MODEL_DIR";

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
        if root.join(Self::MARKER).is_file() {
            return Ok(Self {
                root,
                resumed: true,
            });
        }
        if root.is_dir() && fs::read_dir(&root).map_err(io_err)?.next().is_some() {
            return Err(ModelDirError::Foreign {
                path: root,
                marker: Self::MARKER,
            });
        }
        fs::create_dir_all(&root).map_err(io_err)?;
        hint_fs::write_atomically(
            &root.join(Self::MARKER),
            b"This folder is a hint model directory.\n",
        )
        .map_err(|e| io_err(e.source))?;
        Ok(Self {
            root,
            resumed: false,
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
        let again = ModelDir::prepare(dir.path()).unwrap();
        assert!(again.resumed());
        assert_eq!(again.config_path(), dir.path().join("config.gin"));
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
