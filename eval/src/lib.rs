//! Evaluation of fnc encoders (SPEC §6): linear probe, weighted k-NN and
//! semi-supervised fine-tuning on frozen or fine-tuned features, each with a
//! random-initialisation baseline; a PNG report of a run's training curves; and
//! the comparison of runs grouped over seeds (`compare`).
//!
//! ```no_run
//! use fnc_eval::{features, linear_probe, resolve, LinearConfig};
//! # fn main() -> Result<(), fnc_eval::EvalError> {
//! let src = resolve(Some("runs/demo-fnc".as_ref()), None)?;
//! let f = features(&src, &src.config.shards, None, tch::Device::Cpu)?;
//! let acc = linear_probe(&f.train, &f.val, f.classes, &LinearConfig::default())?;
//! println!("top-1 {:.1}%", acc.top1);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod compare;
mod error;
mod features;
mod finetune;
mod linear;
mod paired;
mod report;
mod source;

pub use compare::{compare, compare_against, compare_plot, Comparison, Group, RunResult, Spread};
pub use error::EvalError;
pub use features::{features, open_dataset, FeatureSet};
pub use finetune::{
    balanced_subset, finetune, linear_reference, named_subset, FinetuneConfig,
    ReferenceLinearConfig,
};
pub use linear::{
    accuracy, choose_weight_decay, linear_probe, linear_probe_logits, Accuracy, LinearConfig,
    WeightDecayChoice, HELD_OUT, WEIGHT_DECAYS,
};
pub use paired::{paired, Paired, PairedDiff, BOOTSTRAP};
pub use report::{read_metrics, report};
pub use source::{latest_run, resolve, Source};
