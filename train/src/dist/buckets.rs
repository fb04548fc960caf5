//! Gradients summed over the ranks in buckets of about 25 MB per dtype and
//! device (one collective per bucket rather than per tensor), started as soon
//! as a bucket's gradients are final (while the backward goes on through the
//! earlier layers) and waited for once, at the end.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::ptr::NonNull;
use std::time::Instant;

use tch::Tensor;

use super::ffi::*;
use super::group::{err_text, ProcessGroup, ERR_LEN};
use crate::error::TrainError;

/// The size a bucket is closed at.
const BUCKET_BYTES: i64 = 25 << 20;

/// A bucket's all-reduce in flight: its joined gradients and where they go.
#[derive(Debug)]
struct InFlight {
    work: NonNull<c_void>,
    joined: Tensor,
    grads: Vec<Tensor>,
}

/// Gradient buckets summed over the ranks while the backward runs: [`add`]
/// starts the all-reduce of gradients that are final, [`finish`] waits for
/// all of them and writes the sums into the gradients, in place.
///
/// [`add`]: Reducer::add
/// [`finish`]: Reducer::finish
#[derive(Debug)]
pub struct Reducer<'g> {
    group: &'g ProcessGroup,
    in_flight: Vec<InFlight>,
    /// Seconds spent starting collectives (a host-waited backend copies).
    start_s: f64,
}

impl<'g> Reducer<'g> {
    pub fn new(group: &'g ProcessGroup) -> Reducer<'g> {
        Reducer {
            group,
            in_flight: Vec::new(),
            start_s: 0.0,
        }
    }

    /// Starts summing `grads` (final: nothing adds to them any more) over the
    /// ranks, in buckets of one dtype and device. Undefined ones are skipped.
    pub fn add(&mut self, grads: &[&Tensor]) -> Result<(), TrainError> {
        let t = Instant::now();
        let mut bucket: Vec<Tensor> = Vec::new();
        let mut bytes = 0i64;
        for g in grads.iter().filter(|g| g.defined()) {
            if let Some(first) = bucket.first() {
                if first.kind() != g.kind() || first.device() != g.device() || bytes >= BUCKET_BYTES
                {
                    self.start(std::mem::take(&mut bucket))?;
                    bytes = 0;
                }
            }
            bytes += g.numel() as i64 * g.kind().elt_size_in_bytes() as i64;
            bucket.push(g.shallow_clone());
        }
        if !bucket.is_empty() {
            self.start(bucket)?;
        }
        self.start_s += t.elapsed().as_secs_f64();
        Ok(())
    }

    fn start(&mut self, grads: Vec<Tensor>) -> Result<(), TrainError> {
        let flat = grads
            .iter()
            .map(|g| g.f_reshape([-1]))
            .collect::<Result<Vec<Tensor>, _>>()?;
        let joined = Tensor::f_cat(&flat, 0)?;
        let mut err = vec![0u8; ERR_LEN];
        // SAFETY: `joined` is a live tensor handle, kept alive (in
        // `InFlight`) until the collective is waited for; the shim returns a
        // heap handle of the collective in flight (or null with `err` filled,
        // at most ERR_LEN bytes), freed by fnc_dist_work_wait.
        let work = unsafe {
            fnc_dist_all_reduce_start(
                self.group.ptr.as_ptr(),
                joined.as_ptr() as *mut torch_sys::C_tensor,
                err.as_mut_ptr().cast(),
                ERR_LEN,
            )
        };
        let Some(work) = NonNull::new(work) else {
            return Err(self.group.failed("all-reduce (gradients)", &err));
        };
        self.in_flight.push(InFlight {
            work,
            joined,
            grads,
        });
        Ok(())
    }

    /// Waits for every bucket and writes the sums into the gradients.
    /// Returns the seconds the step spent on the buckets' collectives
    /// outside the backward: starting them and waiting at the end.
    pub fn finish(mut self) -> Result<f64, TrainError> {
        let t = Instant::now();
        let mut failed = None;
        for f in std::mem::take(&mut self.in_flight) {
            let mut err = vec![0u8; ERR_LEN];
            // SAFETY: `f.work` came from fnc_dist_all_reduce_start and is
            // waited for (and freed) exactly once, here; `err` as above.
            let rc =
                unsafe { fnc_dist_work_wait(f.work.as_ptr(), err.as_mut_ptr().cast(), ERR_LEN) };
            if rc != 0 {
                failed.get_or_insert(err_text(&err));
                continue;
            }
            let mut at = 0;
            for g in &f.grads {
                let n = g.numel() as i64;
                let mut g = g.shallow_clone();
                g.f_copy_(&f.joined.f_narrow(0, at, n)?.f_view_as(&g)?)?;
                at += n;
            }
        }
        if let Some(e) = failed {
            return Err(self.group.error(
                "all-reduce (gradients)",
                format!("{e}{}", self.group.diagnosis()),
            ));
        }
        Ok(self.start_s + t.elapsed().as_secs_f64())
    }
}

impl Drop for Reducer<'_> {
    fn drop(&mut self) {
        // A step that failed before `finish`: the collectives still have to
        // end before their buffers go, and their handles be freed.
        for f in std::mem::take(&mut self.in_flight) {
            let mut err = vec![0u8; ERR_LEN];
            // SAFETY: as in `finish`: each handle is waited for once.
            let _ =
                unsafe { fnc_dist_work_wait(f.work.as_ptr(), err.as_mut_ptr().cast(), ERR_LEN) };
        }
    }
}
