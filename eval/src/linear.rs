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
    tch::manual_seed(cfg.seed as i64);
    let (tf, tl) = train;
    let (vf, vl) = val;
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
    let logits = tch::no_grad(|| lin.forward(&xv));
    Ok(accuracy(&logits, vl))
}
