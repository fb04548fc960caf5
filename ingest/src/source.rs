//! Where a record's source bytes are, and reading them: a file, a member of an
//! uncompressed tar (read in place at its offset), or a member of a compressed
//! tar (read by a pass over the stream that gathers a window of members).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::archive::walk;
use crate::error::IngestError;
use crate::plan::{Origin, SourceArchive, SourceItem};

/// Reads the bytes of source items; one per ingest run.
#[derive(Debug)]
pub(crate) struct Fetcher {
    archives: Vec<SourceArchive>,
    files: Vec<Option<File>>,
    /// Members of compressed archives gathered for the current window.
    window: HashMap<(usize, u64), Vec<u8>>,
}

impl Fetcher {
    pub fn open(archives: &[SourceArchive]) -> Result<Fetcher, IngestError> {
        let files = archives
            .iter()
            .map(|a| {
                if walk::is_compressed(&a.path) {
                    Ok(None)
                } else {
                    File::open(&a.path)
                        .map(Some)
                        .map_err(|e| IngestError::io(&a.path, e))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Fetcher {
            archives: archives.to_vec(),
            files,
            window: HashMap::new(),
        })
    }

    /// Makes sure every streamed item of `items` is in memory: when one is not,
    /// drops the window and gathers a new one in one pass per archive, taking
    /// `items` and then `ahead`, in order, until `budget` bytes are held.
    pub fn prepare(
        &mut self,
        items: &[&SourceItem],
        ahead: &[&SourceItem],
        budget: u64,
    ) -> Result<(), IngestError> {
        let missing = items.iter().any(|it| match it.origin {
            Origin::Streamed { archive, seq } => !self.window.contains_key(&(archive, seq)),
            _ => false,
        });
        if !missing {
            return Ok(());
        }
        self.window.clear();
        let mut wanted: HashMap<usize, HashSet<u64>> = HashMap::new();
        let mut held = 0u64;
        for (k, it) in items.iter().chain(ahead).enumerate() {
            if k >= items.len() && held >= budget {
                break;
            }
            if let Origin::Streamed { archive, seq } = it.origin {
                wanted.entry(archive).or_default().insert(seq);
                held += it.size;
            }
        }
        for (archive, seqs) in wanted {
            let a = &self.archives[archive];
            let got = walk::gather(&a.path, a.nested, &seqs)?;
            for (seq, bytes) in got {
                self.window.insert((archive, seq), bytes);
            }
        }
        Ok(())
    }

    /// The bytes of `item`; a failure is a reason for the skipped list.
    pub fn read(&self, item: &SourceItem) -> Result<Vec<u8>, String> {
        match &item.origin {
            Origin::File(p) => std::fs::read(p).map_err(|e| format!("cannot read: {e}")),
            Origin::Member { archive, offset } => {
                let file = self.files[*archive]
                    .as_ref()
                    .ok_or_else(|| "archive not open".to_string())?;
                let len = usize::try_from(item.size).map_err(|_| "too large".to_string())?;
                let mut buf = vec![0u8; len];
                file.read_exact_at(&mut buf, *offset).map_err(|e| {
                    format!(
                        "cannot read {} bytes at byte {offset} of {}: {e}",
                        item.size,
                        self.archives[*archive].path.display()
                    )
                })?;
                Ok(buf)
            }
            Origin::Streamed { archive, seq } => self
                .window
                .get(&(*archive, *seq))
                .cloned()
                .ok_or_else(|| format!("member {seq} was not gathered from the stream")),
        }
    }
}
