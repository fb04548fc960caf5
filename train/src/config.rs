//! The resolved training configuration: written to the run directory as TOML and
//! accepted back with `--config`.

use std::path::PathBuf;

use fnc_augment::{AugmentError, AugmentImpl, EngineConfig, OnError, RandAugment, Recipe};
use serde::{Deserialize, Serialize};

use crate::error::TrainError;
use crate::loss::LossConfig;
use crate::model::{Arch, InitScheme, ModelSpec};
use crate::optim::OptimizerKind;

mod compare;
pub use compare::flag_of_key;

/// The longest run, and warm-up, in epochs.
const MAX_EPOCHS: f64 = 1e6;
/// The most augmentation threads.
const MAX_WORKERS: usize = 1024;

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

/// Numeric precision of the forward and backward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// bf16 on CUDA, fp32 on the CPU.
    Auto,
    /// float32 throughout.
    Fp32,
    /// Convolutions and linear layers in bfloat16 against float32 master
    /// weights; BatchNorm statistics, the loss and the optimiser in float32.
    Bf16,
}

impl Precision {
    /// The dtype the model computes in on `device`.
    pub fn kind(self, device: tch::Device) -> tch::Kind {
        match self {
            Precision::Bf16 => tch::Kind::BFloat16,
            Precision::Auto if device.is_cuda() => tch::Kind::BFloat16,
            _ => tch::Kind::Float,
        }
    }
}

/// Memory layout of images, activations and convolution weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum MemoryFormat {
    /// NCHW.
    Contiguous,
    /// NHWC strides: what tensor cores want, and on the CPU oneDNN ran
    /// ResNet-50 ~20% faster this way (docs/benchmarks.md).
    ChannelsLast,
}

impl MemoryFormat {
    /// Whether `device` runs channels-last (the same answer on every device
    /// for now; the device is there for when they differ).
    pub fn channels_last(self, _device: tch::Device) -> bool {
        self == MemoryFormat::ChannelsLast
    }
}

/// Everything a training run is made of (SPEC §5 defaults). Missing keys in a
/// config file take their defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub shards: PathBuf,
    pub split: String,
    pub arch: Arch,
    pub proj_dim: i64,
    pub image_size: u32,
    pub support: usize,
    /// Side of the support views; `None` = the main views' side (as in the
    /// reference, whose support views have the main views' size).
    pub support_size: Option<u32>,
    pub batch_size: usize,
    /// Training length in epochs (used when `steps` is 0).
    pub epochs: f64,
    /// Training length in steps; 0 = from `epochs`.
    pub steps: u64,
    /// Stop after this step (`--stop-at-step`, checkpointed there), the run
    /// resumable to its full length with the schedule of its full length:
    /// where FNC arms branch from a SimCLR run; 0 = run to the end. Not kept
    /// by a resume.
    #[serde(skip_serializing_if = "is_zero")]
    pub stop_at_step: u64,
    pub lr: f64,
    pub lr_scaling: LrScaling,
    pub optimizer: OptimizerKind,
    pub weight_decay: f64,
    pub warmup_epochs: f64,
    /// Augmentation worker threads, 0 = one per core.
    pub workers: usize,
    /// auto | cpu | cuda | cuda:N
    pub device: String,
    pub precision: Precision,
    pub memory_format: MemoryFormat,
    /// How the model's weights are drawn.
    pub init: InitScheme,
    /// Whose semantics the view ops follow.
    pub augment_impl: AugmentImpl,
    /// RandAugment after the colour distortion; `None` = off.
    pub randaugment: Option<RandAugment>,
    /// In a data-parallel run, BatchNorm statistics over the global batch (the
    /// reference's `global_bn`); false = each rank's own.
    pub sync_bn: bool,
    pub seed: u64,
    pub checkpoint_every: u64,
    /// Weighted k-NN (k = 20) on the val split every N steps; 0 = off.
    pub knn_every: u64,
    /// Memory variant: a FIFO bank of `memory` x batch momentum-encoder
    /// embeddings used for detection and negatives; 0 = off (in-batch loss).
    pub memory: usize,
    /// EMA decay of the momentum encoder (memory variant).
    pub ema_decay: f64,
    /// Records that fail to decode which are replaced by another record (and
    /// counted, and named once each) before the run stops; 0 = stop at the first.
    pub max_bad_records: u64,
    /// Keep only segment boundaries in the forward and recompute each segment
    /// in the backward: the same step in less memory, for about one more
    /// forward.
    pub recompute: bool,
    /// Embed M images at a time (an embedding-gradient cache): the loss sees
    /// the whole batch, BatchNorm one chunk at a time; 0 = the whole batch
    /// at once.
    pub micro_batch: usize,
    /// In a data-parallel run, sum each bucket of gradients over the ranks as
    /// soon as the backward has finished it (while it goes on through the
    /// earlier layers); false: all of them after the backward.
    pub overlap_grads: bool,
    /// Rank 0 writes TensorBoard events into the run directory beside
    /// `metrics.jsonl`.
    pub tensorboard: bool,
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
            support_size: None,
            batch_size: 256,
            epochs: 100.0,
            steps: 0,
            stop_at_step: 0,
            lr: 0.1,
            lr_scaling: LrScaling::Sqrt,
            optimizer: OptimizerKind::Lars,
            weight_decay: 1e-4,
            warmup_epochs: 10.0,
            workers: 0,
            device: "auto".into(),
            precision: Precision::Auto,
            memory_format: MemoryFormat::ChannelsLast,
            init: InitScheme::Torchvision,
            augment_impl: AugmentImpl::Torchvision,
            randaugment: None,
            sync_bn: true,
            seed: 0,
            checkpoint_every: 500,
            knn_every: 0,
            memory: 0,
            ema_decay: 0.999,
            max_bad_records: 0,
            recompute: false,
            micro_batch: 0,
            overlap_grads: true,
            tensorboard: true,
            loss: LossConfig::default(),
        }
    }
}

impl TrainConfig {
    /// The config of logged step `step` (from 1): this one, or before
    /// `--fn-start-step` the same with `--fn-strategy none`.
    pub fn at_step(&self, step: u64) -> std::borrow::Cow<'_, TrainConfig> {
        match self.loss.at_step(step) {
            std::borrow::Cow::Borrowed(_) => std::borrow::Cow::Borrowed(self),
            std::borrow::Cow::Owned(loss) => std::borrow::Cow::Owned(TrainConfig {
                loss,
                ..self.clone()
            }),
        }
    }

    /// Peak learning rate after batch-size scaling.
    pub fn peak_lr(&self) -> f64 {
        let b = self.batch_size as f64;
        match self.lr_scaling {
            LrScaling::Sqrt => self.lr * b.sqrt(),
            LrScaling::Linear => self.lr * b / 256.0,
            LrScaling::None => self.lr,
        }
    }

    /// The model of this run on `device`.
    pub fn model_spec(&self, device: tch::Device) -> ModelSpec {
        ModelSpec {
            arch: self.arch,
            proj_dim: self.proj_dim,
            init: self.init,
            channels_last: self.memory_format.channels_last(device),
        }
    }

    /// Side of the support views: `support_size`, or the main side.
    pub fn support_side(&self) -> u32 {
        self.support_size.unwrap_or(self.image_size)
    }

    /// Views per image.
    pub fn views(&self) -> usize {
        2 + self.support
    }

    /// Checks every option on its own and against the others: the one place
    /// where a config is judged before anything runs. An error names the flag
    /// (its config key is the flag's name with `_` for `-`). What needs the
    /// data (the batch against the split's size) is [`Self::check_split`].
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |flag: &'static str, detail: String| Err(TrainError::Config { flag, detail });
        if self.batch_size < 2 {
            return bad(
                "--batch-size",
                format!(
                    "{} is too small: contrast needs 2 images at least",
                    self.batch_size
                ),
            );
        }
        // Checked even when --steps sets the length: the config is written
        // (and sent to the other ranks) with it.
        if !(self.epochs > 0.0 && self.epochs <= MAX_EPOCHS) {
            return bad(
                "--epochs",
                format!(
                    "{} is not a number in (0, {MAX_EPOCHS}] (or give --steps)",
                    self.epochs
                ),
            );
        }
        if self.workers > MAX_WORKERS {
            return bad(
                "--workers",
                format!("{} is not in 0..={MAX_WORKERS}", self.workers),
            );
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("--lr", format!("{} is not a positive number", self.lr));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad(
                "--weight-decay",
                format!("{} is not a number >= 0", self.weight_decay),
            );
        }
        if !(self.warmup_epochs >= 0.0 && self.warmup_epochs <= MAX_EPOCHS) {
            return bad(
                "--warmup-epochs",
                format!(
                    "{} is not a number in [0, {MAX_EPOCHS}]",
                    self.warmup_epochs
                ),
            );
        }
        if !(1..=65_536).contains(&self.proj_dim) {
            return bad(
                "proj_dim (config key)",
                format!("{} is not in 1..=65536", self.proj_dim),
            );
        }
        if self.checkpoint_every == 0 {
            return bad("--checkpoint-every", "must be at least 1".into());
        }
        if self.micro_batch > self.batch_size {
            return bad(
                "--micro-batch",
                format!(
                    "{} is more than the batch of {} (0 = the whole batch at once)",
                    self.micro_batch, self.batch_size
                ),
            );
        }
        crate::device::parse_device(&self.device)?;
        self.loss.validate(self.views() as i64)?;
        let anchor_views = self.loss.anchor_views(self.views() as i64) as usize;
        if self.memory > 0 && self.memory < anchor_views {
            return bad(
                "--memory",
                format!(
                    "{} x batch rows cannot hold one batch of {anchor_views} anchor views; \
                     use at least {anchor_views} (the reference uses 16)",
                    self.memory
                ),
            );
        }
        if self.memory > 0 {
            self.check_bank_fits(crate::device::host_memory())?;
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return bad(
                "--ema-decay",
                format!("{} is not in [0, 1)", self.ema_decay),
            );
        }
        // Sizes and the rest of the view recipe.
        self.engine_config(0)?;
        Ok(())
    }

    /// Bytes the memory bank of `--memory` takes: `memory x batch` rows of a
    /// float32 embedding and an int64 label (`None` when that overflows).
    pub fn bank_bytes(&self) -> Option<u64> {
        (self.memory as u64)
            .checked_mul(self.batch_size as u64)?
            .checked_mul(self.proj_dim as u64 * 4 + 8)
    }

    /// Refuses a bank larger than half of `memory` bytes (the machine's, when
    /// known), before anything is allocated.
    pub fn check_bank_fits(&self, memory: Option<u64>) -> Result<(), TrainError> {
        let limit = memory.map_or(u64::MAX, |m| m / 2);
        match self.bank_bytes() {
            Some(b) if b <= limit => Ok(()),
            bytes => Err(TrainError::Config {
                flag: "--memory",
                detail: format!(
                    "{} x {} rows of {} floats would take {}, more than half of this \
                     machine's {}",
                    self.memory,
                    self.batch_size,
                    self.proj_dim,
                    bytes.map_or("more than 2^64 bytes".into(), |b| format!("{b} bytes")),
                    memory.map_or("memory".into(), |m| format!("{m} bytes of memory"))
                ),
            }),
        }
    }

    /// Checks the config against a split of `records` images.
    pub fn check_split(&self, records: u64) -> Result<(), TrainError> {
        if self.batch_size as u64 > records {
            return Err(TrainError::Config {
                flag: "--batch-size",
                detail: format!(
                    "{} does not fit the {records} records of split {} (2..={records})",
                    self.batch_size, self.split
                ),
            });
        }
        Ok(())
    }

    /// The view recipe: SimCLR v2's strengths with this run's op semantics and
    /// RandAugment.
    pub fn recipe(&self) -> Recipe {
        Recipe {
            implementation: self.augment_impl,
            randaugment: self.randaugment,
            ..Recipe::default()
        }
    }

    /// The augmentation engine of this run with `workers` threads (0 = one per
    /// core): bad records are replaced when `max_bad_records` allows any.
    pub fn engine_config(&self, workers: usize) -> Result<EngineConfig, TrainError> {
        self.engine_config_for(workers, self.batch_size, 1)
    }

    /// [`Self::engine_config`] with `batch` images per batch (a rank's share of
    /// the global batch in a data-parallel run, where bad records are always
    /// replaced and counted over the ranks, so that every rank stops alike).
    pub fn engine_config_for(
        &self,
        workers: usize,
        batch: usize,
        ranks: usize,
    ) -> Result<EngineConfig, TrainError> {
        let on_error = if self.max_bad_records > 0 || ranks > 1 {
            OnError::Substitute
        } else {
            OnError::Fail
        };
        EngineConfig::builder()
            .batch_size(batch)
            .support(self.support)
            .size(self.image_size)
            .support_size(self.support_side())
            .seed(self.seed)
            .recipe(self.recipe())
            .threads(workers)
            .on_error(on_error)
            .build()
            .map_err(|e| match e {
                AugmentError::Config { flag, detail } => TrainError::Config {
                    flag: train_flag_of_engine(flag),
                    detail,
                },
                other => other.into(),
            })
    }
}

/// fnc-train's name for a flag of the augmentation engine's builder.
fn train_flag_of_engine(flag: &'static str) -> &'static str {
    match flag {
        "--size" => "--image-size",
        "--threads" => "--workers",
        "--seconds" | "--consumer-rate" | "--images" => "--config",
        other => other,
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
