//! The parallel engine: sampler -> decode once -> V views per image -> batch
//! buffers -> bounded queue, with buffers recycled through a pool.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use std::path::PathBuf;

use fnc_formats::{FormatError, SplitReader};
use rayon::prelude::*;

use crate::decode::decode_into;
use crate::error::AugmentError;
use crate::ops::{apply_view, Scratch};
use crate::params::draw_view;
use crate::rng::ViewRng;
use crate::sampler::{Sampler, SamplerState};

mod config;
mod eval_views;

pub use config::{EngineConfig, EngineConfigBuilder, OnError};
pub use eval_views::{centre_crops, eval_views, EvalView};

/// Consecutive views of one side for every image of a batch, as one buffer:
/// `[views * batch, side, side, 3]` uint8, NHWC, RGB, rows top to bottom,
/// view-major (rows `[k*B, (k+1)*B)` hold view `first + k` of every image),
/// so that a group becomes one tensor in one copy.
#[derive(Debug, Clone)]
pub struct ViewGroup {
    /// Index of the group's first view (0 for the main views, 2 for support).
    pub first: usize,
    /// Views in the group.
    pub views: usize,
    pub side: u32,
    pub data: Vec<u8>,
}

impl ViewGroup {
    /// Bytes of one image's view.
    pub fn image_len(&self) -> usize {
        (self.side * self.side * 3) as usize
    }

    /// View `first + k` of every image: `[batch, side, side, 3]`.
    pub fn view(&self, k: usize) -> &[u8] {
        let per_view = self.data.len() / self.views.max(1);
        &self.data[k * per_view..(k + 1) * per_view]
    }
}

/// A finished batch. Views come in groups of one side, each group view-major,
/// matching the FNC loss's row order: all V views in one group when the
/// support views have the main views' side, else the 2 main views, then the S
/// support views. Dropping it returns its buffers to the engine's pool.
#[derive(Debug)]
pub struct Batch {
    pub epoch: u64,
    /// Record indices (within the split) of the images.
    pub indices: Vec<u64>,
    pub labels: Vec<u32>,
    /// The view groups in view order (see [`Batch`]).
    pub groups: Vec<ViewGroup>,
    /// Sampler state after this batch: save it to resume right after it.
    pub sampler_after: SamplerState,
    /// Records that failed to decode and were replaced by another record
    /// ([`OnError::Substitute`]), each error naming its shard and record, in
    /// batch order.
    pub bad: Vec<AugmentError>,
    recycle: Option<Sender<Vec<ViewGroup>>>,
}

impl Batch {
    /// View `v` (0 and 1 main, then support) of every image: `[batch, side, side, 3]`.
    pub fn view(&self, v: usize) -> Option<&[u8]> {
        self.groups
            .iter()
            .find(|g| (g.first..g.first + g.views).contains(&v))
            .map(|g| g.view(v - g.first))
    }

    /// Views per image.
    pub fn views(&self) -> usize {
        self.groups.iter().map(|g| g.views).sum()
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if let Some(tx) = self.recycle.take() {
            let _ = tx.try_send(std::mem::take(&mut self.groups));
        }
    }
}

thread_local! {
    static WORK: RefCell<(Vec<u8>, Scratch)> = RefCell::new((Vec::new(), Scratch::default()));
}

/// Where record `index` of the split lives: its shard file and position.
fn locate(split: &SplitReader, index: u64) -> Result<(PathBuf, u64), AugmentError> {
    let (k, j) = split.locate(index)?;
    let shard = split
        .shards()
        .nth(k)
        .map(|s| s.path().to_path_buf())
        .unwrap_or_default();
    Ok((shard, j as u64))
}

/// An error about record `index`, naming its shard and record once.
fn record_error(split: &SplitReader, index: u64, detail: String) -> AugmentError {
    match locate(split, index) {
        Ok((shard, record)) => AugmentError::Record {
            shard,
            record,
            detail,
        },
        Err(e) => e,
    }
}

/// A failed read of record `index`: a record checksum mismatch becomes a
/// record error (the shard and record named once, not again in the detail);
/// other format errors already name their file.
fn read_error(split: &SplitReader, index: u64, e: FormatError) -> AugmentError {
    match e {
        FormatError::RecordChecksum {
            stored, computed, ..
        } => record_error(
            split,
            index,
            format!("checksum mismatch (stored {stored:08x}, computed {computed:08x})"),
        ),
        other => other.into(),
    }
}

/// Decodes record `index` once and writes its views into `slots` (one per view).
/// Returns the label.
pub fn make_views(
    split: &SplitReader,
    cfg: &EngineConfig,
    epoch: u64,
    index: u64,
    slots: &mut [&mut [u8]],
) -> Result<u32, AugmentError> {
    WORK.with(|w| {
        let (buf, scratch) = &mut *w.borrow_mut();
        let rec = split.get(index).map_err(|e| read_error(split, index, e))?;
        let (w, h) = decode_into(&rec, buf).map_err(|e| record_error(split, index, e))?;
        for (v, slot) in slots.iter_mut().enumerate() {
            let mut rng = ViewRng::new(cfg.seed, epoch, index, v as u64);
            let d = draw_view(&mut rng, w, h, &cfg.recipe);
            apply_view(buf, w, h, &d, cfg.view_side(v), slot, scratch)
                .map_err(|e| record_error(split, index, e))?;
        }
        Ok(rec.label)
    })
}

/// The empty view groups of a batch of `b` images under `cfg`: one group of
/// all V views when support and main views have one size (so the model can
/// take them in one pass), else the main views and the support views.
fn new_groups(cfg: &EngineConfig, b: usize) -> Vec<ViewGroup> {
    let groups = if cfg.support == 0 || cfg.support_size == cfg.size {
        vec![(0, cfg.views(), cfg.size)]
    } else {
        vec![(0, 2, cfg.size), (2, cfg.support, cfg.support_size)]
    };
    groups
        .into_iter()
        .map(|(first, views, side)| ViewGroup {
            first,
            views,
            side,
            data: vec![0u8; views * b * (side * side * 3) as usize],
        })
        .collect()
}

/// Fills `groups` with the views of the records in `indices`; returns the
/// errors of records that were substituted (in batch order).
fn fill_batch(
    split: &SplitReader,
    cfg: &EngineConfig,
    epoch: u64,
    indices: &mut [u64],
    labels: &mut [u32],
    groups: &mut [ViewGroup],
) -> Result<Vec<AugmentError>, AugmentError> {
    let b = indices.len();
    let mut per_image: Vec<Vec<&mut [u8]>> =
        (0..b).map(|_| Vec::with_capacity(cfg.views())).collect();
    // Chunks run view-major through each group, so image i's slots arrive in
    // view order.
    for g in groups.iter_mut() {
        let n = g.image_len();
        for (c, chunk) in g.data.chunks_exact_mut(n).enumerate() {
            per_image[c % b].push(chunk);
        }
    }
    let len = split.len();
    let bad: Vec<Option<AugmentError>> = per_image
        .into_par_iter()
        .zip(indices.par_iter_mut())
        .zip(labels.par_iter_mut())
        .map(|((mut slots, idx), label)| {
            let first = make_views(split, cfg, epoch, *idx, &mut slots);
            match (first, cfg.on_error) {
                (Ok(l), _) => {
                    *label = l;
                    Ok(None)
                }
                (Err(e), OnError::Fail) => Err(e),
                (Err(e), OnError::Substitute) => {
                    // The next records in index order, deterministically.
                    let mut found = None;
                    for k in 1..len.min(64) {
                        let alt = (*idx + k) % len;
                        if let Ok(l) = make_views(split, cfg, epoch, alt, &mut slots) {
                            found = Some((alt, l));
                            break;
                        }
                    }
                    let Some((alt, l)) = found else {
                        return Err(e);
                    };
                    *idx = alt;
                    *label = l;
                    Ok(Some(e))
                }
            }
        })
        .collect::<Result<_, AugmentError>>()?;
    Ok(bad.into_iter().flatten().collect())
}

/// Runs the engine on its own threads and hands out finished batches.
#[derive(Debug)]
pub struct Loader {
    rx: Option<Receiver<Result<Batch, AugmentError>>>,
    stop: Arc<AtomicBool>,
    /// Batch buffer sets allocated so far (the rest came from the pool).
    allocated: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
    waited: Duration,
    started: Instant,
}

impl Loader {
    /// Starts producing batches from `sampler`'s position, epoch after epoch.
    pub fn start(
        split: Arc<SplitReader>,
        cfg: EngineConfig,
        mut sampler: Sampler,
    ) -> Result<Loader, AugmentError> {
        if let Some(map) = &cfg.subset {
            if let Some(bad) = map.iter().find(|&&i| i >= split.len()) {
                return Err(AugmentError::Config {
                    flag: "subset",
                    detail: format!(
                        "record {bad} is beyond the {} records of split {}",
                        split.len(),
                        split.name()
                    ),
                });
            }
        }
        if sampler.epoch_len() < cfg.batch_size as u64 {
            return Err(AugmentError::Config {
                flag: "--batch-size",
                detail: format!(
                    "{} is larger than the {} records per epoch of split {}",
                    cfg.batch_size,
                    sampler.epoch_len(),
                    split.name()
                ),
            });
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.threads)
            .thread_name(|i| format!("fnc-augment-{i}"))
            .build()
            .map_err(|e| AugmentError::Config {
                flag: "--threads",
                detail: e.to_string(),
            })?;
        let (tx, rx) = bounded::<Result<Batch, AugmentError>>(cfg.queue_depth);
        let (recycle_tx, recycle_rx) = bounded::<Vec<ViewGroup>>(cfg.queue_depth + 4);
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let allocated = Arc::new(AtomicU64::new(0));
        let allocated2 = allocated.clone();
        let handle = std::thread::Builder::new()
            .name("fnc-augment-producer".into())
            .spawn(move || {
                let b = cfg.batch_size;
                while !stop2.load(Ordering::Relaxed) {
                    let Some((epoch, mut indices)) = sampler.next_batch(b as u64) else {
                        break;
                    };
                    if let Some(map) = &cfg.subset {
                        for i in indices.iter_mut() {
                            *i = map[*i as usize];
                        }
                    }
                    let mut groups = recycle_rx.try_recv().unwrap_or_else(|_| {
                        allocated2.fetch_add(1, Ordering::Relaxed);
                        new_groups(&cfg, b)
                    });
                    let mut labels = vec![0u32; b];
                    let res = pool.install(|| {
                        fill_batch(&split, &cfg, epoch, &mut indices, &mut labels, &mut groups)
                    });
                    let msg = res.map(|bad| Batch {
                        epoch,
                        indices,
                        labels,
                        groups,
                        sampler_after: sampler.state(),
                        bad,
                        recycle: Some(recycle_tx.clone()),
                    });
                    let failed = msg.is_err();
                    if tx.send(msg).is_err() || failed {
                        break; // consumer gone, or an error was delivered
                    }
                }
            })
            .map_err(|e| AugmentError::Worker(e.to_string()))?;
        Ok(Loader {
            rx: Some(rx),
            stop,
            allocated,
            handle: Some(handle),
            waited: Duration::ZERO,
            started: Instant::now(),
        })
    }

    /// The next batch, blocking until one is ready. None when the engine stopped.
    pub fn next_batch(&mut self) -> Option<Result<Batch, AugmentError>> {
        let t = Instant::now();
        let r = self.rx.as_ref()?.recv().ok();
        self.waited += t.elapsed();
        r
    }

    /// Time the consumer spent blocked in [`Loader::next_batch`].
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// How many sets of batch buffers the engine has allocated: the others
    /// were recycled from batches the consumer dropped. It stays near the
    /// queue depth however many batches are taken.
    pub fn buffers_allocated(&self) -> u64 {
        self.allocated.load(Ordering::Relaxed)
    }

    /// Time since the loader started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receiver unblocks a producer waiting to send.
        self.rx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
