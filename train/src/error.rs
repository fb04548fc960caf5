//! The errors of the trainer, each naming what is at fault: a file, a flag, a
//! record, a checkpoint.

use std::path::{Path, PathBuf};

/// Errors that stop a training run, an export or a benchmark.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    // Causes are in the message, not chained as sources, so that each is
    // printed once both by Display and by anyhow's `{:#}`.
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    /// The dataset directory cannot be opened or lacks a split.
    #[error("--shards {path}: {err}")]
    Dataset {
        path: PathBuf,
        err: fnc_formats::FormatError,
    },
    /// A record failed to decode, or the engine could not start; the error
    /// names the shard and record.
    #[error(transparent)]
    Augment(#[from] fnc_augment::AugmentError),
    #[error("{count} bad records, more than --max-bad-records {max}; the last: {last}")]
    TooManyBadRecords {
        count: usize,
        max: u64,
        /// The record that went over the limit (its error's text: in a
        /// data-parallel run it may be another rank's).
        last: String,
    },
    #[error(transparent)]
    Loss(#[from] crate::loss::LossError),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    /// A flag (or the config key of the same name) has a value that cannot work.
    #[error("invalid option {flag}: {detail}")]
    Config { flag: &'static str, detail: String },
    /// A config file that cannot be read back as a [`crate::TrainConfig`].
    #[error("{path}: not an fnc-train config: {detail}")]
    ConfigFile { path: PathBuf, detail: String },
    #[error("the loss is not finite at step {step}; stopped without updating. {checkpoint}")]
    NonFinite { step: u64, checkpoint: String },
    /// A step could not allocate memory on its device (libtorch's CPU
    /// allocator, or CUDA out of memory); nothing of the step was kept.
    #[error(
        "out of memory at step {step} on {device}: {}. {next}",
        crate::oom::describe(.asked, .free, .limit)
    )]
    OutOfMemory {
        step: u64,
        /// `cpu` or `cuda:N`.
        device: String,
        /// The bytes of the allocation that failed, when libtorch said.
        asked: Option<u64>,
        /// The device's free bytes: CUDA's from its message, the CPU's
        /// `MemAvailable`.
        free: Option<u64>,
        /// The process's address-space limit (`ulimit -v`) on the CPU, if any.
        limit: Option<u64>,
        /// What `fnc-train plan` would use instead, and which checkpoint to
        /// resume from (sentences).
        next: String,
    },
    /// A checkpoint that is missing, incomplete, or does not fit the model.
    #[error("checkpoint {path}: {detail}")]
    Checkpoint { path: PathBuf, detail: String },
    #[error("{path}: cannot write JSON: {err}")]
    Json {
        path: PathBuf,
        err: serde_json::Error,
    },
    #[error("{path} line {line}: {err}")]
    JsonLine {
        path: PathBuf,
        line: usize,
        err: serde_json::Error,
    },
    /// Writing a run file (metrics, checkpoint pointer) failed; names the file.
    #[error(transparent)]
    Write(#[from] fnc_formats::FormatError),
    #[error("cannot start the {what} thread: {err}")]
    Thread {
        what: &'static str,
        err: std::io::Error,
    },
    #[error("the augmentation engine stopped before the run ended")]
    EngineStopped,
    /// Rank 0 could not start the run (it reports why itself); the other
    /// ranks stop with its word.
    #[error("rank 0 stopped the run: {detail}")]
    RankZero { detail: String },
    /// A collective of a data-parallel run failed: a rank died, hung past
    /// `--dist-timeout`, or could not be reached.
    #[error(
        "rank {rank} of {world}: {op} failed (a rank died, hung past --dist-timeout, \
         or could not be reached): {detail}"
    )]
    Dist {
        rank: usize,
        world: usize,
        op: &'static str,
        detail: String,
    },
}

/// Maps an I/O error to [`TrainError::Io`] naming `path`.
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |err| TrainError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// A [`TrainError::Checkpoint`] about `path`.
pub(crate) fn checkpoint(path: &Path, detail: impl Into<String>) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}
