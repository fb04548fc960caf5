//! The parallel engine: sampler -> decode once -> V views per image -> batch
//! buffers -> bounded queue, with buffers recycled through a pool.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use fnc_formats::SplitReader;
use rayon::prelude::*;

use crate::decode::decode_into;
use crate::error::AugmentError;
use crate::ops::{apply_view, Scratch};
use crate::params::{draw_view, Recipe};
use crate::rng::ViewRng;
use crate::sampler::{Sampler, SamplerState};

/// What to do with a record that fails to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Stop with an error naming shard and record (default).
    Fail,
    /// Use the next record that decodes instead, and count it.
    Substitute,
}

/// A validated engine configuration; build it with [`EngineConfig::builder`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    batch_size: usize,
    support: usize,
    size: u32,
    support_size: u32,
    seed: u64,
    threads: usize,
    queue_depth: usize,
    recipe: Recipe,
    on_error: OnError,
    subset: Option<Arc<Vec<u64>>>,
}

/// Builds an [`EngineConfig`]; every setter says its default.
#[derive(Debug, Clone)]
pub struct EngineConfigBuilder(EngineConfig);

impl EngineConfig {
    pub fn builder() -> EngineConfigBuilder {
        EngineConfigBuilder(EngineConfig {
            batch_size: 256,
            support: 8,
            size: 224,
            support_size: 224,
            seed: 0,
            threads: 0,
            queue_depth: 4,
            recipe: Recipe::default(),
            on_error: OnError::Fail,
            subset: None,
        })
    }

    /// Views per image: 2 main + support.
    pub fn views(&self) -> usize {
        2 + self.support
    }

    /// Side of view `v` (main views 0 and 1, then support views).
    pub fn view_side(&self, v: usize) -> u32 {
        if v < 2 {
            self.size
        } else {
            self.support_size
        }
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn recipe(&self) -> &Recipe {
        &self.recipe
    }
}

impl EngineConfigBuilder {
    /// Images per batch (default 256).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.0.batch_size = n;
        self
    }
    /// Support views per image, S (default 8; V = 2 + S).
    pub fn support(mut self, s: usize) -> Self {
        self.0.support = s;
        self
    }
    /// Side of the 2 main views (default 224).
    pub fn size(mut self, side: u32) -> Self {
        self.0.size = side;
        self
    }
    /// Side of the support views (default 224, as in the reference).
    pub fn support_size(mut self, side: u32) -> Self {
        self.0.support_size = side;
        self
    }
    /// Seed of every draw (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.0.seed = seed;
        self
    }
    /// Worker threads, 0 = one per core (default 0). Output does not depend on it.
    pub fn threads(mut self, n: usize) -> Self {
        self.0.threads = n;
        self
    }
    /// Finished batches waiting for the consumer (default 4).
    pub fn queue_depth(mut self, n: usize) -> Self {
        self.0.queue_depth = n;
        self
    }
    /// The augmentation recipe (default: SimCLR v2's, [`Recipe::default`]).
    pub fn recipe(mut self, r: Recipe) -> Self {
        self.0.recipe = r;
        self
    }
    /// Read only these records (e.g. a labelled fraction for fine-tuning); the
    /// sampler then permutes positions in this list (default: the whole split).
    pub fn subset(mut self, indices: Arc<Vec<u64>>) -> Self {
        self.0.subset = Some(indices);
        self
    }
    /// Bad records: fail (default) or substitute and count.
    pub fn on_error(mut self, e: OnError) -> Self {
        self.0.on_error = e;
        self
    }

    pub fn build(self) -> Result<EngineConfig, AugmentError> {
        let c = self.0;
        if c.batch_size == 0 {
            return Err(AugmentError::Config {
                flag: "--batch-size",
                detail: "must be at least 1".into(),
            });
        }
        for (flag, side) in [("--size", c.size), ("--support-size", c.support_size)] {
            if !(8..=4096).contains(&side) {
                return Err(AugmentError::Config {
                    flag,
                    detail: format!("{side} is not in 8..=4096"),
                });
            }
        }
        if c.queue_depth == 0 {
            return Err(AugmentError::Config {
                flag: "--queue-depth",
                detail: "must be at least 1".into(),
            });
        }
        let r = &c.recipe;
        let probs = [r.flip_p, r.jitter_p, r.grey_p, r.blur_p, r.solarize_p];
        if probs.iter().any(|p| !(0.0..=1.0).contains(p)) {
            return Err(AugmentError::Config {
                flag: "recipe",
                detail: "probabilities must be in [0, 1]".into(),
            });
        }
        if !(r.crop_scale.0 > 0.0 && r.crop_scale.0 <= r.crop_scale.1 && r.crop_scale.1 <= 1.0) {
            return Err(AugmentError::Config {
                flag: "crop scale",
                detail: format!("{:?} is not a range within (0, 1]", r.crop_scale),
            });
        }
        Ok(c)
    }
}

/// One view index of a whole batch: `[batch, side, side, 3]` uint8, NHWC,
/// RGB, rows top to bottom.
#[derive(Debug, Clone)]
pub struct ViewBatch {
    pub side: u32,
    pub data: Vec<u8>,
}

/// A finished batch. Views are in view-major order (`views[v]` holds view v of
/// every image), matching the FNC loss's row order. Dropping it returns its
/// buffers to the engine's pool.
#[derive(Debug)]
pub struct Batch {
    pub epoch: u64,
    /// Record indices (within the split) of the images.
    pub indices: Vec<u64>,
    pub labels: Vec<u32>,
    pub views: Vec<ViewBatch>,
    /// Sampler state after this batch: save it to resume right after it.
    pub sampler_after: SamplerState,
    /// Images replaced because their record failed to decode (OnError::Substitute).
    pub substituted: u32,
    recycle: Option<Sender<Vec<ViewBatch>>>,
}

impl Drop for Batch {
    fn drop(&mut self) {
        if let Some(tx) = self.recycle.take() {
            let _ = tx.try_send(std::mem::take(&mut self.views));
        }
    }
}

thread_local! {
    static WORK: RefCell<(Vec<u8>, Scratch)> = RefCell::new((Vec::new(), Scratch::default()));
}

fn record_error(split: &SplitReader, index: u64, detail: String) -> AugmentError {
    match split.locate(index) {
        Ok((k, j)) => AugmentError::Record {
            shard: split
                .shards()
                .nth(k)
                .map(|s| s.path().to_path_buf())
                .unwrap_or_default(),
            record: j as u64,
            detail,
        },
        Err(e) => e.into(),
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
        let rec = split
            .get(index)
            .map_err(|e| record_error(split, index, e.to_string()))?;
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

fn fill_batch(
    split: &SplitReader,
    cfg: &EngineConfig,
    epoch: u64,
    indices: &mut [u64],
    labels: &mut [u32],
    views: &mut [ViewBatch],
) -> Result<u32, AugmentError> {
    let b = indices.len();
    let mut per_image: Vec<Vec<&mut [u8]>> =
        (0..b).map(|_| Vec::with_capacity(views.len())).collect();
    for vb in views.iter_mut() {
        let n = (vb.side * vb.side * 3) as usize;
        for (i, chunk) in vb.data.chunks_exact_mut(n).enumerate() {
            per_image[i].push(chunk);
        }
    }
    let len = split.len();
    let substituted = std::sync::atomic::AtomicU32::new(0);
    per_image
        .into_par_iter()
        .zip(indices.par_iter_mut())
        .zip(labels.par_iter_mut())
        .try_for_each(|((mut slots, idx), label)| -> Result<(), AugmentError> {
            let first = make_views(split, cfg, epoch, *idx, &mut slots);
            match (first, cfg.on_error) {
                (Ok(l), _) => *label = l,
                (Err(e), OnError::Fail) => return Err(e),
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
                    let (alt, l) = found.ok_or(e)?;
                    *idx = alt;
                    *label = l;
                    substituted.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(())
        })?;
    Ok(substituted.into_inner())
}

/// Runs the engine on its own threads and hands out finished batches.
#[derive(Debug)]
pub struct Loader {
    rx: Option<Receiver<Result<Batch, AugmentError>>>,
    stop: Arc<AtomicBool>,
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
        let (recycle_tx, recycle_rx) = bounded::<Vec<ViewBatch>>(cfg.queue_depth + 4);
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
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
                    let mut views = recycle_rx.try_recv().unwrap_or_else(|_| {
                        (0..cfg.views())
                            .map(|v| {
                                let side = cfg.view_side(v);
                                ViewBatch {
                                    side,
                                    data: vec![0u8; b * (side * side * 3) as usize],
                                }
                            })
                            .collect()
                    });
                    let mut labels = vec![0u32; b];
                    let res = pool.install(|| {
                        fill_batch(&split, &cfg, epoch, &mut indices, &mut labels, &mut views)
                    });
                    let msg = res.map(|substituted| Batch {
                        epoch,
                        indices,
                        labels,
                        views,
                        sampler_after: sampler.state(),
                        substituted,
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
