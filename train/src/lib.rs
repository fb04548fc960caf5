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
mod feed;
mod layers;
mod loss;
mod model;
mod momentum;
mod optim;
mod resnet;
mod run;

pub use config::{LrScaling, MemoryFormat, Precision, TrainConfig};
pub use features::{centre_crops, extract_features, knn_top1};
pub use loss::{
    fnc_loss, fnc_loss_memory, Aggregate, Anchors, LossConfig, LossError, LossOutput, MemoryBank,
    Strategy, SupportSet,
};
pub use model::{
    encoder, is_channels_last, normalise, normalise_as, projection_head, small_cnn,
    to_channels_last, Arch, Model, ProjectionHead, SmallCnn,
};
pub use momentum::Momentum;
pub use optim::{learning_rate, Optimizer, OptimizerKind};
pub use resnet::{resnet18, resnet50, ResNet};
pub use run::{
    bench_steps, build_model, export_encoder, latest_checkpoint, load_latest, parse_device, train,
    BenchTimes, StepMetrics, TrainError, TrainSummary,
};
