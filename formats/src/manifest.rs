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

impl Manifest {
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
        Ok(m)
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
