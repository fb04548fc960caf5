//! Batches as tensors one step ahead: a thread turns the augmentation engine's
//! batches into tensors on the training device while the device trains on the
//! previous step, so that the copies do not sit between two steps.
//!
//! Each view group arrives from the engine as one buffer, so it becomes a
//! tensor in one host copy; on CUDA the thread also starts its upload from
//! pinned memory on a side stream, and the training thread's stream waits
//! for it (its host does not).

use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver};
use fnc_augment::{AugmentError, Batch, Loader, SamplerState, ViewGroup};
use tch::{Device, Tensor};

use crate::dist::{upload, Upload};
use crate::error::TrainError;

/// What one training step consumes.
#[derive(Debug)]
pub(crate) struct StepInput {
    /// The view groups in view order, each `[views*B, side, side, 3]` uint8,
    /// view-major: all V views at once when they share a side, else the main
    /// and the support views.
    pub groups: Vec<Tensor>,
    /// `[B]` int64.
    pub labels: Tensor,
    pub epoch: u64,
    /// Where the sampler resumes after this batch.
    pub sampler_after: SamplerState,
    /// Records of this batch that failed to decode and were replaced.
    pub bad: Vec<AugmentError>,
}

/// The feeding thread and its one-deep queue.
#[derive(Debug)]
pub(crate) struct Feed {
    rx: Option<Receiver<Result<Fed, TrainError>>>,
    handle: Option<JoinHandle<()>>,
}

/// What the feeding thread hands over: the batch's tensors on their way to
/// the device (the view groups, then the labels).
#[derive(Debug)]
struct Fed {
    uploads: Vec<Upload>,
    epoch: u64,
    sampler_after: SamplerState,
    bad: Vec<AugmentError>,
}

/// One host copy of each view group and of the labels, then on CUDA the
/// uploads ([`crate::dist::upload`]: from pinned memory on a side stream,
/// waited for by the training thread's stream, not its host).
fn to_fed(mut batch: Batch, device: Device) -> Fed {
    let b = batch.labels.len();
    let labels: Vec<i64> = batch.labels.iter().map(|&l| l as i64).collect();
    let mut host: Vec<Tensor> = batch
        .groups
        .iter()
        .map(|g: &ViewGroup| {
            let side = g.side as i64;
            Tensor::from_slice(&g.data).view([(g.views * b) as i64, side, side, 3])
        })
        .collect();
    host.push(Tensor::from_slice(&labels));
    Fed {
        uploads: host.iter().map(|t| upload(t, device)).collect(),
        epoch: batch.epoch,
        sampler_after: batch.sampler_after,
        bad: std::mem::take(&mut batch.bad),
    }
}

impl Fed {
    /// The step's input once this thread's stream waits for the uploads.
    fn ready(self) -> Result<StepInput, TrainError> {
        let mut tensors = Vec::with_capacity(self.uploads.len());
        for u in self.uploads {
            tensors.push(u.ready().map_err(|e| {
                TrainError::Torch(tch::TchError::Torch(format!("uploading a batch: {e}")))
            })?);
        }
        let labels = tensors.pop().unwrap_or_else(Tensor::new);
        Ok(StepInput {
            groups: tensors,
            labels,
            epoch: self.epoch,
            sampler_after: self.sampler_after,
            bad: self.bad,
        })
    }
}

impl Feed {
    /// Starts feeding `loader`'s batches as tensors on `device`.
    pub fn start(mut loader: Loader, device: Device) -> Result<Feed, TrainError> {
        let (tx, rx) = bounded(1);
        let handle = std::thread::Builder::new()
            .name("fnc-feed".into())
            .spawn(move || {
                while let Some(batch) = loader.next_batch() {
                    let item = batch
                        .map(|batch| to_fed(batch, device))
                        .map_err(TrainError::from);
                    if tx.send(item).is_err() {
                        break;
                    }
                }
            })
            .map_err(|err| TrainError::Thread {
                what: "feeding",
                err,
            })?;
        Ok(Feed {
            rx: Some(rx),
            handle: Some(handle),
        })
    }

    /// The next step's input, its tensors on the device; `None` when the
    /// engine stopped.
    pub fn next(&self) -> Option<Result<StepInput, TrainError>> {
        Some(self.rx.as_ref()?.recv().ok()?.and_then(Fed::ready))
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        // Closing the queue ends the thread, which then stops the engine.
        drop(self.rx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
