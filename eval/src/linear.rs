//! The linear probe: a linear classifier on frozen, standardised features.

use serde::Serialize;
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// Options of the probe.
#[derive(Debug, Clone, Copy)]
pub struct LinearConfig {
    /// Passes over the train features (default 100).
    pub epochs: usize,
    /// Mini-batch size (default 256).
    pub batch_size: i64,
    /// Peak learning rate of SGD with momentum 0.9, cosine-decayed (default 0.1).
    pub lr: f64,
    /// Weight decay (default 0).
    pub weight_decay: f64,
    pub seed: u64,
}

impl Default for LinearConfig {
    fn default() -> Self {
        LinearConfig {
            epochs: 100,
            batch_size: 256,
            lr: 0.1,
            weight_decay: 0.0,
            seed: 0,
        }
    }
}

/// The weight decays the fast probe chooses among.
pub const WEIGHT_DECAYS: [f64; 5] = [0.0, 1e-6, 1e-5, 1e-4, 1e-3];
/// The share of the train features held out to choose the weight decay.
pub const HELD_OUT: f64 = 0.2;

/// How the probe's weight decay was chosen: each candidate's top-1 on a
/// seeded held-out slice of train, when fitted on the rest.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WeightDecayChoice {
    pub chosen: f64,
    /// Train images held out, and those the candidates were fitted on.
    pub held_out: usize,
    pub fitted_on: usize,
    /// (weight decay, held-out top-1 %) of each candidate.
    pub tried: Vec<(f64, f64)>,
}

/// Chooses the weight decay among `candidates` by the held-out top-1 of a
/// probe fitted on the rest of train ([`HELD_OUT`], drawn from `cfg.seed`);
/// the highest wins, the earlier candidate on a tie (the smaller decay, for
/// candidates in ascending order). Evaluation data is not touched.
pub fn choose_weight_decay(
    train: &(Tensor, Tensor),
    classes: i64,
    cfg: &LinearConfig,
    candidates: &[f64],
) -> Result<WeightDecayChoice, tch::TchError> {
    let n = train.0.size()[0];
    if n < 2 {
        // Nothing to hold out: the configured decay, untried.
        return Ok(WeightDecayChoice {
            chosen: cfg.weight_decay,
            held_out: 0,
            fitted_on: n.max(0) as usize,
            tried: Vec::new(),
        });
    }
    let held = ((n as f64 * HELD_OUT).round() as i64).clamp(1, n - 1);
    tch::manual_seed(cfg.seed as i64 ^ 0x5eed);
    let perm = Tensor::randperm(n, (Kind::Int64, Device::Cpu));
    let pick = |t: &Tensor, from: i64, len: i64| t.index_select(0, &perm.narrow(0, from, len));
    let fit = (
        pick(&train.0, held, n - held),
        pick(&train.1, held, n - held),
    );
    let hold = (pick(&train.0, 0, held), pick(&train.1, 0, held));
    let mut tried = Vec::with_capacity(candidates.len());
    let mut best = (f64::NEG_INFINITY, cfg.weight_decay);
    for &wd in candidates {
        let c = LinearConfig {
            weight_decay: wd,
            ..*cfg
        };
        let top1 = linear_probe(&fit, &hold, classes, &c)?.top1;
        tried.push((wd, top1));
        if top1 > best.0 {
            best = (top1, wd);
        }
    }
    Ok(WeightDecayChoice {
        chosen: best.1,
        held_out: held as usize,
        fitted_on: (n - held) as usize,
        tried,
    })
}

/// Top-1 and top-5 accuracy in percent.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Accuracy {
    pub top1: f64,
    pub top5: f64,
}

/// Top-1/top-5 of `logits` against `labels`.
pub fn accuracy(logits: &Tensor, labels: &Tensor) -> Accuracy {
    let n = labels.size()[0].max(1) as f64;
    let k = logits.size()[1].min(5);
    let (_, top) = logits.topk(k, 1, true, true);
    let hit = top.eq_tensor(&labels.unsqueeze(1));
    let top1 = hit.narrow(1, 0, 1).sum(Kind::Float).double_value(&[]) / n * 100.0;
    let top5 = hit.any_dim(1, false).sum(Kind::Float).double_value(&[]) / n * 100.0;
    Accuracy { top1, top5 }
}

/// Trains a linear classifier on `train` features (standardised with the train
/// mean and std, as the reference normalises features) and scores `val`.
pub fn linear_probe(
    train: &(Tensor, Tensor),
    val: &(Tensor, Tensor),
    classes: i64,
    cfg: &LinearConfig,
) -> Result<Accuracy, tch::TchError> {
    let logits = linear_probe_logits(train, val, classes, cfg)?;
    Ok(accuracy(&logits, &val.1))
}

/// [`linear_probe`]'s logits on `val` (`[N, classes]`), for per-image analyses.
pub fn linear_probe_logits(
    train: &(Tensor, Tensor),
    val: &(Tensor, Tensor),
    classes: i64,
    cfg: &LinearConfig,
) -> Result<Tensor, tch::TchError> {
    tch::manual_seed(cfg.seed as i64);
    let (tf, tl) = train;
    let (vf, _) = val;
    let mean = tf.mean_dim([0i64].as_slice(), true, Kind::Float);
    let std = tf.std_dim([0i64].as_slice(), true, true) + 1e-6;
    let x = (tf - &mean) / &std;
    let xv = (vf - &mean) / &std;
    let vs = nn::VarStore::new(Device::Cpu);
    let lin = nn::linear(vs.root() / "fc", x.size()[1], classes, Default::default());
    let mut opt = nn::Sgd {
        momentum: 0.9,
        wd: cfg.weight_decay,
        ..Default::default()
    }
    .build(&vs, cfg.lr)?;
    let n = x.size()[0];
    let steps_per_epoch = ((n + cfg.batch_size - 1) / cfg.batch_size).max(1);
    let total = (cfg.epochs as i64 * steps_per_epoch).max(1);
    let mut step = 0;
    for _ in 0..cfg.epochs {
        let perm = Tensor::randperm(n, (Kind::Int64, Device::Cpu));
        let mut s = 0;
        while s < n {
            let m = (n - s).min(cfg.batch_size);
            let idx = perm.narrow(0, s, m);
            let logits = lin.forward(&x.index_select(0, &idx));
            let loss = logits.cross_entropy_for_logits(&tl.index_select(0, &idx));
            opt.set_lr(fnc_train::cosine(step, total, cfg.lr));
            opt.backward_step(&loss);
            s += m;
            step += 1;
        }
    }
    Ok(tch::no_grad(|| lin.forward(&xv)))
}
