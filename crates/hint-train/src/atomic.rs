//! Writing a file so that a crash at any instant leaves either the old file or the new
//! one, never a half-written one: every file a run writes goes through hint-fs's one
//! implementation, with hint-train's error type.

use std::path::Path;

use crate::error::Result;

pub use hint_fs::temporary_path;

/// Writes `bytes` to `path` through a temporary file, a sync and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(hint_fs::write_atomically(path, bytes)?)
}

/// Lets `write` fill a temporary file, then renames it to `path`; when `write` fails, the
/// temporary file is removed and `path` is untouched.
pub fn write_atomically_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    hint_fs::write_atomically_with(path, write)
}
