//! Finding the images of a source tree, their classes and splits.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use fnc_formats::ClassInfo;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;

use crate::error::IngestError;

/// The source layouts fnc-ingest understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `train/<wnid>/*.JPEG`, `val/` in class folders or flat with
    /// `LOC_val_solution.csv` (also under the Kaggle `ILSVRC/Data/CLS-LOC/` prefix).
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
    pub path: PathBuf,
    /// Path relative to the source root, `/`-separated: the record's name.
    pub name: String,
    pub label: u32,
    pub size: u64,
}

/// What a source tree holds.
#[derive(Debug, Clone)]
pub struct Plan {
    pub layout: Layout,
    pub classes: Vec<ClassInfo>,
    /// Items of each split, sorted by name (shuffling happens later, seeded).
    pub splits: BTreeMap<String, Vec<SourceItem>>,
    /// Things a person should know (ignored folders, files without labels).
    pub notes: Vec<String>,
}

const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];

fn has_image_extension(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .map(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
        .unwrap_or(false)
}

fn is_hidden(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.starts_with('.'))
        .unwrap_or(false)
}

/// Sorted subdirectories and sorted files of a directory (hidden entries skipped).
fn list_dir(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), IngestError> {
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| IngestError::io(dir, e))? {
        let entry = entry.map_err(|e| IngestError::io(dir, e))?;
        let path = entry.path();
        if is_hidden(&path) {
            continue;
        }
        // Follow symlinks: trees are often assembled from links.
        let meta = fs::metadata(&path).map_err(|e| IngestError::io(&path, e))?;
        if meta.is_dir() {
            dirs.push(path);
        } else if meta.is_file() {
            files.push(path);
        }
    }
    dirs.sort();
    files.sort();
    Ok((dirs, files))
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn rel_name(root: &Path, p: &Path) -> String {
    let rel = p.strip_prefix(root).unwrap_or(p);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

struct Listing {
    items: Vec<SourceItem>,
    ignored: usize,
}

/// Image files directly inside `dir`, labelled `label`.
fn class_files(root: &Path, dir: &Path, label: u32) -> Result<Listing, IngestError> {
    let (_, files) = list_dir(dir)?;
    let mut items = Vec::with_capacity(files.len());
    let mut ignored = 0;
    for f in files {
        if !has_image_extension(&f) {
            ignored += 1;
            continue;
        }
        let size = fs::metadata(&f).map_err(|e| IngestError::io(&f, e))?.len();
        items.push(SourceItem {
            name: rel_name(root, &f),
            path: f,
            label,
            size,
        });
    }
    Ok(Listing { items, ignored })
}

fn collect_classes(
    root: &Path,
    dirs: &[PathBuf],
    labels: &HashMap<String, u32>,
) -> Result<Listing, IngestError> {
    let per_class: Vec<Listing> = dirs
        .par_iter()
        .map(|d| {
            let label =
                labels
                    .get(&file_name(d))
                    .copied()
                    .ok_or_else(|| IngestError::BadSource {
                        path: d.clone(),
                        detail: "this class folder is not among the training classes".into(),
                    })?;
            class_files(root, d, label)
        })
        .collect::<Result<_, _>>()?;
    let mut items = Vec::new();
    let mut ignored = 0;
    for l in per_class {
        items.extend(l.items);
        ignored += l.ignored;
    }
    Ok(Listing { items, ignored })
}

/// Reads `wnid -> human name` from `LOC_synset_mapping.txt` (`wnid name, name`) or
/// `classes.tsv` (`wnid<TAB>name`) in any of `dirs`.
fn class_names(dirs: &[&Path]) -> HashMap<String, String> {
    let mut names = HashMap::new();
    for d in dirs {
        for (file, sep) in [("LOC_synset_mapping.txt", ' '), ("classes.tsv", '\t')] {
            if let Ok(text) = fs::read_to_string(d.join(file)) {
                for line in text.lines() {
                    if let Some((id, name)) = line.trim_end().split_once(sep) {
                        names
                            .entry(id.trim().to_string())
                            .or_insert_with(|| name.trim().to_string());
                    }
                }
            }
        }
    }
    names
}

/// Reads `ImageId,PredictionString` rows: image id -> wnid (first token).
fn read_val_solution(path: &Path) -> Result<HashMap<String, String>, IngestError> {
    let text = fs::read_to_string(path).map_err(|e| IngestError::io(path, e))?;
    let mut map = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (n == 0 && line.starts_with("ImageId")) {
            continue;
        }
        let (id, pred) = line.split_once(',').ok_or_else(|| IngestError::BadSource {
            path: path.to_path_buf(),
            detail: format!("line {}: expected `ImageId,PredictionString`", n + 1),
        })?;
        let wnid = pred
            .split_whitespace()
            .next()
            .ok_or_else(|| IngestError::BadSource {
                path: path.to_path_buf(),
                detail: format!("line {}: empty PredictionString", n + 1),
            })?;
        map.insert(id.trim().to_string(), wnid.to_string());
    }
    Ok(map)
}

fn make_classes(dirs: &[PathBuf], names: &HashMap<String, String>) -> Vec<ClassInfo> {
    dirs.iter()
        .enumerate()
        .map(|(i, d)| {
            let wnid = file_name(d);
            ClassInfo {
                index: i as u32,
                name: names.get(&wnid).cloned(),
                wnid,
            }
        })
        .collect()
}

/// Finds the layout, classes and files of `src`.
///
/// `val_fraction` carves a validation split out of train (per class, seeded) when
/// the source has none.
pub fn discover(src: &Path, val_fraction: f64, seed: u64) -> Result<Plan, IngestError> {
    if !src.is_dir() {
        return Err(IngestError::MissingSource {
            path: src.to_path_buf(),
        });
    }
    if !(0.0..1.0).contains(&val_fraction) {
        return Err(IngestError::BadOption {
            flag: "--val-fraction",
            detail: format!("{val_fraction} is not in [0, 1)"),
        });
    }
    let kaggle = src.join("ILSVRC").join("Data").join("CLS-LOC");
    let root = if kaggle.join("train").is_dir() {
        kaggle
    } else {
        src.to_path_buf()
    };
    let mut notes = Vec::new();
    let train_dir = root.join("train");
    let mut plan = if train_dir.is_dir() && !list_dir(&train_dir)?.0.is_empty() {
        let (class_dirs, _) = list_dir(&train_dir)?;
        let names = class_names(&[src, &root]);
        let classes = make_classes(&class_dirs, &names);
        let labels: HashMap<String, u32> =
            classes.iter().map(|c| (c.wnid.clone(), c.index)).collect();
        let mut splits = BTreeMap::new();
        let train = collect_classes(&root, &class_dirs, &labels)?;
        if train.ignored > 0 {
            notes.push(format!(
                "train: {} files without an image extension ignored",
                train.ignored
            ));
        }
        splits.insert("train".to_string(), train.items);
        let val_dir = root.join("val");
        if val_dir.is_dir() {
            let (vdirs, vfiles) = list_dir(&val_dir)?;
            if !vdirs.is_empty() {
                let val = collect_classes(&root, &vdirs, &labels)?;
                if val.ignored > 0 {
                    notes.push(format!(
                        "val: {} files without an image extension ignored",
                        val.ignored
                    ));
                }
                splits.insert("val".to_string(), val.items);
            } else if !vfiles.is_empty() {
                let csv = [root.join("LOC_val_solution.csv"), src.join("LOC_val_solution.csv")]
                    .into_iter()
                    .find(|p| p.is_file())
                    .ok_or_else(|| IngestError::BadSource {
                        path: val_dir.clone(),
                        detail: "val/ is flat (no class folders) and no LOC_val_solution.csv was found beside it to label it".into(),
                    })?;
                let solution = read_val_solution(&csv)?;
                let mut items = Vec::new();
                let (mut unlabelled, mut ignored) = (0usize, 0usize);
                for f in vfiles {
                    if !has_image_extension(&f) {
                        ignored += 1;
                        continue;
                    }
                    let stem = f
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let Some(label) = solution.get(&stem).and_then(|w| labels.get(w)) else {
                        unlabelled += 1;
                        continue;
                    };
                    let size = fs::metadata(&f).map_err(|e| IngestError::io(&f, e))?.len();
                    items.push(SourceItem {
                        name: rel_name(&root, &f),
                        path: f,
                        label: *label,
                        size,
                    });
                }
                if unlabelled > 0 {
                    notes.push(format!(
                        "val: {unlabelled} images without a label in {} ignored",
                        csv.display()
                    ));
                }
                if ignored > 0 {
                    notes.push(format!(
                        "val: {ignored} files without an image extension ignored"
                    ));
                }
                splits.insert("val".to_string(), items);
            }
        }
        if root.join("test").is_dir() {
            notes.push("test/ ignored: its images have no labels".into());
        }
        Plan {
            layout: Layout::Ilsvrc,
            classes,
            splits,
            notes,
        }
    } else {
        let (dirs, _) = list_dir(src)?;
        let mut class_dirs = Vec::new();
        for d in dirs {
            let (_, files) = list_dir(&d)?;
            if files.iter().any(|f| has_image_extension(f)) {
                class_dirs.push(d);
            }
        }
        if class_dirs.is_empty() {
            return Err(IngestError::UnknownLayout {
                path: src.to_path_buf(),
                detail: "expected train/<class>/<images> (ILSVRC2012, optionally with val/) or <class>/<images> (ImageFolder: .jpg .jpeg .png .webp)".into(),
            });
        }
        let names = class_names(&[src]);
        let classes = make_classes(&class_dirs, &names);
        let labels: HashMap<String, u32> =
            classes.iter().map(|c| (c.wnid.clone(), c.index)).collect();
        let all = collect_classes(src, &class_dirs, &labels)?;
        if all.ignored > 0 {
            notes.push(format!(
                "{} files without an image extension ignored",
                all.ignored
            ));
        }
        let mut splits = BTreeMap::new();
        splits.insert("train".to_string(), all.items);
        Plan {
            layout: Layout::ImageFolder,
            classes,
            splits,
            notes,
        }
    };
    if val_fraction > 0.0 {
        if plan.splits.contains_key("val") {
            plan.notes
                .push("--val-fraction ignored: the source has a val split".into());
        } else {
            carve_val(&mut plan, val_fraction, seed);
        }
    }
    for items in plan.splits.values_mut() {
        items.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Ok(plan)
}

/// Moves a seeded `fraction` of each class from train to a new val split.
fn carve_val(plan: &mut Plan, fraction: f64, seed: u64) {
    let train = plan.splits.remove("train").unwrap_or_default();
    let mut by_class: BTreeMap<u32, Vec<SourceItem>> = BTreeMap::new();
    for it in train {
        by_class.entry(it.label).or_default().push(it);
    }
    let (mut tr, mut va) = (Vec::new(), Vec::new());
    for (label, mut items) in by_class {
        let mut rng =
            rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (0x9e37_79b9 * (label as u64 + 1)));
        items.shuffle(&mut rng);
        let n_val = ((items.len() as f64) * fraction).round() as usize;
        let rest = items.split_off(n_val.min(items.len()));
        va.extend(items);
        tr.extend(rest);
    }
    plan.splits.insert("train".into(), tr);
    plan.splits.insert("val".into(), va);
}
