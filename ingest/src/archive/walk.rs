//! Walking the members of a tar: an uncompressed one in place (headers read,
//! data skipped by seeking, every member's byte offset known), a compressed one
//! as a stream. One level of nested tars (ImageNet's per-class tars) is walked
//! as part of its container. Truncated archives are errors naming the member.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::rc::Rc;

use flate2::read::MultiGzDecoder;

use crate::error::IngestError;

const BLOCK: u64 = 512;

/// What a member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A regular file: the only kind that is read.
    File,
    /// A folder (an empty one is a folder of the extracted tree too).
    Dir,
    /// A nested tar that the walk opens; its members follow it.
    Container,
    /// Links, devices and the like: reported so that they can be counted.
    Other,
}

/// A member of an archive as a walk reports it.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    /// Order among the file members of the walk (nested ones included).
    pub seq: u64,
    /// The nested tar holding it, when it is inside one.
    pub container: Option<String>,
    /// Its path inside its tar, `/`-separated, without a leading `./`.
    pub name: String,
    pub size: u64,
    /// Byte offset of its data in the archive file (uncompressed tars only).
    pub offset: Option<u64>,
    pub kind: Kind,
}

/// Whether the walk goes on after a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Go,
    /// Everything wanted was seen: the rest is not read (nor checked).
    Stop,
}

/// Whether `path` is gzip-compressed (by its first bytes, not its name).
pub(crate) fn is_compressed(path: &Path) -> bool {
    let mut head = [0u8; 2];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map(|_| head == [0x1f, 0x8b])
        .unwrap_or(false)
}

/// Whether `name` is a tar that a nested walk opens (hidden names, such as
/// macOS's `._n01440764.tar`, are not).
pub(crate) fn is_nested_tar(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    !base.starts_with('.') && base.to_ascii_lowercase().ends_with(".tar")
}

fn bad(path: &Path, where_: &str, detail: impl std::fmt::Display) -> IngestError {
    IngestError::BadSource {
        path: path.to_path_buf(),
        detail: format!("{where_}{detail}"),
    }
}

fn inside(container: Option<&str>) -> String {
    container
        .map(|c| format!("in member {c}: "))
        .unwrap_or_default()
}

fn normalise(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    s.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// What a walk needs of an entry: its normalised name, kind, the size of its
/// data as stored (a sparse member's stored size, not its expanded one) and
/// the position of its data in its tar.
struct Head {
    name: String,
    kind: Kind,
    stored: u64,
    pos: u64,
}

fn head<R: Read>(entry: &tar::Entry<'_, R>, nest: bool) -> Head {
    let ty = entry.header().entry_type();
    let name = normalise(&entry.path_bytes());
    let regular = ty.is_file() || ty.is_contiguous();
    let kind = if ty.is_dir() {
        Kind::Dir
    } else if regular && nest && is_nested_tar(&name) {
        Kind::Container
    } else if regular {
        Kind::File
    } else {
        Kind::Other
    };
    let stored = if ty.is_gnu_sparse() {
        entry.header().entry_size().unwrap_or(0)
    } else {
        entry.size()
    };
    Head {
        name,
        kind,
        stored,
        pos: entry.raw_file_position(),
    }
}

/// Calls `visit` for each member of the archive at `path`, in order, with its
/// bytes when `wants` says so, until `visit` says stop. `nested`: members named
/// `*.tar` at the top level are walked as tars (reported first as containers).
pub(crate) fn walk(
    path: &Path,
    nested: bool,
    wants: &mut dyn FnMut(&Member) -> bool,
    visit: &mut dyn FnMut(Member, Option<Vec<u8>>) -> Result<Flow, IngestError>,
) -> Result<(), IngestError> {
    let file = File::open(path).map_err(|e| IngestError::io(path, e))?;
    let mut seq = 0u64;
    let mut w = Walk {
        path,
        nested,
        seq: &mut seq,
        wants,
        visit,
    };
    if is_compressed(path) {
        let mut gz = MultiGzDecoder::new(io::BufReader::new(file));
        if w.stream(&mut gz, None)? == Flow::Stop {
            return Ok(());
        }
        // The gzip trailer (its CRC and length) is checked only when the stream
        // is read to its end.
        io::copy(&mut gz, &mut io::sink())
            .map_err(|e| bad(path, "", format!("damaged or truncated gzip stream: {e}")))?;
        Ok(())
    } else {
        let len = file.metadata().map_err(|e| IngestError::io(path, e))?.len();
        w.plain(&file, 0, len, None).map(|_| ())
    }
}

struct Walk<'a> {
    path: &'a Path,
    nested: bool,
    seq: &'a mut u64,
    wants: &'a mut dyn FnMut(&Member) -> bool,
    visit: &'a mut dyn FnMut(Member, Option<Vec<u8>>) -> Result<Flow, IngestError>,
}

/// Bytes read ahead of a member's data for its buffer; the rest grows as it
/// arrives, so a header's size never allocates by itself.
const READ_AHEAD: u64 = 1 << 20;

impl Walk<'_> {
    fn member(&mut self, h: &Head, container: Option<&str>, offset: Option<u64>) -> Member {
        let seq = if h.kind == Kind::File {
            let s = *self.seq;
            *self.seq += 1;
            s
        } else {
            u64::MAX
        };
        Member {
            seq,
            container: container.map(str::to_string),
            name: h.name.clone(),
            size: h.stored,
            offset,
            kind: h.kind,
        }
    }

    fn truncated(&self, at: &str, last: &str) -> IngestError {
        bad(
            self.path,
            at,
            format!("ends after member {last} without tar's end-of-archive blocks: the archive is truncated"),
        )
    }

    /// The uncompressed tar in bytes `start..start + len` of `file`.
    fn plain(
        &mut self,
        file: &File,
        start: u64,
        len: u64,
        container: Option<&str>,
    ) -> Result<Flow, IngestError> {
        let path = self.path;
        let at = inside(container);
        let window = Window {
            file,
            start,
            len,
            pos: 0,
        };
        let mut archive = tar::Archive::new(window);
        let entries = archive
            .entries_with_seek()
            .map_err(|e| bad(path, &at, format!("not a readable tar: {e}")))?;
        let mut end = 0u64;
        let mut last = String::from("(none)");
        for entry in entries {
            let entry = entry.map_err(|e| {
                bad(
                    path,
                    &at,
                    format!("not a readable tar after member {last}: {e}"),
                )
            })?;
            let h = head(&entry, self.nested && container.is_none());
            let member_end = h.pos.saturating_add(h.stored);
            if member_end > len {
                return Err(bad(
                    path,
                    &at,
                    format!(
                        "member {} needs bytes up to {member_end} but the tar holds {len}: the archive is truncated",
                        h.name
                    ),
                ));
            }
            end = member_end.div_ceil(BLOCK) * BLOCK;
            last.clone_from(&h.name);
            let m = self.member(&h, container, Some(start + h.pos));
            if h.kind == Kind::Container {
                if (self.visit)(m, None)? == Flow::Stop
                    || self.plain(file, start + h.pos, h.stored, Some(&h.name))? == Flow::Stop
                {
                    return Ok(Flow::Stop);
                }
                continue;
            }
            let bytes = if h.kind == Kind::File && (self.wants)(&m) {
                let n =
                    usize::try_from(h.stored).map_err(|_| bad(path, &at, "member too large"))?;
                let mut buf = Vec::new();
                buf.try_reserve_exact(n)
                    .map_err(|_| bad(path, &at, format!("member {} too large to read", h.name)))?;
                buf.resize(n, 0);
                file.read_exact_at(&mut buf, start + h.pos)
                    .map_err(|e| IngestError::io(path, e))?;
                Some(buf)
            } else {
                None
            };
            if (self.visit)(m, bytes)? == Flow::Stop {
                return Ok(Flow::Stop);
            }
        }
        // A tar ends with zero blocks; a file that stops right after a member
        // was cut there.
        if end + BLOCK > len {
            return Err(self.truncated(&at, &last));
        }
        Ok(Flow::Go)
    }

    /// A tar read as a stream, up to its end-of-archive blocks.
    fn stream(
        &mut self,
        reader: &mut dyn Read,
        container: Option<&str>,
    ) -> Result<Flow, IngestError> {
        let path = self.path;
        let at = inside(container);
        let reader = Counted::new(reader);
        let count = reader.count.clone();
        let mut archive = tar::Archive::new(reader);
        let mut end = 0u64;
        let mut last = String::from("(none)");
        let entries = archive
            .entries()
            .map_err(|e| bad(path, &at, format!("not a readable tar: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| {
                bad(
                    path,
                    &at,
                    format!("not a readable tar after member {last}: {e}"),
                )
            })?;
            let h = head(&entry, self.nested && container.is_none());
            end = h.pos.saturating_add(h.stored).div_ceil(BLOCK) * BLOCK;
            last.clone_from(&h.name);
            let m = self.member(&h, container, None);
            if h.kind == Kind::Container {
                if (self.visit)(m, None)? == Flow::Stop
                    || self.stream(&mut entry, Some(&h.name))? == Flow::Stop
                {
                    return Ok(Flow::Stop);
                }
                continue;
            }
            let bytes = if h.kind == Kind::File && (self.wants)(&m) {
                let mut buf = Vec::with_capacity(h.stored.min(READ_AHEAD) as usize);
                (&mut entry)
                    .take(h.stored)
                    .read_to_end(&mut buf)
                    .map_err(|e| bad(path, &at, format!("member {}: {e}", h.name)))?;
                if buf.len() as u64 != h.stored {
                    return Err(bad(
                        path,
                        &at,
                        format!(
                            "member {} has {} of its {} bytes: the archive is truncated",
                            h.name,
                            buf.len(),
                            h.stored
                        ),
                    ));
                }
                Some(buf)
            } else {
                None
            };
            if (self.visit)(m, bytes)? == Flow::Stop {
                return Ok(Flow::Stop);
            }
        }
        if count.get() < end + BLOCK {
            return Err(self.truncated(&at, &last));
        }
        Ok(Flow::Go)
    }
}

/// Reads the file members whose `seq` is in `wanted` from the archive at `path`
/// (one pass; for compressed archives).
pub(crate) fn gather(
    path: &Path,
    nested: bool,
    wanted: &HashSet<u64>,
) -> Result<HashMap<u64, Vec<u8>>, IngestError> {
    let mut got = HashMap::with_capacity(wanted.len());
    walk(
        path,
        nested,
        &mut |m| wanted.contains(&m.seq),
        &mut |m, bytes| {
            if let Some(b) = bytes {
                got.insert(m.seq, b);
            }
            // The archive was checked whole when it was listed.
            Ok(if got.len() == wanted.len() {
                Flow::Stop
            } else {
                Flow::Go
            })
        },
    )?;
    Ok(got)
}

/// A byte range of a file, read in place; seeking past its end reads nothing.
struct Window<'a> {
    file: &'a File,
    start: u64,
    len: u64,
    pos: u64,
}

impl Read for Window<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        let got = self.file.read_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl Seek for Window<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let base = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
        };
        self.pos = base.ok_or_else(|| io::Error::other("seek before the start"))?;
        Ok(self.pos)
    }
}

/// A reader that counts the bytes read through it.
struct Counted<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R> Counted<R> {
    fn new(inner: R) -> Counted<R> {
        Counted {
            inner,
            count: Rc::new(Cell::new(0)),
        }
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}
