use std::path::PathBuf;

/// Errors that stop an ingest, inspect, verify or synth run.
///
/// Per-file problems during an ingest (a corrupt JPEG, say) are not errors: they
/// are [`crate::Skipped`] entries in the report, until `--max-errors` is exceeded.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    // The cause is in the message, not chained as a source, so that it is
    // printed once both by Display and by anyhow's `{:#}`.
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("source {path} does not exist (or is neither a directory nor a file)")]
    MissingSource { path: PathBuf },
    #[error("{path}: unknown layout: {detail}")]
    UnknownLayout { path: PathBuf, detail: String },
    #[error("{path}: {detail}")]
    BadSource { path: PathBuf, detail: String },
    #[error("--out {path} {detail}; choose another --out or remove it")]
    OutHoldsOther { path: PathBuf, detail: String },
    #[error("{skipped} files could not be used, more than --max-errors {max}; the last: {last}. Completed shards are kept: fix the input or raise --max-errors and run again to resume")]
    TooManyErrors {
        skipped: usize,
        max: usize,
        last: String,
    },
    #[error("invalid option {flag}: {detail}")]
    BadOption { flag: &'static str, detail: String },
    #[error(transparent)]
    Format(#[from] fnc_formats::FormatError),
    #[error("stopped after writing {shards} shards into {out}, as --stop-after-shards asked; run the same command again to continue")]
    Stopped { shards: u64, out: PathBuf },
    #[error("{path}: cannot encode image: {detail}")]
    Encode { path: PathBuf, detail: String },
}

impl IngestError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        IngestError::Io {
            path: path.into(),
            err: source,
        }
    }
}
