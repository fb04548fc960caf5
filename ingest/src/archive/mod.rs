//! Sources that are archives: a tar or tar.gz of an image tree, and ImageNet's
//! official files (`ILSVRC2012_img_train.tar`, a tar of per-class tars;
//! `ILSVRC2012_img_val.tar`, flat; `ILSVRC2012_devkit_t12.tar.gz`, the labels).
//!
//! Each is read into the tree its extraction would give (ImageNet's val sorted
//! into class folders, as `valprep.sh` and torchvision do), and that tree goes
//! through the same layout rules as a directory. Nothing is extracted: an
//! uncompressed archive's members are read in place at their offsets, a
//! compressed one's by passes over its stream.

pub(crate) mod devkit;
pub(crate) mod mat;
pub(crate) mod walk;

use std::path::Path;

use crate::error::IngestError;
use crate::layout::{discover_dir, discover_tree, has_image_extension, LABEL_FILES};
use crate::plan::{Origin, Plan, SourceArchive};
use crate::tree::MemTree;
use walk::{Flow, Kind};

/// The official file names, looked for in a source directory.
pub const IMAGENET_TRAIN: &str = "ILSVRC2012_img_train.tar";
pub const IMAGENET_VAL: &str = "ILSVRC2012_img_val.tar";
pub const IMAGENET_DEVKIT: &str = "ILSVRC2012_devkit_t12.tar.gz";

/// Label lists inside an archive are kept when no larger than this.
const MAX_TEXT: u64 = 64 << 20;

/// Finds the layout, classes and files of `src`: a directory tree, a tar or
/// tar.gz of one, or ImageNet's official archives (the train tar, or a
/// directory holding the three; see [`crate::IngestOptions`]).
///
/// `val_fraction` carves a validation split out of train (per class, seeded) when
/// the source has none.
pub fn discover_source(src: &Path, val_fraction: f64, seed: u64) -> Result<Plan, IngestError> {
    discover(src, None, None, val_fraction, seed)
}

/// The plan of `src` (a directory, an archive, or a directory holding
/// ImageNet's official archives), with ImageNet's `val` archive and `devkit`
/// when given.
pub(crate) fn discover(
    src: &Path,
    val: Option<&Path>,
    devkit: Option<&Path>,
    val_fraction: f64,
    seed: u64,
) -> Result<Plan, IngestError> {
    let official =
        src.is_dir() && src.join(IMAGENET_TRAIN).is_file() && !src.join("train").is_dir();
    if official {
        let near = |name: &str| Some(src.join(name)).filter(|p| p.exists());
        let val = val.map(Path::to_path_buf).or_else(|| near(IMAGENET_VAL));
        let devkit = devkit
            .map(Path::to_path_buf)
            .or_else(|| near(IMAGENET_DEVKIT));
        return imagenet(
            &src.join(IMAGENET_TRAIN),
            val.as_deref(),
            devkit.as_deref(),
            val_fraction,
            seed,
        );
    }
    if src.is_dir() {
        if val.is_some() || devkit.is_some() {
            return Err(IngestError::BadOption {
                flag: if val.is_some() { "--val" } else { "--devkit" },
                detail: format!(
                    "goes with ImageNet's official archives ({IMAGENET_TRAIN}), not with the directory tree {}",
                    src.display()
                ),
            });
        }
        return discover_dir(src, val_fraction, seed);
    }
    if !src.is_file() {
        return Err(IngestError::MissingSource {
            path: src.to_path_buf(),
        });
    }
    if val.is_some() || devkit.is_some() {
        return imagenet(src, val, devkit, val_fraction, seed);
    }
    image_tree(src, val_fraction, seed)
}

fn origin(m: &walk::Member, archive: usize) -> Origin {
    match m.offset {
        Some(offset) => Origin::Member { archive, offset },
        None => Origin::Streamed {
            archive,
            seq: m.seq,
        },
    }
}

/// A tar or tar.gz of an image tree (one top folder allowed); a tar whose
/// members are all tars is ImageNet's train archive.
fn image_tree(path: &Path, val_fraction: f64, seed: u64) -> Result<Plan, IngestError> {
    let mut tree = MemTree::new(path);
    let (mut special, mut tars, mut files) = (0usize, 0usize, 0usize);
    walk::walk(
        path,
        false,
        &mut |m| m.size <= MAX_TEXT && is_label_file(&m.name),
        &mut |m, bytes| {
            match m.kind {
                Kind::Dir => tree.add_dir(&m.name),
                Kind::Other | Kind::Container => special += 1,
                Kind::File => {
                    if walk::is_nested_tar(&m.name) {
                        tars += 1;
                    } else if !MemTree::is_hidden_path(&m.name) {
                        files += 1;
                    }
                    if let Some(b) = bytes {
                        tree.add_text(&m.name, String::from_utf8_lossy(&b).into_owned());
                    }
                    tree.add(&m.name, m.size, origin(&m, 0));
                }
            }
            Ok(Flow::Go)
        },
    )?;
    if tars > 0 && files == 0 {
        return imagenet(path, None, None, val_fraction, seed);
    }
    tree.finish();
    let (tree, top) = tree.strip_single_top();
    let archives = vec![SourceArchive {
        path: path.to_path_buf(),
        nested: false,
    }];
    let mut plan = discover_tree(&tree, val_fraction, seed, archives)?;
    if let Some(top) = top {
        plan.notes
            .push(format!("read the archive below its top folder {top}/"));
    }
    if special > 0 {
        plan.notes.push(format!(
            "{special} archive members that are not regular files (links, devices) ignored"
        ));
    }
    Ok(plan)
}

fn is_label_file(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    LABEL_FILES.contains(&base)
}

/// ImageNet's official archives: `train` a tar of `<wnid>.tar`s, `val` flat
/// images labelled by `devkit`.
fn imagenet(
    train: &Path,
    val: Option<&Path>,
    devkit: Option<&Path>,
    val_fraction: f64,
    seed: u64,
) -> Result<Plan, IngestError> {
    if val.is_some() && devkit.is_none() {
        return Err(IngestError::BadOption {
            flag: "--devkit",
            detail: format!("is needed with --val: the validation labels are in {IMAGENET_DEVKIT}"),
        });
    }
    for p in [Some(train), val, devkit].into_iter().flatten() {
        if !p.is_file() {
            return Err(IngestError::MissingSource {
                path: p.to_path_buf(),
            });
        }
    }
    let kit = devkit.map(devkit::read).transpose()?;
    let mut tree = MemTree::new(train);
    let mut notes = Vec::new();
    let mut loose = Vec::new();
    let class_of = |tar: &str| {
        let base = tar.rsplit('/').next().unwrap_or(tar);
        base[..base.len() - ".tar".len()].to_string()
    };
    walk::walk(train, true, &mut |_| false, &mut |m, _| {
        match (&m.container, m.kind) {
            // An empty class tar is an empty class folder once extracted.
            (None, Kind::Container) => tree.add_dir(&format!("train/{}", class_of(&m.name))),
            (Some(c), Kind::File) => {
                let rel = format!("train/{}/{}", class_of(c), m.name);
                tree.add(&rel, m.size, origin(&m, 0));
            }
            (Some(c), Kind::Dir) => tree.add_dir(&format!("train/{}/{}", class_of(c), m.name)),
            (None, Kind::Dir) => {}
            _ => loose.push(m.name),
        }
        Ok(Flow::Go)
    })?;
    if !loose.is_empty() {
        notes.push(format!(
            "{}: {} members that are neither per-class tars nor their images ignored (the first: {})",
            train.display(),
            loose.len(),
            loose[0]
        ));
    }
    let mut archives = vec![SourceArchive {
        path: train.to_path_buf(),
        nested: true,
    }];
    if let (Some(val), Some(kit)) = (val, &kit) {
        archives.push(SourceArchive {
            path: val.to_path_buf(),
            nested: false,
        });
        let (mut unlabelled, mut ignored) = (0usize, 0usize);
        walk::walk(val, false, &mut |_| false, &mut |m, _| {
            if m.kind != Kind::File || MemTree::is_hidden_path(&m.name) {
                return Ok(Flow::Go);
            }
            let base = m.name.rsplit('/').next().unwrap_or(&m.name).to_string();
            match kit.val_wnid(&base) {
                Some(wnid) => tree.add(&format!("val/{wnid}/{base}"), m.size, origin(&m, 1)),
                None if has_image_extension(&base) => unlabelled += 1,
                None => ignored += 1,
            }
            Ok(Flow::Go)
        })?;
        if unlabelled > 0 {
            notes.push(format!(
                "val: {unlabelled} images without a label in {} ignored",
                devkit
                    .map(Path::display)
                    .map(|d| d.to_string())
                    .unwrap_or_default()
            ));
        }
        if ignored > 0 {
            notes.push(format!(
                "val: {ignored} files without an image extension ignored"
            ));
        }
    }
    if let Some(kit) = &kit {
        let mut lines: Vec<String> = kit
            .words
            .iter()
            .map(|(w, words)| format!("{w} {words}"))
            .collect();
        lines.sort();
        tree.add_text("LOC_synset_mapping.txt", lines.join("\n"));
    }
    tree.finish();
    let mut plan = discover_tree(&tree, val_fraction, seed, archives)?;
    plan.notes.extend(notes);
    Ok(plan)
}
