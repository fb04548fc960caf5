//! Checkpoints written on a thread of their own: rank 0 copies the tensors
//! off the device and trains on while they go to disk, so a slow file system
//! never holds the other ranks in a collective past `--dist-timeout`. One
//! checkpoint is in flight at a time; the next waits for it.

use std::thread::JoinHandle;

use crate::checkpoint::{Checkpoint, CheckpointState, RunDir, Snapshot};
use crate::error::TrainError;

#[derive(Debug)]
pub(crate) struct Saver {
    run: RunDir,
    pending: Option<JoinHandle<Result<Checkpoint, TrainError>>>,
    /// The newest checkpoint known to be complete.
    pub last: Option<Checkpoint>,
}

impl Saver {
    pub fn new(run: RunDir, last: Option<Checkpoint>) -> Saver {
        Saver {
            run,
            pending: None,
            last,
        }
    }

    /// Writes `snapshot` as the checkpoint of `state` in the background,
    /// after the one in flight is done (whose error, if any, is returned).
    pub fn submit(&mut self, snapshot: Snapshot, state: CheckpointState) -> Result<(), TrainError> {
        self.wait()?;
        let run = self.run.clone();
        let handle = std::thread::Builder::new()
            .name("fnc-checkpoint".into())
            .spawn(move || run.write(snapshot, state))
            .map_err(|err| TrainError::Thread {
                what: "checkpoint",
                err,
            })?;
        self.pending = Some(handle);
        Ok(())
    }

    /// The checkpoint in flight, if it is done: its error, if any, now
    /// rather than at the next checkpoint.
    pub fn poll(&mut self) -> Result<(), TrainError> {
        if self.pending.as_ref().is_some_and(|h| h.is_finished()) {
            self.wait()?;
        }
        Ok(())
    }

    /// Waits for the checkpoint in flight.
    pub fn wait(&mut self) -> Result<(), TrainError> {
        if let Some(h) = self.pending.take() {
            let written = h.join().map_err(|_| TrainError::Thread {
                what: "checkpoint",
                err: std::io::Error::other("the checkpoint writer panicked"),
            })??;
            self.last = Some(written);
        }
        Ok(())
    }
}

impl Drop for Saver {
    /// A run that stops on an error still finishes the checkpoint in flight.
    fn drop(&mut self) {
        let _ = self.wait();
    }
}
