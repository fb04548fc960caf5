//! `manifest.json`: what a dataset directory holds.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::error::FormatError;

/// File name of the manifest inside a dataset directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// A class, by index (its position in the sorted class list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassInfo {
    pub index: u32,
    /// Folder name: a WordNet id for ImageNet, the class name for ImageFolder.
    pub wnid: String,
    /// Human-readable name when known (e.g. from `LOC_synset_mapping.txt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// One shard file of a split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// File name, relative to the dataset directory.
    pub file: String,
    pub records: u64,
    pub bytes: u64,
    /// CRC-32 of the whole file, 8 lowercase hex digits.
    pub checksum: String,
}

impl ShardInfo {
    /// The whole-file checksum as a number, `None` unless it is 8 lowercase
    /// hex digits.
    pub fn checksum_value(&self) -> Option<u32> {
        let c = &self.checksum;
        let digit = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if c.len() != 8 || !c.bytes().all(digit) {
            return None;
        }
        u32::from_str_radix(c, 16).ok()
    }
}

/// A split (train, val) and its shards, in reading order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitInfo {
    pub records: u64,
    pub shards: Vec<ShardInfo>,
}

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always "fnc-shards".
    pub format: String,
    pub format_version: u16,
    /// Identifies the ingest plan (source listing and parameters).
    pub dataset_id: String,
    /// Source layout: "ilsvrc" or "imagefolder".
    pub layout: String,
    /// The source directory as given to the ingest.
    pub source: String,
    pub classes: Vec<ClassInfo>,
    pub splits: BTreeMap<String, SplitInfo>,
    /// Ingest parameters (free-form, for people and for resuming).
    pub params: serde_json::Value,
}

/// The splits evaluation reads, in order of preference: a dataset's `val`,
/// else its labelled `test` (an ImageFolder's `test/CLASS/`).
pub const EVALUATION_SPLITS: [&str; 2] = ["val", "test"];

impl Manifest {
    /// The split to evaluate on ([`EVALUATION_SPLITS`]), if the dataset has one.
    pub fn evaluation_split(&self) -> Option<&'static str> {
        EVALUATION_SPLITS
            .into_iter()
            .find(|s| self.splits.contains_key(*s))
    }

    pub fn read(path: &Path) -> Result<Manifest, FormatError> {
        let text = std::fs::read_to_string(path).map_err(|e| FormatError::io(path, e))?;
        let m: Manifest = serde_json::from_str(&text).map_err(|e| FormatError::Manifest {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        if m.format != "fnc-shards" {
            return Err(FormatError::Manifest {
                path: path.to_path_buf(),
                detail: format!("format is {:?}, expected \"fnc-shards\"", m.format),
            });
        }
        if m.format_version != crate::FORMAT_VERSION {
            return Err(FormatError::Manifest {
                path: path.to_path_buf(),
                detail: format!(
                    "format version {} is not supported (this build reads version {}); re-ingest the data",
                    m.format_version,
                    crate::FORMAT_VERSION
                ),
            });
        }
        m.check_splits().map_err(|detail| FormatError::Manifest {
            path: path.to_path_buf(),
            detail,
        })?;
        Ok(m)
    }

    /// What readers rely on: every shard names a file and has an 8-digit hex
    /// checksum, and each split's record count is the sum of its shards'.
    fn check_splits(&self) -> Result<(), String> {
        for (name, split) in &self.splits {
            let mut total = 0u64;
            for (k, s) in split.shards.iter().enumerate() {
                if s.file.is_empty() {
                    return Err(format!("split {name}: shard {k} has no file name"));
                }
                if s.checksum_value().is_none() {
                    return Err(format!(
                        "split {name}: shard {}: checksum {:?} is not 8 lowercase hex digits",
                        s.file, s.checksum
                    ));
                }
                total = total.checked_add(s.records).ok_or_else(|| {
                    format!("split {name}: shard {}: record counts overflow", s.file)
                })?;
            }
            if total != split.records {
                return Err(format!(
                    "split {name}: {} records, but its shards hold {total}",
                    split.records
                ));
            }
        }
        Ok(())
    }

    /// Writes the manifest atomically ([`crate::write_atomic`]).
    pub fn write(&self, path: &Path) -> Result<(), FormatError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| FormatError::Manifest {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        write_atomic(path, text.as_bytes())
    }
}
