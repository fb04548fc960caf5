//! The command line of `fnc-eval`, and its one judge ([`validate`]).

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

/// Linear evaluation protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    Fast,
    Reference,
}

/// Evaluate a trained encoder (the latest run under runs/ unless told otherwise).
#[derive(Debug, Parser)]
#[command(name = "fnc-eval", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Which {
    /// Run directory [default: the newest run under runs/ with a checkpoint].
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// A checkpoint directory (runs/NAME/checkpoints/step-N) instead of a run's latest.
    #[arg(long, conflicts_with = "run")]
    pub checkpoint: Option<PathBuf>,
    /// Dataset directory [default: the shards the run was trained on].
    #[arg(long)]
    pub shards: Option<PathBuf>,
    /// Also evaluate a randomly initialised encoder of the same architecture.
    #[arg(long)]
    pub baseline: bool,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Seed (classifier init and order; the baseline's random encoder)
    /// [default: 0]. k-NN draws nothing at random, so knn takes it only with
    /// --baseline.
    #[arg(long, allow_negative_numbers = true)]
    pub seed: Option<u64>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Linear probe on frozen features (centre crop 0.875; the whole image at
    /// 32 px and below, as the reference; no augmentation): top-1/top-5 on val
    /// (or test when there is no val).
    Linear {
        #[command(flatten)]
        which: Which,
        /// fast: a classifier on cached centre-crop features; reference:
        /// SimCLR's protocol (frozen encoder with BatchNorm in inference mode,
        /// random crop area 0.2-1 + flip, Nesterov SGD, zero-initialised
        /// classifier, batch 1024 or the split's size) [default: fast].
        #[arg(long, value_enum, default_value = "fast")]
        protocol: Protocol,
        /// Epochs of the linear classifier, 1..=10000 [default: 100 fast, 90 reference].
        #[arg(long, allow_negative_numbers = true)]
        epochs: Option<usize>,
        /// Peak learning rate in (0, 100], cosine-decayed [default: 0.1 fast
        /// (SGD, momentum 0.9); 0.005 x sqrt(batch) reference].
        #[arg(long, allow_negative_numbers = true)]
        lr: Option<f64>,
        /// Images (fast: feature vectors) per step, 1..=1048576 [default: 256
        /// fast, 1024 reference].
        #[arg(long, allow_negative_numbers = true)]
        batch_size: Option<usize>,
        /// The fast probe's weight decay: a value in [0, 1], or `auto`: the
        /// best of 0, 1e-6, 1e-5, 1e-4, 1e-3 by top-1 on a seeded 20% of train
        /// held out, then refitted on all of train; the choice is in the
        /// results [default: auto].
        #[arg(long, value_name = "auto|WD")]
        weight_decay: Option<String>,
    },
    /// Weighted k-NN (k = 20 and 200, temperature 0.07, as the training
    /// monitor) top-1 on frozen features.
    Knn {
        #[command(flatten)]
        which: Which,
    },
    /// Fine-tune the whole network on a labelled fraction, then top-1/top-5 on val.
    Finetune {
        #[command(flatten)]
        which: Which,
        /// fast: from the encoder's features, SGD with Nesterov momentum, crops
        /// of area 0.08-1, batch 64, 30 epochs; reference: the official
        /// semi-supervised protocol (from the projection head's first layer,
        /// LARS at 0.005 x sqrt(batch), no weight decay, crops of area 0.2-1,
        /// zero-initialised classifier, batch 1024 or the subset's size, 60
        /// epochs up to 5% of the labels and 30 above) [default: fast].
        #[arg(long, value_enum, default_value = "fast")]
        protocol: Protocol,
        /// Labelled fraction of train in (0, 1], balanced per class and seeded
        /// (e.g. 0.01, 0.1).
        #[arg(
            long,
            default_value_t = 0.1,
            conflicts_with = "subset",
            allow_negative_numbers = true
        )]
        fraction: f64,
        /// A file of image names to label instead (like the reference's
        /// imagenet_subsets/1percent.txt: one file name per line).
        #[arg(long)]
        subset: Option<PathBuf>,
        /// Projection-head layers kept under the classifier and fine-tuned: 0 =
        /// the encoder's features, 1 = the head's first layer (the reference's
        /// ft_proj_selector) [default: 0 fast, 1 reference].
        #[arg(long, allow_negative_numbers = true, value_name = "0|1")]
        from_head_layer: Option<usize>,
        /// Epochs over the labelled subset, 1..=10000 [default: 30 fast;
        /// reference 60 up to 5% of the labels, else 30].
        #[arg(long, allow_negative_numbers = true)]
        epochs: Option<usize>,
        /// Images per step, 1..=1048576 [default: 64 fast, 1024 reference].
        #[arg(long, allow_negative_numbers = true)]
        batch_size: Option<usize>,
        /// Peak learning rate in (0, 100], cosine-decayed [default: 0.05 fast;
        /// 0.005 x sqrt(batch) reference].
        #[arg(long, allow_negative_numbers = true)]
        lr: Option<f64>,
    },
    /// Several runs side by side: the flags that differ, final linear and k-NN
    /// accuracy as mean ± std over runs that differ only in --seed, FN
    /// precision/recall, and a PNG of each group's curves with their spread.
    Compare {
        /// Run directories.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Output PNG.
        #[arg(long, default_value = "compare.png")]
        out: PathBuf,
        /// Epochs of each run's linear probe, 1..=10000.
        #[arg(long, allow_negative_numbers = true, default_value_t = 100)]
        epochs: usize,
        /// auto, cpu, cuda or cuda:N.
        #[arg(long, default_value = "auto")]
        device: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Also write the JSON to this file (with the table printed), so one
        /// evaluation gives both.
        #[arg(long, value_name = "FILE")]
        json_out: Option<PathBuf>,
        /// Each arm against a baseline arm, runs paired by seed: per-seed
        /// differences, mean ± SE, a paired t-test over the seeds, a paired
        /// bootstrap over the evaluation images and McNemar's test per pair.
        #[arg(long)]
        paired: bool,
        /// The baseline arm of --paired: a group's label or one of its
        /// `flag=value`s [default: the first run's arm].
        #[arg(long, value_name = "ARM", requires = "paired")]
        baseline: Option<String>,
    },
    /// A PNG of loss, lr, k-NN accuracy, mean |F_i|, FN precision and recall over training.
    Report {
        /// Run directory.
        #[arg(long)]
        run: PathBuf,
        /// Output PNG [default: RUN/report.png].
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// The most epochs any command trains for.
const MAX_EPOCHS: usize = 10_000;
/// The most images (or feature vectors) per step.
const MAX_BATCH: usize = 1 << 20;
/// The largest peak learning rate.
const MAX_LR: f64 = 100.0;

/// An invalid flag value, named as the user types it.
fn bad(flag: &str, detail: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("invalid option {flag}: {detail}")
}

fn check_epochs(epochs: Option<usize>) -> Result<()> {
    match epochs {
        Some(e) if !(1..=MAX_EPOCHS).contains(&e) => {
            Err(bad("--epochs", format!("{e} is not in 1..={MAX_EPOCHS}")))
        }
        _ => Ok(()),
    }
}

fn check_batch(batch: Option<usize>) -> Result<()> {
    match batch {
        Some(b) if !(1..=MAX_BATCH).contains(&b) => Err(bad(
            "--batch-size",
            format!("{b} is not in 1..={MAX_BATCH}"),
        )),
        _ => Ok(()),
    }
}

/// `--weight-decay`: `None` for auto, or the value.
pub fn parse_weight_decay(text: &str) -> Result<Option<f64>> {
    if text == "auto" {
        return Ok(None);
    }
    match text.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(Some(v)),
        _ => Err(bad(
            "--weight-decay",
            format!("{text:?} is neither auto nor a number in [0, 1]"),
        )),
    }
}

fn check_lr(lr: Option<f64>) -> Result<()> {
    match lr {
        // NaN fails the comparison too.
        Some(lr) if !(lr > 0.0 && lr <= MAX_LR) => {
            Err(bad("--lr", format!("{lr} is not in (0, {MAX_LR}]")))
        }
        _ => Ok(()),
    }
}

/// The one judge of the command line: every numeric flag against its
/// documented range, and no flag the chosen command or mode would not use,
/// before any run is resolved or anything is written.
pub fn validate(command: &Command) -> Result<()> {
    match command {
        Command::Linear {
            epochs,
            lr,
            batch_size,
            weight_decay,
            protocol,
            ..
        } => {
            check_epochs(*epochs)?;
            check_lr(*lr)?;
            check_batch(*batch_size)?;
            if let Some(w) = weight_decay {
                if matches!(protocol, Protocol::Reference) {
                    return Err(bad(
                        "--weight-decay",
                        "is the fast probe's; the reference protocol has its own (none)",
                    ));
                }
                parse_weight_decay(w)?;
            }
        }
        Command::Knn { which } => {
            if let (Some(seed), false) = (which.seed, which.baseline) {
                return Err(bad(
                    "--seed",
                    format!(
                        "{seed}: knn draws nothing at random; the seed only initialises the \
                         --baseline encoder, so give --baseline or drop --seed"
                    ),
                ));
            }
        }
        Command::Finetune {
            fraction,
            subset,
            from_head_layer,
            epochs,
            batch_size,
            lr,
            ..
        } => {
            if subset.is_none() && !(*fraction > 0.0 && *fraction <= 1.0) {
                return Err(bad("--fraction", format!("{fraction} is not in (0, 1]")));
            }
            if let Some(v) = from_head_layer.filter(|&v| v > 1) {
                return Err(bad("--from-head-layer", format!("{v} is not 0 or 1")));
            }
            check_epochs(*epochs)?;
            check_batch(*batch_size)?;
            check_lr(*lr)?;
        }
        Command::Compare { epochs, .. } => check_epochs(Some(*epochs))?,
        Command::Report { .. } => {}
    }
    Ok(())
}
