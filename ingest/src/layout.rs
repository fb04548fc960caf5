//! Finding the images of a source tree, their classes and splits.
//!
//! One set of rules reads every [`Tree`]: a directory on disk and the member list
//! of an archive alike, so that an archive gives exactly the records of its
//! extracted tree.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use fnc_formats::ClassInfo;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;

use crate::error::IngestError;
use crate::plan::{Layout, Plan, SourceArchive, SourceItem};
use crate::tree::{join, FsTree, Tree, TreeFile};

const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];

pub(crate) fn has_image_extension(name: &str) -> bool {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
        .unwrap_or(false)
}

pub(crate) struct Listing {
    pub items: Vec<SourceItem>,
    pub ignored: usize,
}

/// Image files directly inside `dir`, labelled `label`.
fn class_files(tree: &dyn Tree, dir: &str, label: u32) -> Result<Listing, IngestError> {
    let files = tree.folder(dir)?.map(|f| f.files).unwrap_or_default();
    let mut items = Vec::with_capacity(files.len());
    let mut ignored = 0;
    for f in files {
        if !has_image_extension(&f.name) {
            ignored += 1;
            continue;
        }
        items.push(item(dir, f, label));
    }
    Ok(Listing { items, ignored })
}

fn item(dir: &str, f: TreeFile, label: u32) -> SourceItem {
    SourceItem {
        name: join(dir, &f.name),
        origin: f.origin,
        label,
        size: f.size,
    }
}

/// The images of the class folders `dirs` under `parent`.
fn collect_classes(
    tree: &dyn Tree,
    parent: &str,
    dirs: &[String],
    labels: &HashMap<String, u32>,
) -> Result<Listing, IngestError> {
    let per_class: Vec<Listing> = dirs
        .par_iter()
        .map(|d| {
            let dir = join(parent, d);
            let label = labels
                .get(d)
                .copied()
                .ok_or_else(|| IngestError::BadSource {
                    path: tree.show(&dir),
                    detail: "this class folder is not among the training classes".into(),
                })?;
            class_files(tree, &dir, label)
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

/// The file names of label lists, read from a tree wherever its root is.
pub(crate) const LABEL_FILES: [&str; 3] = [
    "LOC_synset_mapping.txt",
    "classes.tsv",
    "LOC_val_solution.csv",
];

/// Reads `wnid -> human name` from `LOC_synset_mapping.txt` (`wnid name, name`) or
/// `classes.tsv` (`wnid<TAB>name`) in any of `dirs`.
fn class_names(tree: &dyn Tree, dirs: &[&str]) -> Result<HashMap<String, String>, IngestError> {
    let mut names = HashMap::new();
    for d in dirs {
        for (file, sep) in [("LOC_synset_mapping.txt", ' '), ("classes.tsv", '\t')] {
            if let Some(text) = tree.text(&join(d, file))? {
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
    Ok(names)
}

/// Reads `ImageId,PredictionString` rows: image id -> wnid (first token).
fn read_val_solution(path: &Path, text: &str) -> Result<HashMap<String, String>, IngestError> {
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

pub(crate) fn make_classes(wnids: &[String], names: &HashMap<String, String>) -> Vec<ClassInfo> {
    wnids
        .iter()
        .enumerate()
        .map(|(i, wnid)| ClassInfo {
            index: i as u32,
            name: names.get(wnid).cloned(),
            wnid: wnid.clone(),
        })
        .collect()
}

fn check_fraction(val_fraction: f64) -> Result<(), IngestError> {
    if !(0.0..1.0).contains(&val_fraction) {
        return Err(IngestError::BadOption {
            flag: "--val-fraction",
            detail: format!("{val_fraction} is not in [0, 1)"),
        });
    }
    Ok(())
}

/// The plan of a directory tree.
pub(crate) fn discover_dir(src: &Path, val_fraction: f64, seed: u64) -> Result<Plan, IngestError> {
    if !src.is_dir() {
        return Err(IngestError::MissingSource {
            path: src.to_path_buf(),
        });
    }
    let tree = FsTree {
        root: src.to_path_buf(),
    };
    discover_tree(&tree, val_fraction, seed, Vec::new())
}

/// A labelled split in class folders (`val/`, `test/`) under `root`.
fn class_split(
    tree: &dyn Tree,
    dir: &str,
    split: &str,
    labels: &HashMap<String, u32>,
    notes: &mut Vec<String>,
) -> Result<Option<Vec<SourceItem>>, IngestError> {
    let Some(folder) = tree.folder(dir)? else {
        return Ok(None);
    };
    if folder.dirs.is_empty() {
        return Ok(None);
    }
    let l = collect_classes(tree, dir, &folder.dirs, labels)?;
    if l.ignored > 0 {
        notes.push(format!(
            "{split}: {} files without an image extension ignored",
            l.ignored
        ));
    }
    Ok(Some(l.items))
}

/// A flat `val/` labelled by `LOC_val_solution.csv` beside it.
fn flat_val(
    tree: &dyn Tree,
    root: &str,
    files: Vec<TreeFile>,
    labels: &HashMap<String, u32>,
    notes: &mut Vec<String>,
) -> Result<Vec<SourceItem>, IngestError> {
    let val_dir = join(root, "val");
    let mut csv = None;
    for dir in [root, ""] {
        let rel = join(dir, "LOC_val_solution.csv");
        if let Some(text) = tree.text(&rel)? {
            csv = Some((tree.show(&rel), text));
            break;
        }
    }
    let (csv, text) = csv.ok_or_else(|| IngestError::BadSource {
        path: tree.show(&val_dir),
        detail: "val/ is flat (no class folders) and no LOC_val_solution.csv was found beside it to label it".into(),
    })?;
    let solution = read_val_solution(&csv, &text)?;
    let mut items = Vec::new();
    let (mut unlabelled, mut ignored) = (0usize, 0usize);
    for f in files {
        if !has_image_extension(&f.name) {
            ignored += 1;
            continue;
        }
        let stem = Path::new(&f.name)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(label) = solution.get(&stem).and_then(|w| labels.get(w)) else {
            unlabelled += 1;
            continue;
        };
        items.push(item(&val_dir, f, *label));
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
    Ok(items)
}

/// The plan of any tree; `archives` are those its origins index.
pub(crate) fn discover_tree(
    tree: &dyn Tree,
    val_fraction: f64,
    seed: u64,
    archives: Vec<SourceArchive>,
) -> Result<Plan, IngestError> {
    check_fraction(val_fraction)?;
    let kaggle = "ILSVRC/Data/CLS-LOC";
    let root = if tree.folder(&join(kaggle, "train"))?.is_some() {
        kaggle
    } else {
        ""
    };
    let mut notes = Vec::new();
    let train = tree.folder(&join(root, "train"))?;
    let mut plan = match train {
        Some(train) if !train.dirs.is_empty() => {
            let names = class_names(tree, &["", root])?;
            let classes = make_classes(&train.dirs, &names);
            let labels: HashMap<String, u32> =
                classes.iter().map(|c| (c.wnid.clone(), c.index)).collect();
            let mut splits = BTreeMap::new();
            let train_items = collect_classes(tree, &join(root, "train"), &train.dirs, &labels)?;
            if train_items.ignored > 0 {
                notes.push(format!(
                    "train: {} files without an image extension ignored",
                    train_items.ignored
                ));
            }
            splits.insert("train".to_string(), train_items.items);
            let val_dir = join(root, "val");
            if let Some(val) = class_split(tree, &val_dir, "val", &labels, &mut notes)? {
                splits.insert("val".to_string(), val);
            } else if let Some(folder) = tree.folder(&val_dir)? {
                if !folder.files.is_empty() {
                    let val = flat_val(tree, root, folder.files, &labels, &mut notes)?;
                    splits.insert("val".to_string(), val);
                }
            }
            let test_dir = join(root, "test");
            match tree.folder(&test_dir)? {
                Some(f) if !f.dirs.is_empty() => {
                    match f.dirs.iter().find(|d| !labels.contains_key(*d)) {
                        Some(other) => notes.push(format!(
                            "test/ ignored: its folder {other} is not a training class"
                        )),
                        None => {
                            let test = class_split(tree, &test_dir, "test", &labels, &mut notes)?;
                            splits.insert("test".to_string(), test.unwrap_or_default());
                        }
                    }
                }
                Some(_) => {
                    notes.push("test/ ignored: its images have no labels (no class folders)".into())
                }
                None => {}
            }
            Plan {
                layout: Layout::Ilsvrc,
                classes,
                splits,
                notes,
                archives,
            }
        }
        _ => {
            let root_folder = tree.folder("")?.unwrap_or_default();
            let mut class_dirs = Vec::new();
            for d in root_folder.dirs {
                let files = tree.folder(&d)?.map(|f| f.files).unwrap_or_default();
                if files.iter().any(|f| has_image_extension(&f.name)) {
                    class_dirs.push(d);
                }
            }
            if class_dirs.is_empty() {
                return Err(IngestError::UnknownLayout {
                    path: tree.show(""),
                    detail: "expected train/<class>/<images> (ILSVRC2012, optionally with val/ and test/) or <class>/<images> (ImageFolder: .jpg .jpeg .png .webp)".into(),
                });
            }
            let names = class_names(tree, &[""])?;
            let classes = make_classes(&class_dirs, &names);
            let labels: HashMap<String, u32> =
                classes.iter().map(|c| (c.wnid.clone(), c.index)).collect();
            let all = collect_classes(tree, "", &class_dirs, &labels)?;
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
                archives,
            }
        }
    };
    finish(&mut plan, val_fraction, seed);
    Ok(plan)
}

/// Carves val when asked and the source has none; sorts every split by name.
pub(crate) fn finish(plan: &mut Plan, val_fraction: f64, seed: u64) {
    if val_fraction > 0.0 {
        if plan.splits.contains_key("val") {
            plan.notes
                .push("--val-fraction ignored: the source has a val split".into());
        } else {
            carve_val(plan, val_fraction, seed);
        }
    }
    for items in plan.splits.values_mut() {
        items.sort_by(|a, b| a.name.cmp(&b.name));
    }
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
