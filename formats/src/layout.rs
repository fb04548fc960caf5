//! Byte layout constants and little-endian field access, shared by reader and writer.

/// First 8 bytes of every shard.
pub const MAGIC: [u8; 8] = *b"FNCSHARD";
/// First 8 bytes of the trailer, the last 32 bytes of every complete shard.
pub const TRAILER_MAGIC: [u8; 8] = *b"FNCTRAIL";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Record data offsets are multiples of this (cache line; SIMD loads).
pub const RECORD_ALIGN: u64 = 64;

pub(crate) const HEADER_LEN: usize = 64;
pub(crate) const ENTRY_LEN: usize = 40;
pub(crate) const TRAILER_LEN: usize = 32;
/// The data section starts on a page boundary so records can be mapped alone.
pub(crate) const DATA_ALIGN: u64 = 4096;

/// How a record's bytes encode its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Encoding {
    /// Packed RGB8, `width * height * 3` bytes, rows top to bottom.
    Raw,
    /// Baseline or progressive JPEG, 1 (grey) or 3 (YCbCr) components.
    Jpeg,
    /// PNG (written by no ingest mode today; readable for completeness).
    Png,
    /// WebP, lossy or lossless.
    WebP,
}

impl Encoding {
    pub fn code(self) -> u8 {
        match self {
            Encoding::Raw => 0,
            Encoding::Jpeg => 1,
            Encoding::Png => 2,
            Encoding::WebP => 3,
        }
    }

    pub fn from_code(code: u8) -> Option<Encoding> {
        Some(match code {
            0 => Encoding::Raw,
            1 => Encoding::Jpeg,
            2 => Encoding::Png,
            3 => Encoding::WebP,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Encoding::Raw => "raw",
            Encoding::Jpeg => "jpeg",
            Encoding::Png => "png",
            Encoding::WebP => "webp",
        }
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One fixed-size index entry, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub offset: u64,
    pub len: u32,
    pub label: u32,
    pub width: u32,
    pub height: u32,
    pub crc: u32,
    pub name_offset: u32,
    pub name_len: u16,
    pub encoding: u8,
}

impl Entry {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(&self.label.to_le_bytes());
        out.extend_from_slice(&self.width.to_le_bytes());
        out.extend_from_slice(&self.height.to_le_bytes());
        out.extend_from_slice(&self.crc.to_le_bytes());
        out.extend_from_slice(&self.name_offset.to_le_bytes());
        out.extend_from_slice(&self.name_len.to_le_bytes());
        out.push(self.encoding);
        out.push(0); // flags, reserved
        out.extend_from_slice(&0u32.to_le_bytes()); // reserved
    }

    pub fn decode(b: &[u8]) -> Entry {
        Entry {
            offset: u64_at(b, 0),
            len: u32_at(b, 8),
            label: u32_at(b, 12),
            width: u32_at(b, 16),
            height: u32_at(b, 20),
            crc: u32_at(b, 24),
            name_offset: u32_at(b, 28),
            name_len: u16_at(b, 32),
            encoding: b[34],
        }
    }
}

pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

pub(crate) fn align_up(x: u64, to: u64) -> u64 {
    x.div_ceil(to) * to
}
