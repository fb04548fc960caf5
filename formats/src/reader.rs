//! Opening a shard through a memory map and reading its records zero-copy.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::FormatError;
use crate::layout::{
    u16_at, u32_at, u64_at, Encoding, Entry, ENTRY_LEN, FORMAT_VERSION, HEADER_LEN, MAGIC,
    TRAILER_LEN, TRAILER_MAGIC,
};

/// One record, borrowed from the shard's memory map.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub data: &'a [u8],
    pub label: u32,
    pub width: u32,
    pub height: u32,
    pub encoding: Encoding,
    /// Where the record came from (path relative to the ingest source).
    pub name: &'a str,
}

/// An open, structurally validated shard.
#[derive(Debug)]
pub struct Shard {
    path: PathBuf,
    map: Mmap,
    entries: Vec<Entry>,
    names_offset: usize,
}

impl Shard {
    /// Maps the file and validates header, trailer and index (not record data:
    /// see [`Shard::get`] and [`Shard::verify`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Shard, FormatError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| FormatError::io(&path, e))?;
        let actual_len = file
            .metadata()
            .map_err(|e| FormatError::io(&path, e))?
            .len();
        if actual_len == 0 {
            return Err(FormatError::Truncated {
                path,
                detail: "the file is empty".into(),
            });
        }
        // SAFETY: a memory map is sound only while nobody changes the file
        // under it. The reader's contract: shards are not modified or truncated
        // while open. fnc itself never writes a shard in place (writers create a
        // new file and rename it over the old name, which leaves existing maps
        // intact). A shard that another program changes while mapped is outside
        // that contract: bytes rewritten in place may be read as they change, and
        // a file truncated under the map raises SIGBUS on the next read past its
        // new end, before any checksum could report it. Checksums catch damage
        // done before the file was opened, not during.
        #[allow(unsafe_code)]
        let map = unsafe { Mmap::map(&file) }.map_err(|e| FormatError::io(&path, e))?;
        let b: &[u8] = &map;
        let corrupt = |detail: String| FormatError::Corrupt {
            path: path.clone(),
            detail,
        };
        if b.len() < MAGIC.len() || b[..MAGIC.len()] != MAGIC {
            if b.len() < MAGIC.len() && MAGIC.starts_with(b) {
                return Err(FormatError::Truncated {
                    path,
                    detail: format!("only {} bytes", b.len()),
                });
            }
            return Err(FormatError::BadMagic { path });
        }
        if b.len() < 10 {
            return Err(FormatError::Truncated {
                path,
                detail: format!("only {} bytes", b.len()),
            });
        }
        let version = u16_at(b, 8);
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion {
                path,
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if b.len() < HEADER_LEN {
            return Err(FormatError::Truncated {
                path,
                detail: format!(
                    "{} bytes, shorter than the {HEADER_LEN}-byte header",
                    b.len()
                ),
            });
        }
        let header_crc = u32_at(b, 56);
        if crate::checksum(&b[..56]) != header_crc {
            return Err(corrupt("header checksum mismatch".into()));
        }
        let header_len = u16_at(b, 10) as usize;
        let entry_len = u32_at(b, 12) as usize;
        if header_len != HEADER_LEN || entry_len != ENTRY_LEN {
            return Err(corrupt(format!(
                "header length {header_len} / entry length {entry_len} do not match version {FORMAT_VERSION}"
            )));
        }
        let n = u64_at(b, 16);
        let index_offset = u64_at(b, 24);
        let data_offset = u64_at(b, 32);
        let names_offset = u64_at(b, 40);
        let names_len = u64_at(b, 48);
        let expected_len = names_offset
            .checked_add(names_len)
            .and_then(|x| x.checked_add(TRAILER_LEN as u64))
            .ok_or_else(|| corrupt("section offsets overflow".into()))?;
        if actual_len < expected_len {
            return Err(FormatError::Truncated {
                path,
                detail: format!("{actual_len} bytes, the header says {expected_len}"),
            });
        }
        if actual_len > expected_len {
            return Err(corrupt(format!(
                "{actual_len} bytes, the header says {expected_len} (trailing data)"
            )));
        }
        let index_end = n
            .checked_mul(ENTRY_LEN as u64)
            .and_then(|x| x.checked_add(index_offset))
            .ok_or_else(|| corrupt("record count overflows".into()))?;
        if index_offset != HEADER_LEN as u64
            || index_end > data_offset
            || data_offset > names_offset
        {
            return Err(corrupt("inconsistent section offsets".into()));
        }
        let t = &b[b.len() - TRAILER_LEN..];
        if t[..8] != TRAILER_MAGIC {
            return Err(FormatError::Truncated {
                path,
                detail: "no trailer (the file was not completely written)".into(),
            });
        }
        if crate::checksum(&t[..28]) != u32_at(t, 28) {
            return Err(corrupt("trailer checksum mismatch".into()));
        }
        if u64_at(t, 8) != n || u64_at(t, 16) != actual_len {
            return Err(corrupt("trailer disagrees with header".into()));
        }
        let index = &b[index_offset as usize..index_end as usize];
        let names = &b[names_offset as usize..(names_offset + names_len) as usize];
        let mut h = crc32fast::Hasher::new();
        h.update(index);
        h.update(names);
        if h.finalize() != u32_at(t, 24) {
            return Err(corrupt("index checksum mismatch".into()));
        }
        let mut entries = Vec::with_capacity(n as usize);
        for (i, raw) in index.chunks_exact(ENTRY_LEN).enumerate() {
            let e = Entry::decode(raw);
            // An offset near u64::MAX must not wrap around into the section.
            let end = e.offset.checked_add(u64::from(e.len));
            if e.offset < data_offset || end.is_none_or(|end| end > names_offset) {
                return Err(corrupt(format!(
                    "record {i}: data outside the data section"
                )));
            }
            if u64::from(e.name_offset) + u64::from(e.name_len) > names_len {
                return Err(corrupt(format!("record {i}: name outside the name table")));
            }
            if Encoding::from_code(e.encoding).is_none() {
                return Err(corrupt(format!(
                    "record {i}: unknown encoding {}",
                    e.encoding
                )));
            }
            entries.push(e);
        }
        Ok(Shard {
            path,
            map,
            entries,
            names_offset: names_offset as usize,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Record `i`, its data checked against its stored checksum.
    pub fn get(&self, i: usize) -> Result<Record<'_>, FormatError> {
        let rec = self.get_unverified(i)?;
        let stored = self.entries[i].crc;
        let computed = crate::checksum(rec.data);
        if computed != stored {
            return Err(FormatError::RecordChecksum {
                path: self.path.clone(),
                record: i as u64,
                stored,
                computed,
            });
        }
        Ok(rec)
    }

    /// Record `i` without checking its data checksum (the index was checked at
    /// open). For readers that verify shards once up front.
    pub fn get_unverified(&self, i: usize) -> Result<Record<'_>, FormatError> {
        let e = self.entries.get(i).ok_or_else(|| FormatError::OutOfRange {
            what: self.path.display().to_string(),
            index: i as u64,
            len: self.entries.len() as u64,
        })?;
        let b: &[u8] = &self.map;
        let data = &b[e.offset as usize..e.offset as usize + e.len as usize];
        let ns = self.names_offset + e.name_offset as usize;
        let name = std::str::from_utf8(&b[ns..ns + e.name_len as usize]).unwrap_or("");
        Ok(Record {
            data,
            label: e.label,
            width: e.width,
            height: e.height,
            // Checked at open.
            encoding: Encoding::from_code(e.encoding).unwrap_or(Encoding::Raw),
            name,
        })
    }

    /// Checks every record's checksum; the error names the first bad record.
    pub fn verify(&self) -> Result<(), FormatError> {
        (0..self.len()).try_for_each(|i| self.get(i).map(|_| ()))
    }

    /// CRC-32 of the whole file, as recorded in the manifest.
    pub fn file_checksum(&self) -> u32 {
        crate::checksum(&self.map)
    }

    /// Size of the file in bytes.
    pub fn file_len(&self) -> u64 {
        self.map.len() as u64
    }
}
