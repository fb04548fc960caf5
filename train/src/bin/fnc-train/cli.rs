//! fnc-train's command line: the flags (`resolve` merges and judges them).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use fnc_train::{
    Aggregate, Anchors, Arch, Detect, InitScheme, LossConfig, LrScaling, MemoryFormat,
    OptimizerKind, Precision, Strategy, SupportSet,
};

/// Pretrain an image encoder with the FNC loss (GPU when present, CPU otherwise).
#[derive(Debug, Parser)]
#[command(
    name = "fnc-train",
    version,
    args_conflicts_with_subcommands = true,
    // A flag given twice takes its last value (e.g. after a preset of flags).
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub train: TrainArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The FNC loss of a saved float32 embedding matrix (rows view-major: rows
    /// [v*B, (v+1)*B) are view v of images 0..B-1), printed as JSON.
    Loss {
        /// .npy file, float32 or float64, shape [V*B, d].
        #[arg(long)]
        embeddings: PathBuf,
        /// Views per image, V.
        #[arg(long)]
        views: i64,
        /// Optional .npy of B integer labels, for FN precision.
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Where to compute it: cpu, cuda or cuda:N (the GPU check compares
        /// the two) [default: cpu].
        #[arg(long, default_value = "cpu")]
        device: String,
        #[command(flatten)]
        loss: LossArgs,
        /// Print JSON (the only output format; accepted for symmetry).
        #[arg(long)]
        json: bool,
    },
    /// Time training steps of a model and loss on random views (no data loading),
    /// for comparison with a PyTorch eager step (bench/train_step.py).
    Bench {
        #[command(flatten)]
        train: Box<TrainArgs>,
        /// Untimed warm-up steps.
        #[arg(long, default_value_t = 1)]
        warmup: usize,
        /// Timed steps.
        #[arg(long, default_value_t = 3)]
        timed: usize,
    },
    /// The memory one device of a run would take (weights and optimiser,
    /// bank, batch, activations, loss), under each of --recompute,
    /// --micro-batch and --loss-block, and the cheapest setting that fits:
    /// `fnc-train plan --config configs/fnc-paper.toml --nproc 8
    /// --device-memory 141G`. Takes the training flags.
    Plan {
        #[command(flatten)]
        train: Box<TrainArgs>,
        /// Ranks of the run, one device each [default: --nproc-per-node, or 1].
        #[arg(long, value_name = "N")]
        nproc: Option<usize>,
        /// Memory per device, e.g. 80G, 141G, 24GiB, 512M (G = 10^9, GiB =
        /// 2^30) [default: with --device cpu, or auto on a machine without
        /// CUDA, this machine's memory; a size given with --device auto plans
        /// for CUDA devices].
        #[arg(long, value_name = "SIZE")]
        device_memory: Option<String>,
    },
    /// Write the encoder of a run's latest checkpoint as safetensors with
    /// torchvision ResNet names (load with `resnet50().load_state_dict` after
    /// dropping `fc`).
    Export {
        /// Run directory.
        #[arg(long)]
        run: PathBuf,
        /// Output file [default: RUN/encoder.safetensors].
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct LossArgs {
    /// Softmax temperature [default: 0.1].
    #[arg(long)]
    pub temperature: Option<f64>,
    /// none (SimCLR / multi-view NT-Xent), elimination, or attraction [default: attraction].
    #[arg(long, value_enum)]
    pub fn_strategy: Option<Strategy>,
    /// How similarities to the support set are combined [default: max].
    #[arg(long, value_enum)]
    pub fn_aggregate: Option<Aggregate>,
    /// Top-k filter of false-negative detection; 0 = off [default: 10].
    #[arg(long)]
    pub fn_topk: Option<i64>,
    /// Similarity threshold of detection, or `none` [default: 0.7].
    #[arg(long)]
    pub fn_threshold: Option<String>,
    /// Anchor views: all, or main (views 0 and 1) [default: all].
    #[arg(long, value_enum)]
    pub fn_anchors: Option<Anchors>,
    /// Support set for detection: all views, or support views only [default: all].
    #[arg(long, value_enum)]
    pub fn_support: Option<SupportSet>,
    /// Where F_i comes from: support (the method) or oracle (the candidates
    /// sharing the image's label: the upper bound; the only use of labels by
    /// the loss) [default: support].
    #[arg(long, value_enum)]
    pub fn_detect: Option<Detect>,
    /// Oracle only: keep the same-label candidates that --fn-topk and
    /// --fn-threshold keep when they rank them by support-set similarity, so
    /// |F_i| stays comparable to detection's [default: false].
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub fn_oracle_filter: Option<bool>,
    /// Oracle only: the share P of each F_i that is right; 1 - P of it is
    /// replaced by random candidates of other labels, |F_i| kept [default: 1].
    #[arg(long, value_name = "P")]
    pub fn_oracle_precision: Option<f64>,
    /// Anchor rows whose scores against all keys are computed at a time
    /// (their loss and gradient, then the next rows'): bounds the loss's
    /// memory without changing its value; 0 = all at once [default: as many
    /// as fit in about 1 GiB].
    #[arg(long, value_name = "R", allow_negative_numbers = true)]
    pub loss_block: Option<i64>,
    /// The first step (as logged, from 1) that cancels false negatives; the
    /// steps before it are exactly those of --fn-strategy none (detection
    /// still measured): FNC switched on once the encoder can detect
    /// [default: 1].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub fn_start_step: Option<u64>,
}

impl LossArgs {
    pub fn apply(&self, c: &mut LossConfig) -> Result<()> {
        if let Some(v) = self.temperature {
            c.temperature = v;
        }
        if let Some(v) = self.fn_strategy {
            c.strategy = v;
        }
        if let Some(v) = self.fn_aggregate {
            c.aggregate = v;
        }
        if let Some(v) = self.fn_start_step {
            c.start_step = v;
        }
        if let Some(v) = self.fn_topk {
            c.topk = v;
        }
        if let Some(v) = &self.fn_threshold {
            c.threshold = if v == "none" {
                None
            } else {
                Some(
                    v.parse()
                        .with_context(|| format!("--fn-threshold {v:?}: a number or `none`"))?,
                )
            };
        }
        if let Some(v) = self.fn_anchors {
            c.anchors = v;
        }
        if let Some(v) = self.fn_support {
            c.support_set = v;
        }
        if let Some(v) = self.fn_detect {
            c.detect = v;
        }
        if let Some(v) = self.fn_oracle_filter {
            c.oracle_filter = v;
        }
        if let Some(v) = self.fn_oracle_precision {
            c.oracle_precision = v;
        }
        if let Some(v) = self.loss_block {
            c.block = Some(v);
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Dataset directory written by fnc-ingest [default: out].
    #[arg(long)]
    pub shards: Option<PathBuf>,
    /// Run directory [default: runs/<time>-<arch>-<strategy>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A config TOML (as written to a run directory, or a preset such as
    /// configs/fnc-paper.toml); flags override it; unknown keys are an error.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue the run in --out from its latest complete checkpoint (its
    /// config.toml applies; only --steps, --epochs, --checkpoint-every,
    /// --knn-every, --workers, --max-bad-records, --dist-timeout,
    /// --recompute, --loss-block and --overlap-grads may change); with no
    /// checkpoint yet the run starts over.
    #[arg(long)]
    pub resume: bool,
    /// Continue the run from this checkpoint directory of it (e.g. an older
    /// complete one, when the latest is damaged); its metrics are cut back
    /// to that step.
    #[arg(long, value_name = "CHECKPOINT", conflicts_with = "resume")]
    pub resume_from: Option<PathBuf>,
    /// Start a new run (in --out) from another run's latest complete
    /// checkpoint: weights, optimiser, step and sampler position, its log up
    /// to there copied in. A branch may change the --fn-* options (FNC arms
    /// branching from a SimCLR run) and what may change on resume, nothing
    /// else.
    #[arg(long, value_name = "RUN", conflicts_with_all = ["resume", "resume_from"])]
    pub init_from: Option<PathBuf>,
    /// Encoder: small, resnet18, resnet50 [default: resnet50].
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
    /// Main view side in pixels [default: 224].
    #[arg(long)]
    pub image_size: Option<u32>,
    /// Support views per image [default: 8].
    #[arg(long)]
    pub support: Option<usize>,
    /// Support view side in pixels [default: --image-size, as the reference's
    /// support views have the main views' size].
    #[arg(long)]
    pub support_size: Option<u32>,
    /// Images per step [default: 256].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Training length in epochs [default: 100].
    #[arg(long)]
    pub epochs: Option<f64>,
    /// Training length in steps (overrides --epochs).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Stop after step K, checkpointed there, with the schedule of the full
    /// --steps/--epochs: `--resume` continues to the end, and `--init-from`
    /// branches start there (FNC arms from the middle of a SimCLR run).
    #[arg(long, value_name = "K")]
    pub stop_at_step: Option<u64>,
    /// Base learning rate, scaled by --lr-scaling [default: 0.1].
    #[arg(long)]
    pub lr: Option<f64>,
    /// sqrt (lr * sqrt(batch)), linear (lr * batch / 256) or none [default: sqrt].
    #[arg(long, value_enum)]
    pub lr_scaling: Option<LrScaling>,
    /// lars, sgd or adamw [default: lars].
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// Weight decay (not on biases and BatchNorm) [default: 1e-4].
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Warm-up length in epochs [default: 10].
    #[arg(long)]
    pub warmup_epochs: Option<f64>,
    /// Augmentation worker threads, 0 = one per core [default: 0].
    #[arg(long)]
    pub workers: Option<usize>,
    /// auto (CUDA when available), cpu, cuda or cuda:N [default: auto].
    #[arg(long)]
    pub device: Option<String>,
    /// auto (bf16 on CUDA, fp32 on the CPU), fp32 or bf16 (convolutions and
    /// linear layers in bfloat16, float32 master weights) [default: auto].
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
    /// Layout of images, activations and convolution weights: channels-last
    /// or contiguous (NCHW) [default: channels-last].
    #[arg(long, value_enum)]
    pub memory_format: Option<MemoryFormat>,
    /// Weight initialisation: torchvision, or reference (the official code's:
    /// variance-scaling convolutions, zero last BatchNorm scale per residual
    /// block, head weights N(0, 0.01), no shift on the head's last
    /// BatchNorm) [default: torchvision].
    #[arg(long, value_enum)]
    pub init: Option<InitScheme>,
    /// Semantics of the view ops: torchvision (RandomResizedCrop, antialiased
    /// bilinear resize, contrast and saturation as blends with grey, reflect-padded
    /// blur), or reference (the official TF code's: sample_distorted_bounding_box
    /// crops, bicubic resize, per-channel contrast, HSV saturation, zero-padded
    /// blur, float throughout) [default: torchvision].
    #[arg(long, value_name = "IMPL")]
    pub augment_impl: Option<fnc_augment::AugmentImpl>,
    /// RandAugment after the colour distortion, as LAYERS,MAGNITUDE (the
    /// reference's use_randaugment is 2,7; magnitude 0..=10), or off; greyscale
    /// then follows it as in the reference [default: off].
    #[arg(long, value_name = "L,M")]
    pub randaugment: Option<String>,
    /// Seed of the model, the sampler and every augmentation [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Checkpoint every N steps (and at the end) [default: 500].
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Weighted k-NN top-1 on the val split every N steps, logged in
    /// metrics.jsonl; 0 = off [default: 0].
    #[arg(long)]
    pub knn_every: Option<u64>,
    /// Memory variant: a FIFO bank of N x batch momentum-encoder embeddings
    /// serves detection and negatives (the reference uses 16); N must be at
    /// least the number of anchor views; 0 = off, in-batch negatives
    /// [default: 0].
    #[arg(long, value_name = "N")]
    pub memory: Option<usize>,
    /// EMA decay of the momentum encoder of --memory [default: 0.999].
    #[arg(long)]
    pub ema_decay: Option<f64>,
    /// Records that fail to decode (corrupt data, a damaged shard) which are
    /// replaced by another record, counted in metrics.jsonl and named once each,
    /// before the run stops; 0 = stop at the first [default: 0].
    #[arg(long, value_name = "N")]
    pub max_bad_records: Option<u64>,
    /// Keep only segment boundaries (the stem, each residual block, the
    /// head) in the forward and recompute each segment in the backward: the
    /// same step (loss, gradients, BatchNorm statistics) in a fraction of the
    /// activation memory, for about one more forward [default: false].
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub recompute: Option<bool>,
    /// Embed M images (per rank) at a time without gradient, compute the loss
    /// and its gradient over the whole batch once, then run each chunk again
    /// with gradient (an embedding-gradient cache): the loss, negatives and
    /// detection are the whole batch's, but BatchNorm normalises each chunk
    /// with its own statistics (with --sync-bn, chunk c of every rank
    /// together): the "ghost BatchNorm" of data parallelism without
    /// synchronised BatchNorm; running statistics are updated once per chunk.
    /// 0 = the whole batch at once [default: 0].
    #[arg(long, value_name = "M")]
    pub micro_batch: Option<usize>,
    /// In a data-parallel run, start summing each bucket of gradients over
    /// the ranks as soon as the backward has finished it, while it goes on
    /// through the earlier layers; false: all of them after the backward
    /// (the same sums, later) [default: true].
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub overlap_grads: Option<bool>,
    /// Write TensorBoard events (RUN/events.out.tfevents.*: every scalar of
    /// metrics.jsonl, the config, the augmentation sheet, the report at each
    /// checkpoint) for `tensorboard --logdir runs/`; may change on resume
    /// [default: true].
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub tensorboard: Option<bool>,
    #[command(flatten)]
    pub loss: LossArgs,
    /// Data-parallel training on this machine: spawn N ranks of this command
    /// (Gloo on the CPU, NCCL on GPUs, rank r on cuda:r); --batch-size is the
    /// global batch. Multi-machine runs use a launcher instead (torchrun
    /// --no-python, or srun): the RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/
    /// MASTER_PORT environment (or Slurm's) makes a process one rank
    /// [default: 1].
    #[arg(long, value_name = "N")]
    pub nproc_per_node: Option<usize>,
    /// Rendezvous port of --nproc-per-node [default: a free port].
    #[arg(long)]
    pub master_port: Option<u16>,
    /// Collective library: auto (NCCL on CUDA, Gloo on the CPU), gloo or nccl
    /// [default: auto].
    #[arg(long, value_enum)]
    pub dist_backend: Option<fnc_train::dist::Backend>,
    /// Seconds a collective or the rendezvous may wait for the other ranks
    /// before the run stops with an error naming this rank [default: 300].
    #[arg(long, value_name = "SECS")]
    pub dist_timeout: Option<f64>,
    /// With several ranks, BatchNorm statistics over the global batch (the
    /// reference's global_bn); false = each rank's own [default: true].
    #[arg(long, value_name = "BOOL")]
    pub sync_bn: Option<bool>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Print the resolved config (defaults, then --config, then flags) as
    /// TOML, the form --config reads, and exit without training.
    #[arg(long)]
    pub print_config: bool,
}
