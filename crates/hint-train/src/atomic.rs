//! Writing a file so that a crash at any instant leaves either the old file or the new
//! one, never a half-written one: every file a run writes goes through here.

use std::path::{Path, PathBuf};

use crate::error::{io_error, Result};

/// The temporary name `path` is written under before the rename: beside it (a rename
/// across file systems would not be atomic), recognisable by its `.tmp` suffix.
pub fn temporary_path(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    PathBuf::from(tmp)
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically_with(path, |tmp| std::fs::write(tmp, bytes).map_err(io_error(tmp)))
}

/// Lets `write` fill a temporary file, then renames it to `path`; when `write` fails, the
/// temporary file is removed and `path` is untouched.
pub fn write_atomically_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temporary_path(path);
    if let Err(err) = write(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(err);
    }
    std::fs::rename(&tmp, path).map_err(io_error(path))
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
            Err(crate::TrainError::invalid("test", "disk full"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("disk full"));
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert!(!temporary_path(&path).exists());
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
    }
}
