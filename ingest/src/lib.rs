//! Packing image trees into fnc shards, and the tools around them.
//!
//! [`ingest`] reads an ILSVRC2012 or ImageFolder tree, a tar or tar.gz of one, or
//! ImageNet's official archives without extracting them ([`discover`]), converts
//! every file per a [`StoragePolicy`] in parallel, shuffles each split once with a
//! seed and writes size-bounded shards, resuming an interrupted run. [`inspect`]
//! and [`verify`] read a finished dataset; [`synth`] writes the embedded default
//! dataset.
//!
//! ```no_run
//! use fnc_ingest::{ingest, IngestOptions, NoProgress};
//!
//! # fn main() -> Result<(), fnc_ingest::IngestError> {
//! let mut opts = IngestOptions::new("ILSVRC2012", "out");
//! opts.threads = 8;
//! let report = ingest(&opts, &NoProgress)?;
//! for s in &report.skipped {
//!     eprintln!("skipped {}: {}", s.path, s.reason);
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod archive;
mod convert;
mod error;
mod inspect;
mod jpeg;
mod layout;
mod options;
mod pipeline;
mod plan;
mod source;
mod synth;
mod tree;

pub use archive::{discover_source as discover, IMAGENET_DEVKIT, IMAGENET_TRAIN, IMAGENET_VAL};
pub use convert::{
    convert, encode_jpeg, resize_rgb, target_size, Converted, EncodingChoice, ResizeSide,
    StoragePolicy,
};
pub use error::IngestError;
pub use inspect::{inspect, verify, ClassCount, Inspection, SplitInspection, Stat, VerifyReport};
pub use jpeg::{probe as probe_jpeg, JpegInfo};
pub use options::IngestOptions;
pub use pipeline::{
    ingest, parse_encoding, IngestReport, NoProgress, Progress, Skipped, SplitReport, REPORT_FILE,
    SKIPPED_FILE, STATE_FILE,
};
pub use plan::{Layout, Origin, Plan, SourceArchive, SourceItem};
pub use synth::{render, synth, synth_class_name, synth_wnid, SynthOptions, SynthReport};
