use std::path::PathBuf;

/// Errors of the augmentation engine.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AugmentError {
    #[error("{shard}: record {record}: {detail}")]
    Record {
        shard: PathBuf,
        record: u64,
        detail: String,
    },
    #[error("invalid option {flag}: {detail}")]
    Config { flag: &'static str, detail: String },
    #[error("{0}")]
    Format(String),
    #[error("the engine's worker stopped unexpectedly: {0}")]
    Worker(String),
}

impl From<fnc_formats::FormatError> for AugmentError {
    fn from(e: fnc_formats::FormatError) -> Self {
        // FormatError holds io::Error (not Clone); batches cross threads as values.
        AugmentError::Format(e.to_string())
    }
}
