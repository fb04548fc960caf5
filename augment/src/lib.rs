//! The fnc augmentation engine: shard records in, batches of augmented views out.
//!
//! Per source image the engine decodes once, then makes `V = 2 + S` views (2 main,
//! S support), each with its own random draw derived from (seed, epoch, record
//! index, view index), so the same seed gives byte-identical batches whatever the
//! thread count. Views are written straight into preallocated uint8 NHWC batch
//! buffers, one per group of same-sized views (all V views when support and
//! main views have one side, else main and support), each view-major like the
//! loss's rows, which finished batches carry through a bounded queue and
//! give back to a pool when dropped. [`centre_crops`] makes the unaugmented
//! evaluation views.
//!
//! ```no_run
//! use std::sync::Arc;
//! use fnc_augment::{EngineConfig, Loader, Sampler};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ds = fnc_formats::Dataset::open("out")?;
//! let train = Arc::new(ds.split("train")?);
//! let cfg = EngineConfig::builder().batch_size(64).support(8).support_size(96).build()?;
//! let sampler = Sampler::new(train.len(), cfg.seed(), 0, 1);
//! let mut loader = Loader::start(train, cfg, sampler)?;
//! let batch = loader.next_batch().expect("running")?;
//! assert_eq!(batch.views(), 10);
//! assert_eq!(batch.groups[1].views, 8); // the 96 px support views, one buffer
//! # Ok(()) }
//! ```
//!
//! The recipe (SPEC §3): random resized crop (area U(0.08, 1), log-uniform aspect
//! 3/4..4/3, torchvision's 10 attempts and centre fallback) with a bilinear,
//! antialiased resize; flip p 0.5; colour distortion p 0.8 (brightness, contrast,
//! saturation, hue in random order, clipped after each); greyscale p 0.2; Gaussian
//! blur p 0.5 (kernel 10% of the side, odd; sigma U(0.1, 2)); solarize off.
// `unsafe` lives only in the intrinsics of `taps_avx2`, `resize_avx2`,
// `reference::hpass_avx512` and `reference::hpass_rows8`, each block with a
// SAFETY note (the dispatch and the JPEG decoder's are fnc-codec's).
#![deny(unsafe_code)]

mod blur;
mod decode;
mod engine;
mod error;
pub mod jitter;
pub mod ops;
mod params;
pub mod randaugment;
pub mod reference;
mod resize;
mod resize_avx2;
mod rng;
mod sampler;
mod sheet;
pub mod simd;
mod taps;
mod taps_avx2;
mod tiles;

pub use decode::decode_into;
pub use engine::{
    centre_crops, eval_views, make_views, Batch, EngineConfig, EngineConfigBuilder, EvalView,
    Loader, OnError, ViewGroup,
};
pub use error::AugmentError;
pub use params::{
    draw_crop, draw_crop_tf, draw_view, AugmentImpl, CropBox, Jitter, Recipe, ViewDraw,
};
pub use randaugment::{parse_randaugment, RandAugment};
pub use rng::ViewRng;
pub use sampler::{Sampler, SamplerState};
pub use sheet::contact_sheet;
