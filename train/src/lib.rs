//! fnc-train: pretraining with the FNC loss on libtorch (GPU when present, CPU
//! otherwise, same code).
//!
//! [`fnc_loss`] is the exact loss of SPEC §4 on a view-major embedding matrix;
//! [`Model`] an encoder with torchvision parameter names plus the projection
//! head; [`Optimizer`] LARS / SGD / AdamW with their state as named tensors.
//!
//! ```no_run
//! use fnc_train::{fnc_loss, LossConfig};
//! let z = tch::Tensor::randn([4 * 8, 16], (tch::Kind::Float, tch::Device::Cpu));
//! let out = fnc_loss(&z, 4, &LossConfig::default(), None).unwrap();
//! println!("loss {} mean |F_i| {}", out.loss.double_value(&[]), out.mean_fn);
//! ```
#![forbid(unsafe_code)]

mod config;
mod features;
mod loss;
mod model;
mod optim;
mod run;

pub use config::{LrScaling, TrainConfig};
pub use features::{centre_crops, extract_features, knn_top1};
pub use loss::{
    fnc_loss, Aggregate, Anchors, LossConfig, LossError, LossOutput, Strategy, SupportSet,
};
pub use model::{encoder, normalise, projection_head, small_cnn, Arch, Model};
pub use optim::{learning_rate, Optimizer, OptimizerKind};
pub use run::{
    bench_steps, build_model, export_encoder, latest_checkpoint, load_latest, parse_device, train,
    StepMetrics, TrainError, TrainSummary,
};
