//! Replacing a file so that a crash leaves either the old or the new content
//! under its name, never a mix: write a temporary file beside it, sync it,
//! rename it over the final name, then sync the directory so that the rename
//! itself survives a power loss.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::FormatError;

/// The temporary name a file is written under before it is renamed to `path`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Writes `bytes` to `path` atomically (see the module docs).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FormatError> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Writes what `fill` writes to `path` atomically (see the module docs); for
/// content produced in parts. An error names the temporary file or `path`.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), FormatError> {
    let tmp = tmp_path(path);
    let write = || -> std::io::Result<()> {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        fill(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(FormatError::io(&tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| FormatError::io(path, e))?;
    sync_parent(path);
    Ok(())
}

/// Makes a rename in `path`'s directory durable. Best effort: not every
/// filesystem lets a directory be opened and synced, and the data itself is
/// already synced.
pub fn sync_parent(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}
