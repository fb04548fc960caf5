//! The resolved training configuration: written to the run directory as TOML and
//! accepted back with `--config`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::loss::LossConfig;
use crate::model::Arch;
use crate::optim::OptimizerKind;

/// How the peak learning rate follows the batch size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LrScaling {
    /// lr * sqrt(batch) (the reference's default, with lr = 0.1).
    Sqrt,
    /// lr * batch / 256 (with lr = 0.3 in the reference).
    Linear,
    /// lr as given.
    None,
}

/// Everything a training run is made of (SPEC §5 defaults). Missing keys in a
/// config file take their defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    pub shards: PathBuf,
    pub split: String,
    pub arch: Arch,
    pub proj_dim: i64,
    pub image_size: u32,
    pub support: usize,
    pub support_size: u32,
    pub batch_size: usize,
    /// Training length in epochs (used when `steps` is 0).
    pub epochs: f64,
    /// Training length in steps; 0 = from `epochs`.
    pub steps: u64,
    pub lr: f64,
    pub lr_scaling: LrScaling,
    pub optimizer: OptimizerKind,
    pub weight_decay: f64,
    pub warmup_epochs: f64,
    /// Augmentation worker threads, 0 = one per core.
    pub workers: usize,
    /// auto | cpu | cuda | cuda:N
    pub device: String,
    pub seed: u64,
    pub checkpoint_every: u64,
    /// Weighted k-NN (k = 20) on the val split every N steps; 0 = off.
    pub knn_every: u64,
    pub loss: LossConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            shards: PathBuf::from("out"),
            split: "train".into(),
            arch: Arch::Resnet50,
            proj_dim: 128,
            image_size: 224,
            support: 8,
            support_size: 224,
            batch_size: 256,
            epochs: 100.0,
            steps: 0,
            lr: 0.1,
            lr_scaling: LrScaling::Sqrt,
            optimizer: OptimizerKind::Lars,
            weight_decay: 1e-4,
            warmup_epochs: 10.0,
            workers: 0,
            device: "auto".into(),
            seed: 0,
            checkpoint_every: 500,
            knn_every: 0,
            loss: LossConfig::default(),
        }
    }
}

impl TrainConfig {
    /// Peak learning rate after batch-size scaling.
    pub fn peak_lr(&self) -> f64 {
        let b = self.batch_size as f64;
        match self.lr_scaling {
            LrScaling::Sqrt => self.lr * b.sqrt(),
            LrScaling::Linear => self.lr * b / 256.0,
            LrScaling::None => self.lr,
        }
    }

    /// Views per image.
    pub fn views(&self) -> usize {
        2 + self.support
    }
}
