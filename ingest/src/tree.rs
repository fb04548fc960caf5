//! A source tree as [`crate::layout`] sees it: folders, files with their sizes,
//! and where each file's bytes are. A directory on disk and the member list of an
//! archive are both trees, so both are read by one set of layout rules and give
//! the same records.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::IngestError;
use crate::plan::Origin;

/// A file of a tree.
#[derive(Debug, Clone)]
pub(crate) struct TreeFile {
    /// The file's name (the last path component).
    pub name: String,
    pub size: u64,
    pub origin: Origin,
}

/// What a folder of a tree holds: sorted folder names and sorted files, hidden
/// entries (a leading `.`) left out.
#[derive(Debug, Clone, Default)]
pub(crate) struct Folder {
    pub dirs: Vec<String>,
    pub files: Vec<TreeFile>,
}

/// A tree of folders and files; paths are `/`-joined, relative to its root
/// (`""` is the root).
pub(crate) trait Tree: Sync {
    /// The folder at `dir`, or `None` when there is no folder there.
    fn folder(&self, dir: &str) -> Result<Option<Folder>, IngestError>;
    /// The text of a small file (label lists), or `None` when there is none.
    fn text(&self, file: &str) -> Result<Option<String>, IngestError>;
    /// How `rel` is named in messages.
    fn show(&self, rel: &str) -> PathBuf;
}

/// `a/b` from `a` and `b`, where `a` may be the root `""`.
pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

pub(crate) fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// A directory on disk. Symbolic links are followed: trees are often assembled
/// from links.
#[derive(Debug)]
pub(crate) struct FsTree {
    pub root: PathBuf,
}

impl FsTree {
    fn path(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }
}

impl Tree for FsTree {
    fn folder(&self, dir: &str) -> Result<Option<Folder>, IngestError> {
        let path = self.path(dir);
        if !path.is_dir() {
            return Ok(None);
        }
        let mut out = Folder::default();
        for entry in fs::read_dir(&path).map_err(|e| IngestError::io(&path, e))? {
            let entry = entry.map_err(|e| IngestError::io(&path, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_hidden(&name) {
                continue;
            }
            let p = entry.path();
            let meta = fs::metadata(&p).map_err(|e| IngestError::io(&p, e))?;
            if meta.is_dir() {
                out.dirs.push(name);
            } else if meta.is_file() {
                out.files.push(TreeFile {
                    name,
                    size: meta.len(),
                    origin: Origin::File(p),
                });
            }
        }
        out.dirs.sort();
        out.files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Some(out))
    }

    fn text(&self, file: &str) -> Result<Option<String>, IngestError> {
        let path = self.path(file);
        if !path.is_file() {
            return Ok(None);
        }
        fs::read_to_string(&path)
            .map(Some)
            .map_err(|e| IngestError::io(&path, e))
    }

    fn show(&self, rel: &str) -> PathBuf {
        self.path(rel)
    }
}

/// A tree built from a list of files, such as the members of an archive.
#[derive(Debug, Default)]
pub(crate) struct MemTree {
    /// The archive, for messages (`ARCHIVE:member`).
    pub archive: PathBuf,
    folders: BTreeMap<String, Folder>,
    texts: BTreeMap<String, String>,
}

impl MemTree {
    pub fn new(archive: &Path) -> MemTree {
        let mut folders = BTreeMap::new();
        folders.insert(String::new(), Folder::default());
        MemTree {
            archive: archive.to_path_buf(),
            folders,
            texts: BTreeMap::new(),
        }
    }

    /// Adds the file at `rel` (`/`-separated), creating its folders. Entries under
    /// a hidden component are left out, as a directory listing leaves them out.
    pub fn add(&mut self, rel: &str, size: u64, origin: Origin) {
        let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
        let Some((name, dirs)) = parts.split_last() else {
            return;
        };
        if parts.iter().any(|p| is_hidden(p)) {
            return;
        }
        let dir = dirs.join("/");
        self.add_dir(&dir);
        self.folders.entry(dir).or_default().files.push(TreeFile {
            name: name.to_string(),
            size,
            origin,
        });
    }

    /// Whether some component of `rel` is hidden (left out of the tree).
    pub fn is_hidden_path(rel: &str) -> bool {
        rel.split('/').any(is_hidden)
    }

    /// Adds the folder at `rel` and its parents (an archive's empty folders are
    /// folders of its extracted tree too).
    pub fn add_dir(&mut self, rel: &str) {
        let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
        if parts.iter().any(|p| is_hidden(p)) {
            return;
        }
        let mut dir = String::new();
        for d in parts {
            let child = join(&dir, d);
            if !self.folders.contains_key(&child) {
                self.folders
                    .entry(dir.clone())
                    .or_default()
                    .dirs
                    .push(d.to_string());
                self.folders.insert(child.clone(), Folder::default());
            }
            dir = child;
        }
    }

    /// Keeps the text of a small member for [`Tree::text`].
    pub fn add_text(&mut self, rel: &str, text: String) {
        self.texts.insert(rel.to_string(), text);
    }

    /// Sorts every folder, as a directory listing is sorted; a name seen twice
    /// (an archive may hold a member twice; the last one wins, as when extracting)
    /// is kept once.
    pub fn finish(&mut self) {
        for f in self.folders.values_mut() {
            f.dirs.sort();
            f.dirs.dedup();
            // Stable: among equal names the last added stays last, and is kept.
            f.files.sort_by(|a, b| a.name.cmp(&b.name));
            let mut kept: Vec<TreeFile> = Vec::with_capacity(f.files.len());
            for file in f.files.drain(..) {
                match kept.last_mut() {
                    Some(last) if last.name == file.name => *last = file,
                    _ => kept.push(file),
                }
            }
            f.files = kept;
        }
    }

    /// The tree below its single top folder, when the root holds nothing but one
    /// folder that itself holds folders (`cifar10/train/...` read as `train/...`).
    pub fn strip_single_top(self) -> (MemTree, Option<String>) {
        let root = &self.folders[""];
        let single = root.files.is_empty() && root.dirs.len() == 1;
        let top = match single {
            true => root.dirs[0].clone(),
            false => return (self, None),
        };
        // A tar of `train/` (or of the Kaggle `ILSVRC/`) is that tree already.
        if ["train", "val", "test", "ILSVRC"].contains(&top.as_str()) {
            return (self, None);
        }
        if self.folders.get(&top).is_none_or(|f| f.dirs.is_empty()) {
            return (self, None);
        }
        let prefix = format!("{top}/");
        let reroot = |k: &str| -> Option<String> {
            if k == top {
                Some(String::new())
            } else {
                k.strip_prefix(&prefix).map(str::to_string)
            }
        };
        let folders = self
            .folders
            .iter()
            .filter_map(|(k, v)| reroot(k).map(|k| (k, v.clone())))
            .collect();
        let texts = self
            .texts
            .iter()
            .filter_map(|(k, v)| reroot(k).map(|k| (k, v.clone())))
            .collect();
        (
            MemTree {
                archive: self.archive,
                folders,
                texts,
            },
            Some(top),
        )
    }
}

impl Tree for MemTree {
    fn folder(&self, dir: &str) -> Result<Option<Folder>, IngestError> {
        Ok(self.folders.get(dir).cloned())
    }

    fn text(&self, file: &str) -> Result<Option<String>, IngestError> {
        Ok(self.texts.get(file).cloned())
    }

    fn show(&self, rel: &str) -> PathBuf {
        PathBuf::from(format!("{}:{rel}", self.archive.display()))
    }
}
