//! What a source holds, as the layout rules find it: classes, splits of
//! items, and where each item's bytes are. A leaf of the crate's modules.

use std::collections::BTreeMap;
use std::path::PathBuf;

use fnc_formats::ClassInfo;

/// The source layouts fnc-ingest understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `train/<wnid>/*.JPEG`, `val/` in class folders or flat with
    /// `LOC_val_solution.csv` (also under the Kaggle `ILSVRC/Data/CLS-LOC/` prefix),
    /// `test/` in class folders; or ImageNet's official archives.
    Ilsvrc,
    /// `<class>/*.{jpg,jpeg,png,webp}`, one split unless `--val-fraction`.
    ImageFolder,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Ilsvrc => "ilsvrc",
            Layout::ImageFolder => "imagefolder",
        }
    }
}

/// One source file to pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceItem {
    /// Where its bytes are.
    pub origin: Origin,
    /// Path relative to the source root, `/`-separated: the record's name.
    pub name: String,
    pub label: u32,
    pub size: u64,
}

/// What a source holds.
#[derive(Debug, Clone)]
pub struct Plan {
    pub layout: Layout,
    pub classes: Vec<ClassInfo>,
    /// Items of each split, sorted by name (shuffling happens later, seeded).
    pub splits: BTreeMap<String, Vec<SourceItem>>,
    /// Things a person should know (ignored folders, files without labels).
    pub notes: Vec<String>,
    /// The archives the items' [`Origin`]s index (empty for a directory tree).
    pub archives: Vec<SourceArchive>,
}

/// Where a source file's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A file on disk.
    File(PathBuf),
    /// `size` bytes at byte `offset` of the uncompressed tar `archive` (an
    /// index into [`crate::Plan::archives`]); members of nested tars included.
    Member { archive: usize, offset: u64 },
    /// The `seq`-th file member of the compressed tar `archive`, counted in
    /// the order of the stream.
    Streamed { archive: usize, seq: u64 },
}

/// An archive that a plan's items are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceArchive {
    pub path: PathBuf,
    /// Its top-level `*.tar` members are tars of their own (ImageNet's train
    /// archive).
    pub nested: bool,
}
