//! Batches as tensors one step ahead: a thread turns the augmentation engine's
//! batches into host tensors (pinned when the model is on CUDA) while the
//! device trains on the previous step, so that the copies into tensors do not
//! sit between two steps.

use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver};
use fnc_augment::{Batch, Loader, SamplerState, ViewBatch};
use tch::{Device, Kind, Tensor};

use crate::run::TrainError;

/// What one training step consumes.
#[derive(Debug)]
pub(crate) struct StepInput {
    /// `[2B, s, s, 3]` uint8, view-major.
    pub main: Tensor,
    /// `[S*B, s', s', 3]` uint8, view-major, when there are support views.
    pub support: Option<Tensor>,
    /// `[B]` int64.
    pub labels: Tensor,
    pub epoch: u64,
    /// Where the sampler resumes after this batch.
    pub sampler_after: SamplerState,
}

/// The feeding thread and its one-deep queue.
#[derive(Debug)]
pub(crate) struct Feed {
    rx: Option<Receiver<Result<StepInput, TrainError>>>,
    handle: Option<JoinHandle<()>>,
    device: Device,
}

/// One view group as a single host tensor, pinned for `device` if it is CUDA.
fn group(views: &[ViewBatch], b: usize, device: Device) -> Tensor {
    let side = views[0].side as i64;
    let parts: Vec<Tensor> = views
        .iter()
        .map(|v| Tensor::from_slice(&v.data).view([b as i64, side, side, 3]))
        .collect();
    let x = Tensor::cat(&parts, 0);
    if device.is_cuda() {
        x.pin_memory(device)
    } else {
        x
    }
}

fn to_input(batch: Batch, b: usize, device: Device) -> StepInput {
    let labels: Vec<i64> = batch.labels.iter().map(|&l| l as i64).collect();
    StepInput {
        main: group(&batch.views[..2], b, device),
        support: (batch.views.len() > 2).then(|| group(&batch.views[2..], b, device)),
        labels: Tensor::from_slice(&labels),
        epoch: batch.epoch,
        sampler_after: batch.sampler_after,
    }
}

impl Feed {
    /// Starts feeding batches of `b` images from `loader` for `device`.
    pub fn start(mut loader: Loader, b: usize, device: Device) -> Result<Feed, TrainError> {
        let (tx, rx) = bounded(1);
        let handle = std::thread::Builder::new()
            .name("fnc-feed".into())
            .spawn(move || {
                while let Some(batch) = loader.next_batch() {
                    let item = batch
                        .map(|batch| to_input(batch, b, device))
                        .map_err(TrainError::from);
                    if tx.send(item).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| TrainError::Config {
                flag: "--workers",
                detail: format!("cannot start the feeding thread: {e}"),
            })?;
        Ok(Feed {
            rx: Some(rx),
            handle: Some(handle),
            device,
        })
    }

    /// The next step's input, its tensors on the device (copied without
    /// blocking the host on CUDA); `None` when the engine stopped.
    pub fn next(&self) -> Option<Result<StepInput, TrainError>> {
        let item = self.rx.as_ref()?.recv().ok()?;
        let dev = self.device;
        Some(item.map(|mut s| {
            if dev.is_cuda() {
                s.main = s.main.to_device_(dev, Kind::Uint8, true, false);
                s.support = s
                    .support
                    .map(|x| x.to_device_(dev, Kind::Uint8, true, false));
                s.labels = s.labels.to_device(dev);
            }
            s
        }))
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
