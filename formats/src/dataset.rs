//! A dataset directory: the manifest plus its shards, read by global record index.

use std::path::{Path, PathBuf};

use crate::error::FormatError;
use crate::manifest::{Manifest, MANIFEST_FILE};
use crate::reader::{Record, Shard};

/// An opened dataset directory.
#[derive(Debug)]
pub struct Dataset {
    dir: PathBuf,
    manifest: Manifest,
}

impl Dataset {
    /// Reads `DIR/manifest.json`. Shards are opened per split by [`Dataset::split`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Dataset, FormatError> {
        let dir = dir.as_ref().to_path_buf();
        let manifest = Manifest::read(&dir.join(MANIFEST_FILE))?;
        Ok(Dataset { dir, manifest })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn split_names(&self) -> Vec<String> {
        self.manifest.splits.keys().cloned().collect()
    }

    /// Opens every shard of a split and checks each against the manifest's
    /// record count and size (a cheap check; [`SplitReader::verify`] is the full one).
    pub fn split(&self, name: &str) -> Result<SplitReader, FormatError> {
        let info = self
            .manifest
            .splits
            .get(name)
            .ok_or_else(|| FormatError::NoSplit {
                path: self.dir.clone(),
                split: name.to_string(),
                available: self.split_names().join(", "),
            })?;
        let mut shards = Vec::with_capacity(info.shards.len());
        let mut starts = Vec::with_capacity(info.shards.len() + 1);
        let mut total = 0u64;
        for s in &info.shards {
            let path = self.dir.join(&s.file);
            let shard = Shard::open(&path)?;
            if shard.file_len() != s.bytes || shard.len() as u64 != s.records {
                return Err(FormatError::Corrupt {
                    path,
                    detail: format!(
                        "{} records / {} bytes, the manifest says {} / {}",
                        shard.len(),
                        shard.file_len(),
                        s.records,
                        s.bytes
                    ),
                });
            }
            let checksum = s.checksum_value().ok_or_else(|| FormatError::Manifest {
                path: self.dir.join(MANIFEST_FILE),
                detail: format!(
                    "shard {}: checksum {:?} is not 8 lowercase hex digits",
                    s.file, s.checksum
                ),
            })?;
            starts.push(total);
            total += shard.len() as u64;
            shards.push((shard, checksum));
        }
        starts.push(total);
        Ok(SplitReader {
            name: name.to_string(),
            shards,
            starts,
        })
    }
}

/// The records of one split, addressed by a global index in shard order.
#[derive(Debug)]
pub struct SplitReader {
    name: String,
    /// Each shard with the manifest's checksum of its whole file.
    shards: Vec<(Shard, u32)>,
    /// `starts[k]` = global index of shard k's first record; last = total.
    starts: Vec<u64>,
}

impl SplitReader {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn len(&self) -> u64 {
        self.starts.last().copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (shard number, record within shard) of a global index.
    pub fn locate(&self, i: u64) -> Result<(usize, usize), FormatError> {
        if i >= self.len() {
            return Err(FormatError::OutOfRange {
                what: format!("split {}", self.name),
                index: i,
                len: self.len(),
            });
        }
        // starts is sorted; the shard is the last one starting at or before i.
        let k = self.starts.partition_point(|&s| s <= i) - 1;
        Ok((k, (i - self.starts[k]) as usize))
    }

    /// Record `i` of the split, checksum-verified.
    pub fn get(&self, i: u64) -> Result<Record<'_>, FormatError> {
        let (k, j) = self.locate(i)?;
        self.shards[k].0.get(j)
    }

    /// Record `i` without checking the data checksum.
    pub fn get_unverified(&self, i: u64) -> Result<Record<'_>, FormatError> {
        let (k, j) = self.locate(i)?;
        self.shards[k].0.get_unverified(j)
    }

    pub fn shards(&self) -> impl Iterator<Item = &Shard> {
        self.shards.iter().map(|(s, _)| s)
    }

    /// Every record checksum, then every file checksum against the manifest.
    pub fn verify(&self) -> Result<(), FormatError> {
        for &(ref shard, expected) in &self.shards {
            shard.verify()?;
            let computed = shard.file_checksum();
            if computed != expected {
                return Err(FormatError::FileChecksum {
                    path: shard.path().to_path_buf(),
                    expected,
                    computed,
                });
            }
        }
        Ok(())
    }
}
