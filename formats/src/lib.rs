//! The fnc shard format: image records packed into versioned, checksummed files
//! that are read zero-copy through a memory map.
//!
//! A dataset directory holds `manifest.json` (splits, classes, shard list, ingest
//! parameters) and one or more shard files per split. `docs/format.md` in the
//! repository is the normative description of the bytes.
//!
//! ```no_run
//! use fnc_formats::{Dataset, Encoding, ShardWriter, RecordMeta};
//!
//! # fn main() -> Result<(), fnc_formats::FormatError> {
//! // Write a shard (under a temporary name, renamed into place when complete).
//! let mut w = ShardWriter::new("out/train-00000.fncs");
//! w.push(&RecordMeta { label: 3, width: 2, height: 1, encoding: Encoding::Raw, name: "a.png" },
//!        &[255, 0, 0, 0, 255, 0]);
//! let info = w.finish()?;
//! assert_eq!(info.records, 1);
//!
//! // Read a whole dataset by global record index.
//! let ds = Dataset::open("out")?;
//! let train = ds.split("train")?;
//! let rec = train.get(0)?;
//! println!("{} x {} label {}", rec.width, rec.height, rec.label);
//! # Ok(()) }
//! ```

mod atomic;
mod dataset;
mod error;
mod fingerprint;
mod layout;
mod manifest;
mod reader;
mod writer;

pub use atomic::{sync_parent, tmp_path, write_atomic, write_atomic_with};
pub use dataset::{Dataset, SplitReader};
pub use error::FormatError;
pub use fingerprint::Fingerprint;
pub use layout::{Encoding, FORMAT_VERSION, MAGIC, RECORD_ALIGN, TRAILER_MAGIC};
pub use manifest::{ClassInfo, Manifest, ShardInfo, SplitInfo, EVALUATION_SPLITS, MANIFEST_FILE};
pub use reader::{Record, Shard};
pub use writer::{RecordMeta, ShardWriter};

/// CRC-32 (IEEE) of a byte slice: the checksum used for records, index and files.
pub fn checksum(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}
