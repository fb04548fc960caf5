//! Frozen features of a source (or of a random encoder), computed once and cached
//! next to the run.

use std::path::{Path, PathBuf};

use fnc_formats::Dataset;
use tch::{nn, Device, Tensor};

use crate::error::EvalError;
use crate::source::Source;

/// Train and val features with labels, and the number of classes.
#[derive(Debug)]
pub struct FeatureSet {
    pub train: (Tensor, Tensor),
    /// Features of the evaluation split (`val`, or `test` without one).
    pub val: (Tensor, Tensor),
    pub classes: i64,
    /// Which split `val` holds.
    pub eval_split: &'static str,
    /// The dataset the features are of.
    pub dataset_id: String,
}

/// What makes features differ besides the encoder: the dataset (its id and
/// the checksums of the split's shards, so re-ingested data is not confused
/// with the old), the split, the view side and the crop. Hashed into the
/// cache file's name.
fn cache_key(ds: &Dataset, split: &str, arch: &str, size: u32) -> String {
    let m = ds.manifest();
    let mut key = fnc_formats::Fingerprint::new();
    key.field(m.dataset_id.as_bytes())
        .field(split.as_bytes())
        .field(arch.as_bytes())
        .field(&size.to_le_bytes())
        .field(fnc_train::eval_view(size).describe().as_bytes());
    for sh in m.splits.get(split).map(|i| &i.shards[..]).unwrap_or(&[]) {
        key.field(sh.checksum.as_bytes());
    }
    key.hex()
}

fn cache_path(dir: &Path, tag: &str, split: &str, key: &str) -> PathBuf {
    dir.join(format!("{tag}-{split}-{key}.safetensors"))
}

fn load_cached(p: &Path) -> Option<(Tensor, Tensor)> {
    let named = Tensor::read_safetensors(p).ok()?;
    let get = |n: &str| {
        named
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, t)| t.shallow_clone())
    };
    Some((get("features")?, get("labels")?))
}

/// Opens the dataset and checks it has what evaluation needs.
pub fn open_dataset(shards: &Path) -> Result<Dataset, EvalError> {
    let ds = Dataset::open(shards).map_err(|e| EvalError::Input {
        what: format!("--shards {}", shards.display()),
        detail: e.to_string(),
    })?;
    if ds.manifest().evaluation_split().is_none() {
        return Err(EvalError::Input {
            what: format!("--shards {}", shards.display()),
            detail: "has no val or test split to evaluate on (ingest with a val/ or test/ folder of classes, or --val-fraction)"
                .into(),
        });
    }
    if ds.manifest().classes.len() < 2 {
        return Err(EvalError::Input {
            what: format!("--shards {}", shards.display()),
            detail: "needs labels of at least 2 classes".into(),
        });
    }
    Ok(ds)
}

/// Features of `src`'s checkpoint (or, with `random`, of a freshly initialised
/// encoder of the same architecture, seeded) on the images of `shards`,
/// cached in the run's features directory under a key of the checkpoint and
/// everything about the data that changes them.
pub fn features(
    src: &Source,
    shards: &Path,
    random: Option<u64>,
    device: Device,
) -> Result<FeatureSet, EvalError> {
    let ds = open_dataset(shards)?;
    let classes = ds.manifest().classes.len() as i64;
    let tag = match random {
        Some(seed) => format!("random-seed{seed}"),
        None => src.tag(),
    };
    let mut vs = nn::VarStore::new(device);
    let mut cfg = src.config.clone();
    if let Some(seed) = random {
        cfg.seed = seed;
    }
    // A random-init baseline is drawn from its seed.
    tch::manual_seed(cfg.seed as i64);
    let model = fnc_train::build_model(&vs, &cfg.model_spec(device));
    if random.is_none() {
        src.checkpoint.restore_model(&mut vs, cfg.arch)?;
    }
    let mut out = Vec::new();
    let eval_split = ds.manifest().evaluation_split().unwrap_or("val");
    for split in ["train", eval_split] {
        let key = cache_key(&ds, split, cfg.arch.name(), cfg.image_size);
        let p = cache_path(&src.run.features_dir(), &tag, split, &key);
        if let Some(c) = load_cached(&p) {
            out.push(c);
            continue;
        }
        let reader = ds.split(split).map_err(|e| EvalError::Input {
            what: format!("--shards {}", shards.display()),
            detail: e.to_string(),
        })?;
        let (f, l) = fnc_train::extract_features(&model, &reader, cfg.image_size, 256, device)?;
        if let Some(dir) = p.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        // A cache that cannot be written only costs time later.
        let _ = Tensor::write_safetensors(&[("features", &f), ("labels", &l)], &p);
        out.push((f, l));
    }
    let val = out.pop().ok_or_else(|| EvalError::Input {
        what: "features".into(),
        detail: "missing".into(),
    })?;
    let train = out.pop().ok_or_else(|| EvalError::Input {
        what: "features".into(),
        detail: "missing".into(),
    })?;
    Ok(FeatureSet {
        train,
        val,
        classes,
        eval_split,
        dataset_id: ds.manifest().dataset_id.clone(),
    })
}
