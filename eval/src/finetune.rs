//! Semi-supervised fine-tuning of the whole network on a labelled fraction.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use fnc_augment::{EngineConfig, Loader, Recipe, Sampler};
use fnc_formats::SplitReader;
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use crate::error::EvalError;
use crate::linear::{accuracy, Accuracy};
use crate::source::Source;

/// Options of fine-tuning.
#[derive(Debug, Clone)]
pub struct FinetuneConfig {
    /// Epochs over the labelled subset (default 30).
    pub epochs: usize,
    /// Images per step (default 64, at most the subset size).
    pub batch_size: usize,
    /// Peak learning rate of SGD (momentum 0.9, cosine) (default 0.05).
    pub lr: f64,
    pub seed: u64,
    /// Start from a random encoder instead of the checkpoint (the baseline).
    pub random_init: bool,
}

/// A balanced, seeded subset: `fraction` of each class (at least one image).
pub fn balanced_subset(
    split: &SplitReader,
    fraction: f64,
    seed: u64,
) -> Result<Vec<u64>, EvalError> {
    let mut by_class: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for i in 0..split.len() {
        let r = split.get_unverified(i).map_err(|e| EvalError::Input {
            what: "--shards".into(),
            detail: e.to_string(),
        })?;
        by_class.entry(r.label).or_default().push(i);
    }
    let mut out = Vec::new();
    for (label, items) in by_class {
        let perm = Sampler::permutation(
            items.len() as u64,
            seed ^ (label as u64).wrapping_mul(0x9e37_79b9),
            0,
        );
        let take = ((items.len() as f64 * fraction).round() as usize).clamp(1, items.len());
        out.extend(perm.iter().take(take).map(|&k| items[k as usize]));
    }
    out.sort();
    Ok(out)
}

/// The records named in a subset file (one image name per line, e.g. the
/// reference's `imagenet_subsets/1percent.txt`), matched on file name or stem.
pub fn named_subset(split: &SplitReader, file: &Path) -> Result<Vec<u64>, EvalError> {
    let text = std::fs::read_to_string(file).map_err(|e| EvalError::Input {
        what: format!("--subset {}", file.display()),
        detail: e.to_string(),
    })?;
    let wanted: HashSet<String> = text
        .lines()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .map(|l| stem(l).to_string())
        .collect();
    let mut out = Vec::new();
    for i in 0..split.len() {
        let r = split.get_unverified(i).map_err(|e| EvalError::Input {
            what: "--shards".into(),
            detail: e.to_string(),
        })?;
        let file_name = r.name.rsplit('/').next().unwrap_or(r.name);
        if wanted.contains(stem(file_name)) {
            out.push(i);
        }
    }
    if out.is_empty() {
        return Err(EvalError::Input {
            what: format!("--subset {}", file.display()),
            detail: format!("none of its {} names is in the train split", wanted.len()),
        });
    }
    Ok(out)
}

fn stem(name: &str) -> &str {
    name.rsplit_once('.').map(|(s, _)| s).unwrap_or(name)
}

/// Fine-tunes encoder + linear classifier on `subset` of train, returns val accuracy.
pub fn finetune(
    src: &Source,
    shards: &Path,
    subset: Vec<u64>,
    cfg: &FinetuneConfig,
    device: Device,
) -> Result<Accuracy, EvalError> {
    let ds = crate::features::open_dataset(shards)?;
    let classes = ds.manifest().classes.len() as i64;
    let train = Arc::new(ds.split("train").map_err(|e| EvalError::Input {
        what: format!("--shards {}", shards.display()),
        detail: e.to_string(),
    })?);
    let val = ds.split("val").map_err(|e| EvalError::Input {
        what: format!("--shards {}", shards.display()),
        detail: e.to_string(),
    })?;
    let mut tcfg = src.config.clone();
    tcfg.seed = cfg.seed;
    let mut vs = nn::VarStore::new(device);
    let model = fnc_train::build_model(&vs, &tcfg);
    let classifier = nn::linear(
        vs.root() / "classifier",
        tcfg.arch.feature_dim(),
        classes,
        Default::default(),
    );
    if !cfg.random_init {
        // The checkpoint has no classifier.
        src.checkpoint
            .restore_model_except(&mut vs, tcfg.arch, &["classifier."])?;
    }
    let n = subset.len();
    let batch = cfg.batch_size.min(n).max(1);
    let recipe = Recipe {
        jitter_p: 0.0,
        grey_p: 0.0,
        blur_p: 0.0,
        ..Recipe::default()
    };
    let engine = EngineConfig::builder()
        .batch_size(batch)
        .support(0)
        .size(tcfg.image_size)
        .seed(cfg.seed)
        .recipe(recipe)
        .subset(Arc::new(subset))
        .build()?;
    let mut loader = Loader::start(train, engine, Sampler::new(n as u64, cfg.seed, 0, 1))?;
    let mut opt = nn::Sgd {
        momentum: 0.9,
        nesterov: true,
        ..Default::default()
    }
    .build(&vs, cfg.lr)?;
    let total = (cfg.epochs * (n / batch).max(1)).max(1);
    for step in 0..total {
        let b = loader.next_batch().ok_or_else(|| EvalError::Input {
            what: "fine-tuning".into(),
            detail: "the engine stopped".into(),
        })??;
        let side = b.groups[0].side as i64;
        let x = Tensor::from_slice(b.groups[0].view(0))
            .view([batch as i64, side, side, 3])
            .to_device(device);
        let y = Tensor::from_slice(&b.labels.iter().map(|&l| l as i64).collect::<Vec<_>>())
            .to_device(device);
        let logits = classifier.forward(&model.features(&fnc_train::normalise(&x), true));
        let loss = logits.cross_entropy_for_logits(&y);
        opt.set_lr(fnc_train::cosine(step as i64, total as i64, cfg.lr));
        opt.backward_step(&loss);
    }
    drop(loader);
    let (vf, vl) = fnc_train::extract_features(&model, &val, tcfg.image_size, 256, device)?;
    let logits = tch::no_grad(|| classifier.forward(&vf.to_device(device)))
        .to_device(Device::Cpu)
        .to_kind(Kind::Float);
    Ok(accuracy(&logits, &vl))
}
