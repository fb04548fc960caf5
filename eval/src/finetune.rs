//! Supervised training on top of an encoder, with augmented views: fine-tuning
//! the whole network on a labelled fraction, and SimCLR's linear-evaluation
//! protocol (a classifier on the frozen encoder, BatchNorm in inference mode).

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
use fnc_train::{Optimizer, OptimizerKind};

/// Options of fine-tuning. [`FinetuneConfig::fast`] is the quick default;
/// [`FinetuneConfig::reference`] the official code's semi-supervised protocol.
#[derive(Debug, Clone)]
pub struct FinetuneConfig {
    /// Epochs over the labelled subset (fast: 30; reference: 60 for 1% of the
    /// labels, 30 for 10%).
    pub epochs: usize,
    /// Images per step, at most the subset size (fast: 64; reference: 1024).
    pub batch_size: usize,
    /// Peak learning rate, cosine-decayed, no warm-up; `None` = the
    /// reference's 0.005 x sqrt(batch) (fast: 0.05).
    pub lr: Option<f64>,
    /// SGD with Nesterov momentum 0.9 (fast) or LARS (reference; no weight
    /// decay, the classifier exempt from adaptation as there).
    pub optimizer: OptimizerKind,
    /// Projection-head layers kept under the classifier and fine-tuned with
    /// the encoder: 0 = the encoder's features (fast), 1 = the head's first
    /// layer (the reference's `ft_proj_selector` 1).
    pub from_head_layer: usize,
    /// Area range of the random resized crop, with flips (fast: 0.08-1;
    /// reference: 0.2-1).
    pub crop_scale: (f64, f64),
    /// Start the classifier at zero (the reference's `zero_init_logits_layer`).
    pub zero_classifier: bool,
    pub seed: u64,
    /// Start from a random encoder instead of the checkpoint (the baseline).
    pub random_init: bool,
}

impl FinetuneConfig {
    /// Quick fine-tuning for small runs: SGD, 30 epochs, batch 64.
    pub fn fast() -> FinetuneConfig {
        FinetuneConfig {
            epochs: 30,
            batch_size: 64,
            lr: Some(0.05),
            optimizer: OptimizerKind::Sgd,
            from_head_layer: 0,
            crop_scale: Recipe::default().crop_scale,
            zero_classifier: false,
            seed: 0,
            random_init: false,
        }
    }

    /// The official semi-supervised fine-tuning for a labelled `fraction` of
    /// train: from the head's first layer, LARS at 0.005 x sqrt(1024), batch
    /// 1024, crops of area 0.2-1, zero-initialised classifier, 60 epochs up to
    /// 5% of the labels (the 1% subset) and 30 above (the 10% subset).
    pub fn reference(fraction: f64) -> FinetuneConfig {
        FinetuneConfig {
            epochs: if fraction <= 0.05 { 60 } else { 30 },
            batch_size: 1024,
            lr: None,
            optimizer: OptimizerKind::Lars,
            from_head_layer: 1,
            crop_scale: (0.2, 1.0),
            zero_classifier: true,
            seed: 0,
            random_init: false,
        }
    }
}

/// Options of the reference linear evaluation (SimCLR's protocol).
#[derive(Debug, Clone)]
pub struct ReferenceLinearConfig {
    /// Epochs over train (default 90).
    pub epochs: usize,
    /// Images per step (default 1024, at most the split's size).
    pub batch_size: usize,
    /// Peak learning rate of SGD with Nesterov momentum 0.9, cosine-decayed;
    /// `None` = 0.005 x sqrt(batch) (0.16 at 1024).
    pub lr: Option<f64>,
    pub seed: u64,
    /// Evaluate a random encoder instead of the checkpoint (the baseline).
    pub random_init: bool,
}

impl Default for ReferenceLinearConfig {
    fn default() -> Self {
        ReferenceLinearConfig {
            epochs: 90,
            batch_size: 1024,
            lr: None,
            seed: 0,
            random_init: false,
        }
    }
}

/// How the supervised loop treats the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tune {
    /// Train it with the classifier, BatchNorm in training mode.
    Full,
    /// Keep it fixed, BatchNorm in inference mode: only the classifier learns.
    Frozen,
}

/// One supervised run: what to train and how.
#[derive(Debug, Clone)]
struct Supervised {
    tune: Tune,
    epochs: usize,
    batch_size: usize,
    /// Peak learning rate; `None` = the reference's 0.005 x sqrt(batch).
    lr: Option<f64>,
    seed: u64,
    random_init: bool,
    /// Area range of the random resized crop (with flip; no colour, blur).
    crop_scale: (f64, f64),
    /// Start the classifier at zero (the reference's linear evaluation).
    zero_classifier: bool,
    /// Projection-head layers under the classifier.
    head_layers: usize,
    optimizer: OptimizerKind,
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
    if cfg.from_head_layer > 1 {
        return Err(EvalError::Input {
            what: "--from-head-layer".into(),
            detail: format!("{} is not 0 or 1", cfg.from_head_layer),
        });
    }
    let run = Supervised {
        tune: Tune::Full,
        epochs: cfg.epochs,
        batch_size: cfg.batch_size,
        lr: cfg.lr,
        seed: cfg.seed,
        random_init: cfg.random_init,
        crop_scale: cfg.crop_scale,
        zero_classifier: cfg.zero_classifier,
        head_layers: cfg.from_head_layer,
        optimizer: cfg.optimizer,
    };
    supervised(src, shards, Some(subset), &run, device)
}

/// SimCLR's linear evaluation: a zero-initialised linear classifier trained on
/// the frozen encoder (BatchNorm in inference mode) over random resized crops
/// (area 0.2-1) and flips of the whole train split, SGD with Nesterov
/// momentum, cosine decay, no weight decay; top-1/top-5 on the evaluation views of val (or test).
pub fn linear_reference(
    src: &Source,
    shards: &Path,
    cfg: &ReferenceLinearConfig,
    device: Device,
) -> Result<Accuracy, EvalError> {
    let run = Supervised {
        tune: Tune::Frozen,
        epochs: cfg.epochs,
        batch_size: cfg.batch_size,
        lr: cfg.lr,
        seed: cfg.seed,
        random_init: cfg.random_init,
        crop_scale: (0.2, 1.0),
        zero_classifier: true,
        head_layers: 0,
        optimizer: OptimizerKind::Sgd,
    };
    supervised(src, shards, None, &run, device)
}

/// The optimiser of a supervised run.
enum Step {
    Sgd(nn::Optimizer),
    Lars(Optimizer),
}

/// Trains a classifier (and with [`Tune::Full`] the encoder) on the records
/// `subset` of train (all of it when `None`), then scores val.
fn supervised(
    src: &Source,
    shards: &Path,
    subset: Option<Vec<u64>>,
    cfg: &Supervised,
    device: Device,
) -> Result<Accuracy, EvalError> {
    let ds = crate::features::open_dataset(shards)?;
    let classes = ds.manifest().classes.len() as i64;
    let split_err = |e: fnc_formats::FormatError| EvalError::Input {
        what: format!("--shards {}", shards.display()),
        detail: e.to_string(),
    };
    let train = Arc::new(ds.split("train").map_err(split_err)?);
    let val = ds
        .split(ds.manifest().evaluation_split().unwrap_or("val"))
        .map_err(split_err)?;
    let subset = subset.unwrap_or_else(|| (0..train.len()).collect());
    let mut tcfg = src.config.clone();
    tcfg.seed = cfg.seed;
    let mut vs = nn::VarStore::new(device);
    // Weights the checkpoint does not hold (the classifier) from the seed.
    tch::manual_seed(tcfg.seed as i64);
    let model = fnc_train::build_model(&vs, &tcfg.model_spec(device));
    let init = if cfg.zero_classifier {
        nn::LinearConfig {
            ws_init: nn::Init::Const(0.0),
            bs_init: Some(nn::Init::Const(0.0)),
            bias: true,
        }
    } else {
        Default::default()
    };
    // The head's hidden layers have the encoder's width.
    let classifier = nn::linear(
        vs.root() / "classifier",
        tcfg.arch.feature_dim(),
        classes,
        init,
    );
    if !cfg.random_init {
        // The checkpoint has no classifier.
        src.checkpoint
            .restore_model_except(&mut vs, tcfg.arch, &["classifier."])?;
    }
    if cfg.tune == Tune::Frozen {
        for (name, t) in vs.variables() {
            if !name.starts_with("classifier.") {
                let _ = t.set_requires_grad(false);
            }
        }
    }
    let n = subset.len();
    let batch = cfg.batch_size.min(n).max(1);
    let lr = cfg.lr.unwrap_or(0.005 * (batch as f64).sqrt());
    let recipe = Recipe {
        crop_scale: cfg.crop_scale,
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
    let mut opt = match cfg.optimizer {
        OptimizerKind::Lars => Step::Lars(
            Optimizer::new(OptimizerKind::Lars, fnc_train::trainable(&vs), 0.0)
                .exempt("classifier."),
        ),
        _ => Step::Sgd(
            nn::Sgd {
                momentum: 0.9,
                nesterov: true,
                ..Default::default()
            }
            .build(&vs, lr)?,
        ),
    };
    let train_mode = cfg.tune == Tune::Full;
    let total = (cfg.epochs * (n / batch).max(1)).max(1);
    for step in 0..total {
        let b = loader.next_batch().ok_or_else(|| EvalError::Input {
            what: "supervised training".into(),
            detail: "the engine stopped".into(),
        })??;
        let side = b.groups[0].side as i64;
        let x = Tensor::from_slice(b.groups[0].view(0))
            .view([batch as i64, side, side, 3])
            .to_device(device);
        let y = Tensor::from_slice(&b.labels.iter().map(|&l| l as i64).collect::<Vec<_>>())
            .to_device(device);
        let x = fnc_train::normalise(&x);
        let h = if train_mode {
            let f = model.features(&x, true);
            model.head.forward_layers(&f, cfg.head_layers, true)
        } else {
            tch::no_grad(|| model.features(&x, false))
        };
        let loss = classifier.forward(&h).cross_entropy_for_logits(&y);
        let lr_now = fnc_train::cosine(step as i64, total as i64, lr);
        match &mut opt {
            Step::Sgd(o) => {
                o.set_lr(lr_now);
                o.backward_step(&loss);
            }
            Step::Lars(o) => {
                let grads = o.gradients(&loss)?;
                o.step(&grads, lr_now);
            }
        }
    }
    drop(loader);
    let (vf, vl) = fnc_train::extract_features(&model, &val, tcfg.image_size, 256, device)?;
    let logits = tch::no_grad(|| {
        let h = model
            .head
            .forward_layers(&vf.to_device(device), cfg.head_layers, false);
        classifier.forward(&h)
    })
    .to_device(Device::Cpu)
    .to_kind(Kind::Float);
    Ok(accuracy(&logits, &vl))
}
