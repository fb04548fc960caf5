//! fnc-train: pretraining with the FNC loss on libtorch (GPU when present, CPU
//! otherwise, same code).
//!
//! [`fnc_loss`] is the exact loss of SPEC §4 on a view-major embedding matrix;
//! [`Model`] an encoder with torchvision parameter names plus the projection
//! head; [`Optimizer`] LARS / SGD / AdamW with their state as named tensors;
//! [`train`] the loop that ties them to the augmentation engine; [`RunDir`] and
//! [`Checkpoint`] the run directory that training writes and evaluation reads.
//!
//! ```no_run
//! use fnc_train::{fnc_loss, LossConfig};
//! let z = tch::Tensor::randn([4 * 8, 16], (tch::Kind::Float, tch::Device::Cpu));
//! let out = fnc_loss(&z, 4, &LossConfig::default(), None).unwrap();
//! println!("loss {} mean |F_i| {}", out.loss.double_value(&[]), out.mean_fn);
//! ```
//!
//! Modules, each one concern: `config` (options and their validation),
//! `error`, `device`, `model`/`resnet`/`layers` (networks), `loss`,
//! `momentum` (memory variant), `optim` (optimisers and schedules), `step`
//! (a step's loss and gradients), `embed` and `recompute` (the embeddings of
//! a step: plain, `--recompute`, `--micro-batch`), `feed` (batches to tensors), `features`
//! (evaluation features, k-NN), `metrics`, `checkpoint` (run directory),
//! `bench`, `export`, `oom` (out of memory as an error), `dist`
//! (data-parallel runs on c10d: the C++ shim, the launch environment), and
//! `trainer` (the loop, which nothing else imports).
// `unsafe` lives only in `dist` (the FFI to the c10d shim), each block with a SAFETY note.
#![deny(unsafe_code)]

mod bad_records;
mod bench;
mod checkpoint;
mod config;
mod device;
pub mod dist;
mod embed;
mod error;
pub mod events;
mod export;
mod features;
mod feed;
mod host;
mod layers;
mod loss;
mod metrics;
mod model;
mod momentum;
mod monitor;
mod oom;
mod optim;
pub mod plan;
mod recompute;
pub mod report;
mod resnet;
mod saver;
mod start;
mod step;
#[cfg(test)]
mod step_tests;

/// libtorch's random generator is global: a unit test that seeds it and
/// draws holds this while it does, so tests in parallel threads draw alike.
#[cfg(test)]
pub(crate) fn generator_lock() -> std::sync::MutexGuard<'static, ()> {
    static GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());
    GENERATOR.lock().unwrap_or_else(|e| e.into_inner())
}
mod trainer;

pub use bench::{bench_steps, BenchTimes};
pub use checkpoint::{Checkpoint, CheckpointState, FileDigest, RunDir, Snapshot};
pub use config::{flag_of_key, LrScaling, MemoryFormat, Precision, TrainConfig};
pub use device::{cores_per_rank, host_memory, parse_device, rank_device, sync};
pub use error::TrainError;
pub use export::export_encoder;
pub use features::{
    eval_view, extract_features, extract_range, knn_neighbours, knn_top1, knn_vote,
    merge_neighbours, EVAL_CROP, KNN_K, KNN_T,
};
pub use loss::{
    fnc_loss, fnc_loss_grad, fnc_loss_memory, fnc_loss_memory_grad, fnc_loss_memory_shard,
    fnc_loss_shard, loss_block_bytes, loss_block_rows, Aggregate, Anchors, BankView, Detect,
    FnCounts, LossConfig, LossError, LossOutput, Shard, Strategy, SupportSet, LOSS_BUDGET,
};
pub use metrics::{read_metrics, MetricsLog, StepMetrics, TrainSummary};
pub use model::{
    build_model, encoder, is_channels_last, normalise, normalise_as, passes, project_groups,
    projection_head, reference_init, small_cnn, to_channels_last, Arch, Encoder, InitScheme, Model,
    ModelSpec, ProjectionHead, SmallCnn,
};
pub use momentum::{MemoryBank, Momentum};
pub use oom::{
    is_allocation_failure, is_guarded, panic_text, parse as parse_allocation_failure, Allocation,
};
pub use optim::{cosine, learning_rate, trainable, Optimizer, OptimizerKind};
pub use recompute::Segmented;
pub use resnet::{resnet18, resnet50, ResNet};
pub use start::{agree_config, Start};
pub use trainer::{train, train_parallel, Observer};
