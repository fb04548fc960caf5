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
    pub val: (Tensor, Tensor),
    pub classes: i64,
}

fn cache_path(run: &Path, tag: &str, split: &str) -> PathBuf {
    run.join("features")
        .join(format!("{tag}-{split}.safetensors"))
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
    if !ds.manifest().splits.contains_key("val") {
        return Err(EvalError::Input {
            what: format!("--shards {}", shards.display()),
            detail: "has no val split to evaluate on (ingest with a val/ folder or --val-fraction)"
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
/// encoder of the same architecture, seeded), cached under `RUN/features/`.
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
    let model = fnc_train::build_model(&vs, &cfg);
    if random.is_none() {
        vs.load(src.checkpoint.join("model.safetensors"))
            .map_err(|e| EvalError::Input {
                what: format!("checkpoint {}", src.checkpoint.display()),
                detail: format!("does not fit a {} encoder: {e}", cfg.arch.name()),
            })?;
    }
    let mut out = Vec::new();
    for split in ["train", "val"] {
        let p = cache_path(&src.run, &tag, split);
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
    })
}
