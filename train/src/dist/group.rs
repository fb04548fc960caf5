//! A c10d process group reached through the shim: its making, its
//! collectives (each waited with the group's timeout, failing with an error
//! that names this rank), and its end.
//!
//! The FFI calls of `dist` (here, in `heartbeat` and `ffi`) are the only
//! `unsafe` of this crate: each passes tch's own `at::Tensor` handles (which
//! outlive the call) and a group pointer this module owns, and the shim
//! catches every C++ exception into an error string.
#![allow(unsafe_code)]

use std::ffi::{c_int, c_void, CString};
use std::ptr::NonNull;
use std::time::Duration;

use tch::{Device, Tensor};
use torch_sys::C_tensor;

use super::ffi::*;
use super::launch::{Backend, Launch};
use super::share;
use crate::error::TrainError;

pub(super) const ERR_LEN: usize = 2048;

/// A process group of `world` ranks. Collectives wait at most the timeout it
/// was made with, then fail naming this rank.
#[derive(Debug)]
pub struct ProcessGroup {
    pub(super) ptr: NonNull<c_void>,
    pub rank: usize,
    pub world: usize,
    pub local_rank: usize,
    /// Ranks on this machine.
    pub local_world: usize,
    /// The rank's device: where its model runs and its collectives' tensors live.
    pub device: Device,
    pub backend: &'static str,
    /// Set when the run is over: the NCCL watch stops looking.
    pub(super) finished: std::sync::atomic::AtomicBool,
}

// SAFETY: the shim's group may be used from any thread: every call into its
// backend holds the group's own lock (c10d backends are not made for two
// threads issuing collectives at once), the heartbeat and the diagnosis use
// store connections of their own (the probe's behind a lock), and its
// shutdown flag is atomic. The pointer holds one reference of the shim's
// reference-counted group, given back once, in Drop; autograd nodes of
// `all_reduce_autograd` hold references of their own, so a graph that outlives
// this handle still has its group. (That every rank issues the same
// collectives in the same order is the callers' protocol, not memory safety.)
unsafe impl Send for ProcessGroup {}
// SAFETY: as for Send: shared use goes through the shim's locks.
unsafe impl Sync for ProcessGroup {}

pub(super) fn err_text(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).trim().to_string()
}

impl ProcessGroup {
    /// Groups alive in this process (handles and autograd nodes hold them).
    pub fn live() -> usize {
        // SAFETY: a pure query without arguments.
        unsafe { fnc_dist_live_groups() }.max(0) as usize
    }

    /// Whether this build can make NCCL groups (CUDA headers were found).
    pub fn has_nccl() -> bool {
        // SAFETY: a pure query without arguments.
        unsafe { fnc_dist_has_nccl() != 0 }
    }

    /// Joins the rendezvous of `launch` and makes the group: Gloo on the CPU,
    /// NCCL on CUDA (`Backend::Auto`).
    pub fn new(
        launch: &Launch,
        backend: Backend,
        device: Device,
        timeout: Duration,
    ) -> Result<ProcessGroup, TrainError> {
        if !super::AVAILABLE {
            return Err(TrainError::Dist {
                rank: launch.rank,
                world: launch.world,
                op: "rendezvous",
                detail: "this fnc-train was built without data-parallel support \
                         (--no-default-features); rebuild it with the default features \
                         (they need libgloo-dev) to train on several processes"
                    .into(),
            });
        }
        let nccl = match backend {
            Backend::Auto => device.is_cuda() && Self::has_nccl(),
            Backend::Gloo => false,
            Backend::Nccl => true,
        };
        let host = CString::new(launch.master_addr.clone()).map_err(|_| TrainError::Config {
            flag: "MASTER_ADDR",
            detail: "contains a NUL byte".into(),
        })?;
        let mut err = vec![0u8; ERR_LEN];
        // SAFETY: `host` and `err` outlive the call; the shim writes at most
        // ERR_LEN bytes (NUL included) into `err`.
        let ptr = unsafe {
            fnc_dist_new(
                c_int::from(nccl),
                host.as_ptr(),
                c_int::from(launch.master_port),
                c_int::from(launch.rank == 0 && !launch.agent_store),
                launch.rank as c_int,
                launch.world as c_int,
                timeout.as_millis() as i64,
                err.as_mut_ptr().cast(),
                ERR_LEN,
            )
        };
        let backend = if nccl { "nccl" } else { "gloo" };
        match NonNull::new(ptr) {
            Some(ptr) => Ok(ProcessGroup {
                ptr,
                rank: launch.rank,
                world: launch.world,
                local_rank: launch.local_rank,
                local_world: launch.local_world,
                device,
                backend,
                finished: std::sync::atomic::AtomicBool::new(false),
            }),
            None => Err(TrainError::Dist {
                rank: launch.rank,
                world: launch.world,
                op: "rendezvous",
                detail: format!(
                    "{} with MASTER_ADDR={} MASTER_PORT={} ({backend}): {}",
                    if launch.rank == 0 {
                        "serving the store"
                    } else {
                        "joining the store"
                    },
                    launch.master_addr,
                    launch.master_port,
                    err_text(&err)
                ),
            }),
        }
    }

    fn check(&self, op: &'static str, rc: c_int, err: &[u8]) -> Result<(), TrainError> {
        if rc == 0 {
            return Ok(());
        }
        Err(self.failed(op, err))
    }

    pub(super) fn failed(&self, op: &'static str, err: &[u8]) -> TrainError {
        self.error(op, format!("{}{}", err_text(err), self.diagnosis()))
    }

    /// A [`TrainError::Dist`] of this rank about `op`.
    pub fn error(&self, op: &'static str, detail: impl Into<String>) -> TrainError {
        TrainError::Dist {
            rank: self.rank,
            world: self.world,
            op,
            detail: detail.into(),
        }
    }

    /// In-place sum of `t` over the ranks.
    pub fn all_reduce(&self, t: &Tensor) -> Result<(), TrainError> {
        let mut err = vec![0u8; ERR_LEN];
        // SAFETY: `t` is a live tch tensor (an `at::Tensor*` the call only
        // reads as a handle; the data it points to is written by the
        // collective, which tch allows through a shared handle as any in-place
        // op does); `err` as in `new`.
        let rc = unsafe {
            fnc_dist_all_reduce(
                self.ptr.as_ptr(),
                t.as_ptr() as *mut C_tensor,
                err.as_mut_ptr().cast(),
                ERR_LEN,
            )
        };
        self.check("all-reduce", rc, &err)
    }

    /// The sum of `x` over the ranks as a new tensor whose backward is the sum
    /// over the ranks of the incoming gradients.
    pub fn all_reduce_autograd(&self, x: &Tensor) -> Result<Tensor, TrainError> {
        let mut err = vec![0u8; ERR_LEN];
        // SAFETY: `x` is a live tensor handle; the shim returns a new heap
        // `at::Tensor*` (or null on error), which `Tensor::from_ptr` owns and
        // frees as tch frees its own tensors.
        let out = unsafe {
            fnc_dist_all_reduce_autograd(
                self.ptr.as_ptr(),
                x.as_ptr() as *mut C_tensor,
                err.as_mut_ptr().cast(),
                ERR_LEN,
            )
        };
        if out.is_null() {
            // Inside a module's forward: the step adds the diagnosis once.
            return Err(self.error("all-reduce (autograd)", err_text(&err)));
        }
        // SAFETY: non-null and freshly allocated by the shim for us.
        Ok(unsafe { Tensor::from_ptr(out) })
    }

    /// Training-mode BatchNorm of `x` (`[N, C, ...]`) with the statistics of
    /// every rank's batch, one autograd node (`csrc/sync_bn.cpp`): libtorch's
    /// fused kernels on CUDA, per-rank moments merged by count on the CPU.
    /// `running` (mean, variance) is updated in place when given.
    pub fn sync_batch_norm(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        running: Option<(&Tensor, &Tensor)>,
        momentum: f64,
        eps: f64,
    ) -> Result<Tensor, TrainError> {
        let none = Tensor::new();
        let (rm, rv) = running.unwrap_or((&none, &none));
        let mut err = vec![0u8; ERR_LEN];
        // SAFETY: every tensor is a live tch handle (`none` an undefined
        // one, which the shim reads as "no running statistics"); the shim
        // returns a new heap `at::Tensor*` or null, as in
        // `all_reduce_autograd`; `err` as in `new`.
        let out = unsafe {
            fnc_dist_sync_batch_norm(
                self.ptr.as_ptr(),
                x.as_ptr() as *mut C_tensor,
                weight.as_ptr() as *mut C_tensor,
                bias.as_ptr() as *mut C_tensor,
                rm.as_ptr() as *mut C_tensor,
                rv.as_ptr() as *mut C_tensor,
                momentum,
                eps,
                err.as_mut_ptr().cast(),
                ERR_LEN,
            )
        };
        if out.is_null() {
            return Err(self.error("synchronised BatchNorm", err_text(&err)));
        }
        // SAFETY: non-null and freshly allocated by the shim for us.
        Ok(unsafe { Tensor::from_ptr(out) })
    }

    /// Aborts the group's backend (NCCL: its communicators, so that
    /// collectives waiting for a dead rank end); collectives fail afterwards.
    pub fn abort(&self) -> Result<(), TrainError> {
        let mut err = vec![0u8; ERR_LEN];
        // SAFETY: the group pointer is live (owned by self); `err` as in `new`.
        let rc = unsafe { fnc_dist_abort(self.ptr.as_ptr(), err.as_mut_ptr().cast(), ERR_LEN) };
        self.check("abort", rc, &err)
    }

    /// Collectives this process has waited for on the host so far (Gloo's;
    /// NCCL's are waited on the CUDA stream).
    pub fn host_waits() -> u64 {
        // SAFETY: a pure query without arguments.
        unsafe { fnc_dist_host_waits() }.max(0) as u64
    }

    /// Every rank's `x` stacked along dimension 0 in rank order:
    /// `[world * n, ...]` for an `[n, ...]` input, on the rank's device. Not
    /// differentiable.
    pub fn all_gather(&self, x: &Tensor) -> Result<Tensor, TrainError> {
        // On the rank's device (NCCL gathers CUDA tensors only).
        let x = x.detach().to_device(self.device).contiguous();
        let mut shape = x.size();
        shape[0] *= self.world as i64;
        let out = Tensor::empty(shape.as_slice(), (x.kind(), x.device()));
        let mut err = vec![0u8; ERR_LEN];
        // SAFETY: both handles are live tch tensors; `out` is contiguous with
        // world x the rows of `x`, which is what the shim fills.
        let rc = unsafe {
            fnc_dist_all_gather(
                self.ptr.as_ptr(),
                x.as_ptr() as *mut C_tensor,
                out.as_ptr() as *mut C_tensor,
                err.as_mut_ptr().cast(),
                ERR_LEN,
            )
        };
        self.check("all-gather", rc, &err)?;
        Ok(out)
    }

    /// Overwrites `t` on every rank with rank `root`'s.
    pub fn broadcast(&self, t: &Tensor, root: usize) -> Result<(), TrainError> {
        let mut err = vec![0u8; ERR_LEN];
        // SAFETY: as in `all_reduce`.
        let rc = unsafe {
            fnc_dist_broadcast(
                self.ptr.as_ptr(),
                t.as_ptr() as *mut C_tensor,
                root as c_int,
                err.as_mut_ptr().cast(),
                ERR_LEN,
            )
        };
        self.check("broadcast", rc, &err)
    }

    /// Waits for every rank.
    pub fn barrier(&self) -> Result<(), TrainError> {
        let mut err = vec![0u8; ERR_LEN];
        // SAFETY: `err` as in `new`.
        let rc = unsafe { fnc_dist_barrier(self.ptr.as_ptr(), err.as_mut_ptr().cast(), ERR_LEN) };
        self.check("barrier", rc, &err)
    }

    /// Shuts the group's backend down (NCCL destroys its communicators);
    /// collectives fail afterwards. Called once a run is over.
    pub fn shutdown(&self) -> Result<(), TrainError> {
        self.finished
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let mut err = vec![0u8; ERR_LEN];
        // SAFETY: the group pointer is live (owned by self); `err` as in `new`.
        let rc = unsafe { fnc_dist_shutdown(self.ptr.as_ptr(), err.as_mut_ptr().cast(), ERR_LEN) };
        self.check("shutdown", rc, &err)
    }

    /// Rank `root`'s bytes on every rank (`bytes` is read on `root` only).
    pub fn broadcast_bytes(&self, bytes: &[u8], root: usize) -> Result<Vec<u8>, TrainError> {
        let len = Tensor::from_slice(&[bytes.len() as i64]).to_device(self.device);
        self.broadcast(&len, root)?;
        let n = len.to_device(Device::Cpu).int64_value(&[0]).max(0);
        let buf = if self.rank == root {
            Tensor::from_slice(bytes).to_device(self.device)
        } else {
            Tensor::zeros([n], (tch::Kind::Uint8, self.device))
        };
        self.broadcast(&buf, root)?;
        Vec::<u8>::try_from(&buf.to_device(Device::Cpu)).map_err(TrainError::Torch)
    }

    /// Every rank's bytes, in rank order.
    pub fn all_gather_bytes(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, TrainError> {
        let len = Tensor::from_slice(&[bytes.len() as i64]).to_device(self.device);
        let lens = Vec::<i64>::try_from(&self.all_gather(&len)?.to_device(Device::Cpu))
            .map_err(TrainError::Torch)?;
        let most = lens.iter().copied().max().unwrap_or(0).max(1);
        let mut padded = bytes.to_vec();
        padded.resize(most as usize, 0);
        let all = self.all_gather(&Tensor::from_slice(&padded).to_device(self.device))?;
        let all = Vec::<u8>::try_from(&all.to_device(Device::Cpu)).map_err(TrainError::Torch)?;
        Ok(all
            .chunks(most as usize)
            .zip(&lens)
            .map(|(c, &n)| c[..(n.max(0) as usize).min(c.len())].to_vec())
            .collect())
    }

    /// Rows `[n_r, ...]` of every rank, where rank r holds
    /// [`share`]`(total, r, world)` of `total` rows, concatenated in rank
    /// order (`[total, ...]`, on the input's device).
    pub fn all_gather_shares(&self, x: &Tensor, total: u64) -> Result<Tensor, TrainError> {
        let most = share(total, 0, self.world).count() as i64;
        let mut shape = x.size();
        let have = shape[0];
        shape[0] = most - have;
        let padded = Tensor::cat(
            &[
                x.shallow_clone(),
                Tensor::zeros(shape.as_slice(), (x.kind(), x.device())),
            ],
            0,
        );
        let all = self
            .all_gather(&padded.to_device(self.device))?
            .to_device(x.device());
        let parts: Vec<Tensor> = (0..self.world)
            .map(|r| {
                all.narrow(
                    0,
                    r as i64 * most,
                    share(total, r, self.world).count() as i64,
                )
            })
            .collect();
        Ok(Tensor::cat(&parts, 0))
    }
}

/// The merge synchronised BatchNorm makes of per-rank moments on the CPU:
/// `mean_all` and `invstd_all` (`[world, C]`: each part's mean and
/// 1/sqrt(var + eps)) and `counts` (`[world]`) as the whole batch's `[2, C]`
/// mean and 1/sqrt(var + eps).
#[cfg(all(test, feature = "dist"))]
pub(crate) fn merge_moments(
    mean_all: &Tensor,
    invstd_all: &Tensor,
    counts: &Tensor,
    eps: f64,
) -> Result<Tensor, String> {
    let mut err = vec![0u8; ERR_LEN];
    // SAFETY: the three are live tensor handles; the shim returns a new heap
    // `at::Tensor*` or null with `err` filled (at most ERR_LEN bytes).
    let out = unsafe {
        fnc_dist_merge_moments(
            mean_all.as_ptr() as *mut C_tensor,
            invstd_all.as_ptr() as *mut C_tensor,
            counts.as_ptr() as *mut C_tensor,
            eps,
            err.as_mut_ptr().cast(),
            ERR_LEN,
        )
    };
    if out.is_null() {
        return Err(err_text(&err));
    }
    // SAFETY: non-null and freshly allocated by the shim for us.
    Ok(unsafe { Tensor::from_ptr(out) })
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: the pointer came from fnc_dist_new and is freed only here.
        unsafe { fnc_dist_free(self.ptr.as_ptr()) }
    }
}
