//! The ILSVRC2012 devkit (`ILSVRC2012_devkit_t12.tar.gz`): which WNID each
//! `ILSVRC2012_ID` is (`data/meta.mat`) and the `ILSVRC2012_ID` of each
//! validation image (`data/ILSVRC2012_validation_ground_truth.txt`, line k for
//! `ILSVRC2012_val_{k:08}.JPEG`).

use std::collections::HashMap;
use std::path::Path;

use super::mat::{self, Value};
use super::walk;
use crate::error::IngestError;

const META: &str = "data/meta.mat";
const TRUTH: &str = "data/ILSVRC2012_validation_ground_truth.txt";
/// The devkit's files are read when no larger than this (meta.mat is 2.5 MB).
const MAX_FILE: u64 = 256 << 20;

/// What the devkit says about the classes and the validation images.
#[derive(Debug, Clone, Default)]
pub(crate) struct Devkit {
    /// The WNID of each leaf synset's `ILSVRC2012_ID`.
    pub wnid_of_id: HashMap<u32, String>,
    /// Each WNID's words (`tench, Tinca tinca`).
    pub words: HashMap<String, String>,
    /// `truth[k - 1]`: the `ILSVRC2012_ID` of validation image k.
    pub truth: Vec<u32>,
}

impl Devkit {
    /// The WNID of validation image `name` (`ILSVRC2012_val_00000001.JPEG`), if
    /// the devkit labels it.
    pub fn val_wnid(&self, name: &str) -> Option<&str> {
        let stem = Path::new(name).file_stem()?.to_str()?;
        let k: usize = stem.strip_prefix("ILSVRC2012_val_")?.parse().ok()?;
        let id = *self.truth.get(k.checked_sub(1)?)?;
        self.wnid_of_id.get(&id).map(String::as_str)
    }
}

fn bad(path: &Path, detail: String) -> IngestError {
    IngestError::BadSource {
        path: path.to_path_buf(),
        detail,
    }
}

/// Reads the devkit archive at `path` (tar.gz or tar).
pub(crate) fn read(path: &Path) -> Result<Devkit, IngestError> {
    let (mut meta, mut truth) = (None, None);
    walk::walk(
        path,
        false,
        &mut |m| m.size <= MAX_FILE && (m.name.ends_with(META) || m.name.ends_with(TRUTH)),
        &mut |m, bytes| {
            if let Some(b) = bytes {
                if m.name.ends_with(META) {
                    meta = Some((m.name, b));
                } else {
                    truth = Some((m.name, b));
                }
            }
            Ok(walk::Flow::Go)
        },
    )?;
    let missing = |what: &str| {
        bad(
            path,
            format!("holds no {what}; is it ILSVRC2012_devkit_t12.tar.gz?"),
        )
    };
    let (meta_name, meta) = meta.ok_or_else(|| missing(META))?;
    let (truth_name, truth) = truth.ok_or_else(|| missing(TRUTH))?;
    let mut kit = synsets(&meta).map_err(|e| bad(path, format!("{meta_name}: {e}")))?;
    let text = String::from_utf8_lossy(&truth);
    let lines: Vec<&str> = text.trim_end().lines().collect();
    for (n, line) in lines.iter().enumerate() {
        // Line k labels image k: a blank line inside would shift the rest.
        let line = line.trim();
        let id: u32 = line.parse().map_err(|_| {
            bad(
                path,
                format!(
                    "{truth_name} line {}: {line:?} is not an ILSVRC2012_ID",
                    n + 1
                ),
            )
        })?;
        if !kit.wnid_of_id.contains_key(&id) {
            return Err(bad(
                path,
                format!(
                    "{truth_name} line {}: ILSVRC2012_ID {id} is not a class of {meta_name}",
                    n + 1
                ),
            ));
        }
        kit.truth.push(id);
    }
    Ok(kit)
}

/// The leaf synsets (`num_children == 0`) of `meta.mat`'s `synsets` array.
fn synsets(bytes: &[u8]) -> Result<Devkit, String> {
    let vars = mat::parse(bytes)?;
    let (_, synsets) = vars
        .iter()
        .find(|(n, _)| n == "synsets")
        .ok_or("no variable `synsets`")?;
    let Value::Struct { fields, elements } = synsets else {
        return Err("`synsets` is not a struct array".into());
    };
    let mut kit = Devkit::default();
    for (i, el) in elements.iter().enumerate() {
        let get = |f: &str| {
            Value::field(fields, el, f).ok_or_else(|| format!("synsets({}) has no {f}", i + 1))
        };
        let children = get("num_children")?.scalar().unwrap_or(0.0);
        if children != 0.0 {
            continue;
        }
        let id = get("ILSVRC2012_ID")?
            .scalar()
            .filter(|v| *v >= 1.0 && v.fract() == 0.0 && *v <= u32::MAX as f64)
            .ok_or_else(|| format!("synsets({}).ILSVRC2012_ID is not a positive integer", i + 1))?
            as u32;
        let wnid = get("WNID")?
            .text()
            .filter(|w| !w.is_empty())
            .ok_or_else(|| format!("synsets({}).WNID is not text", i + 1))?
            .to_string();
        if let Some(words) = get("words").ok().and_then(Value::text) {
            kit.words.insert(wnid.clone(), words.to_string());
        }
        if let Some(other) = kit.wnid_of_id.insert(id, wnid.clone()) {
            return Err(format!("ILSVRC2012_ID {id} is both {other} and {wnid}"));
        }
    }
    if kit.wnid_of_id.is_empty() {
        return Err("`synsets` has no leaf synsets (num_children 0)".into());
    }
    Ok(kit)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// meta.mat files written by scipy (scripts/devkit_fixture.py): leaves
    /// n90000000..3 with ILSVRC2012_IDs 3, 1, 4, 2; one inner synset (ID 5).
    #[test]
    fn scipys_meta_mat_gives_the_leaf_synsets_compressed_or_not() {
        for bytes in [
            &include_bytes!("../../tests/data/meta-scipy.mat")[..],
            &include_bytes!("../../tests/data/meta-scipy-z.mat")[..],
        ] {
            let kit = synsets(bytes).unwrap();
            let mut ids: Vec<(u32, &str)> = kit
                .wnid_of_id
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect();
            ids.sort();
            assert_eq!(
                ids,
                vec![
                    (1, "n90000001"),
                    (2, "n90000003"),
                    (3, "n90000000"),
                    (4, "n90000002")
                ]
            );
            assert_eq!(kit.words["n90000000"], "synth zero, class 0");
        }
    }

    #[test]
    fn val_images_are_labelled_by_their_number() {
        let kit = Devkit {
            wnid_of_id: [(7, "n1".to_string()), (9, "n2".to_string())].into(),
            words: HashMap::new(),
            truth: vec![9, 7],
        };
        assert_eq!(kit.val_wnid("ILSVRC2012_val_00000001.JPEG"), Some("n2"));
        assert_eq!(kit.val_wnid("ILSVRC2012_val_00000002.JPEG"), Some("n1"));
        assert_eq!(kit.val_wnid("ILSVRC2012_val_00000003.JPEG"), None);
        assert_eq!(kit.val_wnid("ILSVRC2012_val_00000000.JPEG"), None);
        assert_eq!(kit.val_wnid("other.JPEG"), None);
    }
}
