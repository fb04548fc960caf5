//! Batches as tensors one step ahead: a thread turns the augmentation engine's
//! batches into tensors on the training device while the device trains on the
//! previous step, so that the copies do not sit between two steps.
//!
//! Each view group arrives from the engine as one buffer, so it becomes a
//! tensor in one host copy; on CUDA the thread also uploads it from pinned
//! memory without blocking, and the training thread receives device tensors.

use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver};
use fnc_augment::{AugmentError, Batch, Loader, SamplerState, ViewGroup};
use tch::{Device, Tensor};

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
    rx: Option<Receiver<Result<StepInput, TrainError>>>,
    handle: Option<JoinHandle<()>>,
}

/// One view group as a tensor on `device`: one host copy, then on CUDA the
/// upload ([`upload`]).
fn group(g: &ViewGroup, b: usize, device: Device) -> Tensor {
    let side = g.side as i64;
    let x = Tensor::from_slice(&g.data).view([(g.views * b) as i64, side, side, 3]);
    upload(x, device)
}

/// `x` on `device`: on CUDA, copied into pinned (page-locked) host memory
/// and uploaded by a copy that does not block the host (the DMA engine runs
/// it in stream order; the pinned buffer is held until it is done); on the
/// CPU, `x` itself.
fn upload(x: Tensor, device: Device) -> Tensor {
    if device.is_cuda() {
        x.pin_memory(device)
            .to_device_(device, x.kind(), true, false)
    } else {
        x
    }
}

fn to_input(mut batch: Batch, device: Device) -> StepInput {
    let b = batch.labels.len();
    let labels: Vec<i64> = batch.labels.iter().map(|&l| l as i64).collect();
    StepInput {
        groups: batch.groups.iter().map(|g| group(g, b, device)).collect(),
        labels: upload(Tensor::from_slice(&labels), device),
        epoch: batch.epoch,
        sampler_after: batch.sampler_after,
        bad: std::mem::take(&mut batch.bad),
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
                        .map(|batch| to_input(batch, device))
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
        self.rx.as_ref()?.recv().ok()
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
