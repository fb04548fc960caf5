//! The options of an ingest run, and their one judge.

use std::path::PathBuf;

use crate::convert::StoragePolicy;
use crate::error::IngestError;

/// Everything an ingest run needs. Build with [`IngestOptions::new`] and adjust.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// A directory tree, a tar or tar.gz of one, ImageNet's
    /// `ILSVRC2012_img_train.tar`, or a directory holding ImageNet's official files.
    pub src: PathBuf,
    /// ImageNet's `ILSVRC2012_img_val.tar`, with `devkit` (default: none, or
    /// the official file beside an official `src` directory's train archive).
    pub val_archive: Option<PathBuf>,
    /// ImageNet's `ILSVRC2012_devkit_t12.tar.gz`: val labels, class names.
    pub devkit: Option<PathBuf>,
    /// Output directory (default `out`).
    pub out: PathBuf,
    pub policy: StoragePolicy,
    /// Target shard size in bytes (default 256 MiB).
    pub shard_size: u64,
    /// Worker threads, 0 = one per core (default 0). Output does not depend on it.
    pub threads: usize,
    /// Seed of the record shuffle and of `--val-fraction` (default 0).
    pub seed: u64,
    /// Fraction of each class moved to val when the source has no val split (default 0).
    pub val_fraction: f64,
    /// Unusable files tolerated before the run stops (default 1000).
    pub max_errors: usize,
    /// Stop after this many shards are written by this run, leaving the output
    /// exactly as an interruption at that point would (the next run resumes);
    /// for ingesting in time slots (default `None`: run to the end).
    pub stop_after_shards: Option<u64>,
}

impl IngestOptions {
    pub fn new(src: impl Into<PathBuf>, out: impl Into<PathBuf>) -> IngestOptions {
        IngestOptions {
            src: src.into(),
            val_archive: None,
            devkit: None,
            out: out.into(),
            policy: StoragePolicy::default(),
            shard_size: 256 << 20,
            threads: 0,
            seed: 0,
            val_fraction: 0.0,
            max_errors: 1000,
            stop_after_shards: None,
        }
    }
}

impl IngestOptions {
    /// The most worker threads.
    pub const MAX_THREADS: usize = 1024;
    /// The smallest and largest shard sizes (a shard is built in memory).
    pub const SHARD_SIZE_RANGE: std::ops::RangeInclusive<u64> = 4096..=(16 << 30);
    /// `max_side` when not 0 (never resize): the largest side a JPEG can have.
    pub const MAX_SIDE_RANGE: std::ops::RangeInclusive<u32> = 16..=65_535;

    /// The one judge of the options, each error naming the flag that sets
    /// it; [`ingest`] calls it before touching the disk.
    pub fn check(&self) -> Result<(), IngestError> {
        let bad = |flag: &'static str, detail: String| Err(IngestError::BadOption { flag, detail });
        let max_side = self.policy.max_side;
        if max_side != 0 && !Self::MAX_SIDE_RANGE.contains(&max_side) {
            return bad(
                "--max-side",
                format!("{max_side} is not 0 (never resize) nor in 16..=65535"),
            );
        }
        if !(1..=100).contains(&self.policy.quality) {
            return bad(
                "--quality",
                format!("{} is not in 1..=100", self.policy.quality),
            );
        }
        if !Self::SHARD_SIZE_RANGE.contains(&self.shard_size) {
            return bad(
                "--shard-size",
                format!(
                    "{} bytes is not in 4096..={} (4K..16G)",
                    self.shard_size,
                    Self::SHARD_SIZE_RANGE.end()
                ),
            );
        }
        if self.threads > Self::MAX_THREADS {
            return bad(
                "--threads",
                format!("{} is not in 0..={}", self.threads, Self::MAX_THREADS),
            );
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            return bad(
                "--val-fraction",
                format!("{} is not in [0, 1)", self.val_fraction),
            );
        }
        if self.stop_after_shards == Some(0) {
            return bad(
                "--stop-after-shards",
                "0 would stop before doing anything; use at least 1".into(),
            );
        }
        Ok(())
    }
}
