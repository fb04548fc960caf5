use std::path::PathBuf;

/// Everything that can go wrong reading or writing shards and manifests.
///
/// Every variant names the file, and where it applies the record, at fault.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    // The cause is in the message, not chained as a source, so that it is
    // printed once both by Display and by anyhow's `{:#}`.
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}: not an fnc shard (bad magic bytes)")]
    BadMagic { path: PathBuf },
    #[error("{path}: shard format version {found} is not supported (this build reads version {supported}); re-ingest with this version of fnc-ingest")]
    UnsupportedVersion {
        path: PathBuf,
        found: u16,
        supported: u16,
    },
    #[error("{path}: truncated shard: {detail}")]
    Truncated { path: PathBuf, detail: String },
    #[error("{path}: corrupt shard: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "{path}: record {record}: checksum mismatch (stored {stored:08x}, computed {computed:08x})"
    )]
    RecordChecksum {
        path: PathBuf,
        record: u64,
        stored: u32,
        computed: u32,
    },
    #[error("{path}: file checksum {computed:08x} differs from the manifest's {expected:08x}")]
    FileChecksum {
        path: PathBuf,
        expected: u32,
        computed: u32,
    },
    #[error("record {index} is out of range ({what} has {len} records)")]
    OutOfRange { what: String, index: u64, len: u64 },
    #[error("{path}: invalid manifest: {detail}")]
    Manifest { path: PathBuf, detail: String },
    #[error("{path}: the dataset has no split named {split:?} (it has: {available})")]
    NoSplit {
        path: PathBuf,
        split: String,
        available: String,
    },
}

impl FormatError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FormatError::Io {
            path: path.into(),
            err: source,
        }
    }
}
