//! Building a shard in memory and writing it atomically.

use std::path::{Path, PathBuf};

use crate::atomic::write_atomic_with;
use crate::error::FormatError;
use crate::layout::{
    align_up, Encoding, Entry, DATA_ALIGN, ENTRY_LEN, FORMAT_VERSION, HEADER_LEN, MAGIC,
    RECORD_ALIGN, TRAILER_MAGIC,
};
use crate::manifest::ShardInfo;

/// What the index stores about a record besides its bytes.
#[derive(Debug, Clone, Copy)]
pub struct RecordMeta<'a> {
    /// Class index, or `u32::MAX` when unlabelled.
    pub label: u32,
    pub width: u32,
    pub height: u32,
    pub encoding: Encoding,
    /// Where the record came from (a path relative to the source root).
    pub name: &'a str,
}

/// Collects records for one shard, then writes the file in one pass.
///
/// The file is written as `.<name>.tmp` beside its final path, synced, and renamed
/// into place by [`ShardWriter::finish`]: a crash never leaves a file under the
/// final name that is not complete.
#[derive(Debug)]
pub struct ShardWriter {
    path: PathBuf,
    entries: Vec<Entry>,
    data: Vec<u8>,
    names: Vec<u8>,
}

impl ShardWriter {
    pub fn new(path: impl Into<PathBuf>) -> ShardWriter {
        ShardWriter {
            path: path.into(),
            entries: Vec::new(),
            data: Vec::new(),
            names: Vec::new(),
        }
    }

    /// Appends a record. Names longer than 65535 bytes are cut at a char boundary.
    pub fn push(&mut self, meta: &RecordMeta<'_>, bytes: &[u8]) {
        let start = align_up(self.data.len() as u64, RECORD_ALIGN) as usize;
        self.data.resize(start, 0);
        self.data.extend_from_slice(bytes);
        let mut name = meta.name;
        while name.len() > u16::MAX as usize {
            let mut cut = u16::MAX as usize;
            while !name.is_char_boundary(cut) {
                cut -= 1;
            }
            name = &name[..cut];
        }
        let name_offset = self.names.len() as u32;
        self.names.extend_from_slice(name.as_bytes());
        self.entries.push(Entry {
            offset: start as u64, // relative to the data section until finish()
            len: bytes.len() as u32,
            label: meta.label,
            width: meta.width,
            height: meta.height,
            crc: crate::checksum(bytes),
            name_offset,
            name_len: name.len() as u16,
            encoding: meta.encoding.code(),
        });
    }

    /// Number of records pushed so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Approximate size of the finished file, for deciding when a shard is full.
    pub fn bytes(&self) -> u64 {
        (HEADER_LEN + self.entries.len() * ENTRY_LEN) as u64
            + self.data.len() as u64
            + self.names.len() as u64
    }

    /// The final path the shard will have.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the complete file under a temporary name, syncs it, and renames it
    /// into place.
    pub fn finish(self) -> Result<ShardInfo, FormatError> {
        let n = self.entries.len() as u64;
        let index_offset = HEADER_LEN as u64;
        let data_offset = align_up(index_offset + n * ENTRY_LEN as u64, DATA_ALIGN);
        let names_offset = data_offset + self.data.len() as u64;
        let names_len = self.names.len() as u64;
        let file_len = names_offset + names_len + crate::layout::TRAILER_LEN as u64;

        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        header.extend_from_slice(&(HEADER_LEN as u16).to_le_bytes());
        header.extend_from_slice(&(ENTRY_LEN as u32).to_le_bytes());
        header.extend_from_slice(&n.to_le_bytes());
        header.extend_from_slice(&index_offset.to_le_bytes());
        header.extend_from_slice(&data_offset.to_le_bytes());
        header.extend_from_slice(&names_offset.to_le_bytes());
        header.extend_from_slice(&names_len.to_le_bytes());
        let hcrc = crate::checksum(&header);
        header.extend_from_slice(&hcrc.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        debug_assert_eq!(header.len(), HEADER_LEN);

        let mut index = Vec::with_capacity(self.entries.len() * ENTRY_LEN);
        for e in &self.entries {
            let mut e = *e;
            e.offset += data_offset;
            e.encode(&mut index);
        }
        let pad = vec![0u8; (data_offset - index_offset) as usize - index.len()];

        let mut index_hasher = crc32fast::Hasher::new();
        index_hasher.update(&index);
        index_hasher.update(&self.names);
        let mut trailer = Vec::with_capacity(crate::layout::TRAILER_LEN);
        trailer.extend_from_slice(&TRAILER_MAGIC);
        trailer.extend_from_slice(&n.to_le_bytes());
        trailer.extend_from_slice(&file_len.to_le_bytes());
        trailer.extend_from_slice(&index_hasher.finalize().to_le_bytes());
        let tcrc = crate::checksum(&trailer);
        trailer.extend_from_slice(&tcrc.to_le_bytes());

        let mut file_hasher = crc32fast::Hasher::new();
        let parts: [&[u8]; 6] = [&header, &index, &pad, &self.data, &self.names, &trailer];
        for p in parts {
            file_hasher.update(p);
        }

        write_atomic_with(&self.path, |w| {
            parts.iter().try_for_each(|p| w.write_all(p))
        })?;
        Ok(ShardInfo {
            file: self
                .path
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            records: n,
            bytes: file_len,
            checksum: format!("{:08x}", file_hasher.finalize()),
        })
    }
}
