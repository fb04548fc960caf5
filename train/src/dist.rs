//! Data-parallel training on libtorch's own distributed engine (c10d): a
//! TCPStore rendezvous and a Gloo (CPU) or NCCL (CUDA) process group, reached
//! through the C++ shim `csrc/dist.cpp`, and how a process learns its place in
//! the world (torchrun's and Slurm's environments).
//!
//! The FFI calls are the only `unsafe` of this crate: each passes tch's own
//! `at::Tensor` handles (which outlive the call) and a group pointer this
//! module owns, and the shim catches every C++ exception into an error string.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CString};
use std::ptr::NonNull;
use std::sync::OnceLock;
use std::time::Duration;

use tch::{Device, Tensor};
use torch_sys::C_tensor;

use crate::error::TrainError;

extern "C" {
    fn fnc_dist_has_nccl() -> c_int;
    fn fnc_dist_new(
        backend: c_int,
        host: *const c_char,
        port: c_int,
        serve: c_int,
        rank: c_int,
        world: c_int,
        timeout_ms: i64,
        err: *mut c_char,
        errlen: usize,
    ) -> *mut c_void;
    fn fnc_dist_free(group: *mut c_void);
    fn fnc_dist_all_reduce(
        group: *mut c_void,
        t: *mut C_tensor,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    fn fnc_dist_all_reduce_autograd(
        group: *mut c_void,
        x: *mut C_tensor,
        err: *mut c_char,
        errlen: usize,
    ) -> *mut C_tensor;
    fn fnc_dist_all_gather(
        group: *mut c_void,
        x: *mut C_tensor,
        out: *mut C_tensor,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    fn fnc_dist_broadcast(
        group: *mut c_void,
        t: *mut C_tensor,
        root: c_int,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    fn fnc_dist_barrier(group: *mut c_void, err: *mut c_char, errlen: usize) -> c_int;
    fn fnc_dist_store_set(
        group: *mut c_void,
        key: *const c_char,
        value: *const c_char,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    fn fnc_dist_shutdown(group: *mut c_void, err: *mut c_char, errlen: usize) -> c_int;
    fn fnc_dist_store_get(
        group: *mut c_void,
        key: *const c_char,
        out: *mut c_char,
        outlen: usize,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
}

/// What a failed store read means: rank 0 serves the store.
const STORE_GONE: &str =
    "; rank 0, which serves the rendezvous store, cannot be reached (it died or hangs)";

/// How often each rank says it is alive in the rendezvous store.
const HEARTBEAT: Duration = Duration::from_secs(1);

const ERR_LEN: usize = 2048;

/// Which collective library carries the tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// NCCL on CUDA, Gloo on the CPU.
    Auto,
    Gloo,
    Nccl,
}

/// Where this process stands in a multi-process run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub rank: usize,
    pub world: usize,
    /// Rank on this machine: its GPU is `local_rank` modulo the visible ones.
    pub local_rank: usize,
    /// Ranks on this machine (they share its cores and GPUs).
    pub local_world: usize,
    pub master_addr: String,
    pub master_port: u16,
    /// The launcher serves the rendezvous store (torchrun's agent store), so
    /// rank 0 joins it instead of serving one.
    pub agent_store: bool,
}

/// The default rendezvous port (torchrun's).
pub const DEFAULT_PORT: u16 = 29500;

impl Launch {
    /// The launch described by the environment: torchrun's `RANK`,
    /// `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`, or else
    /// Slurm's `SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID` with the first
    /// host of the job's node list as the master. `None` for one process.
    pub fn from_env() -> Result<Option<Launch>, TrainError> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// [`Launch::from_env`] over any variable lookup (tests).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Launch>, TrainError> {
        let num = |key: &str| -> Result<Option<usize>, TrainError> {
            match var(key) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| TrainError::Config {
                    flag: "environment",
                    detail: format!("{key}={v:?} is not a number"),
                }),
            }
        };
        // An explicit WORLD_SIZE (even 1: a one-rank group, e.g. to check a
        // backend) makes a group; Slurm's variables only from 2 tasks on.
        let (rank, world, local, local_world) = if let Some(world) = num("WORLD_SIZE")? {
            let rank = num("RANK")?.ok_or_else(|| TrainError::Config {
                flag: "environment",
                detail: "WORLD_SIZE is set but RANK is not".into(),
            })?;
            let local_world = num("LOCAL_WORLD_SIZE")?.unwrap_or(world);
            (rank, world, num("LOCAL_RANK")?.unwrap_or(rank), local_world)
        } else if let Some(world) = num("SLURM_NTASKS")?.filter(|&w| w > 1) {
            let rank = num("SLURM_PROCID")?.unwrap_or(0);
            let node = num("SLURM_NODEID")?.unwrap_or(0);
            let local_world = match num("SLURM_NTASKS_PER_NODE") {
                Ok(Some(n)) => n,
                _ => var("SLURM_TASKS_PER_NODE")
                    .and_then(|t| tasks_on_node(&t, node))
                    .unwrap_or(world),
            };
            (rank, world, num("SLURM_LOCALID")?.unwrap_or(0), local_world)
        } else {
            return Ok(None);
        };
        if world == 0 {
            return Err(TrainError::Config {
                flag: "environment",
                detail: "WORLD_SIZE=0".into(),
            });
        }
        if rank >= world {
            return Err(TrainError::Config {
                flag: "environment",
                detail: format!("rank {rank} is not below the world size {world}"),
            });
        }
        if local_world == 0 || local >= local_world {
            return Err(TrainError::Config {
                flag: "environment",
                detail: format!(
                    "local rank {local} is not below the ranks on this node ({local_world})"
                ),
            });
        }
        let master_addr = var("MASTER_ADDR")
            .filter(|s| !s.is_empty())
            .or_else(|| {
                var("SLURM_JOB_NODELIST")
                    .or_else(|| var("SLURM_NODELIST"))
                    .map(|l| first_host(&l))
            })
            .unwrap_or_else(|| "127.0.0.1".into());
        let master_port = match var("MASTER_PORT") {
            Some(p) => p.trim().parse().map_err(|_| TrainError::Config {
                flag: "environment",
                detail: format!("MASTER_PORT={p:?} is not a port"),
            })?,
            None => DEFAULT_PORT,
        };
        Ok(Some(Launch {
            rank,
            world,
            local_rank: local,
            local_world,
            master_addr,
            master_port,
            agent_store: var("TORCHELASTIC_USE_AGENT_STORE").as_deref() == Some("True"),
        }))
    }
}

/// The tasks on node `node` of Slurm's `SLURM_TASKS_PER_NODE` (`2(x3),1`:
/// nodes 0-2 run 2 tasks, node 3 runs 1).
pub fn tasks_on_node(list: &str, node: usize) -> Option<usize> {
    let mut seen = 0usize;
    for part in list.split(',') {
        let (n, times) = match part.split_once("(x") {
            Some((n, t)) => (n, t.trim_end_matches(')').parse::<usize>().ok()?),
            None => (part, 1),
        };
        let n: usize = n.trim().parse().ok()?;
        seen += times;
        if node < seen {
            return Some(n);
        }
    }
    None
}

/// The first host of a Slurm node list: `gpu[03-05,9],cpu1` -> `gpu03`.
pub fn first_host(list: &str) -> String {
    let mut depth = 0;
    let mut end = list.len();
    for (i, ch) in list.char_indices() {
        match ch {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    let first = &list[..end];
    match first.split_once('[') {
        Some((prefix, rest)) => {
            let range = rest.trim_end_matches(']');
            let start = range.split([',', '-']).next().unwrap_or("");
            format!("{prefix}{start}")
        }
        None => first.to_string(),
    }
}

/// A process group of `world` ranks. Collectives wait at most the timeout it
/// was made with, then fail naming this rank.
#[derive(Debug)]
pub struct ProcessGroup {
    ptr: NonNull<c_void>,
    pub rank: usize,
    pub world: usize,
    pub local_rank: usize,
    /// Ranks on this machine.
    pub local_world: usize,
    /// The rank's device: where its model runs and its collectives' tensors live.
    pub device: Device,
    pub backend: &'static str,
}

// SAFETY: the group is a c10d backend, which is made for use from several
// threads (the training thread issues collectives; the autograd engine's
// thread runs the backward of the differentiable all-reduce); the store
// connections the heartbeat and the diagnosis use are each their own (and the
// probe's is locked in the shim). The pointer holds one reference of the
// shim's reference-counted group, given back once, in Drop; autograd nodes of
// `all_reduce_autograd` hold references of their own, so a graph that outlives
// this handle still has its group.
unsafe impl Send for ProcessGroup {}
// SAFETY: as for Send: c10d backends serialise their own work queues.
unsafe impl Sync for ProcessGroup {}

fn err_text(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).trim().to_string()
}

impl ProcessGroup {
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

    fn failed(&self, op: &'static str, err: &[u8]) -> TrainError {
        TrainError::Dist {
            rank: self.rank,
            world: self.world,
            op,
            detail: format!("{}{}", err_text(err), self.diagnosis()),
        }
    }

    fn store_set(&self, key: &str, value: &str) -> Result<(), String> {
        let (k, v) = (CString::new(key), CString::new(value));
        let (Ok(k), Ok(v)) = (k, v) else {
            return Err("a key or value with a NUL byte".into());
        };
        let mut err = vec![0u8; ERR_LEN];
        // SAFETY: the strings and `err` outlive the call; the shim writes at
        // most ERR_LEN bytes into `err`.
        let rc = unsafe {
            fnc_dist_store_set(
                self.ptr.as_ptr(),
                k.as_ptr(),
                v.as_ptr(),
                err.as_mut_ptr().cast(),
                ERR_LEN,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(err_text(&err))
        }
    }

    fn store_get(&self, key: &str) -> Result<Option<String>, String> {
        let k = CString::new(key).map_err(|_| "a key with a NUL byte".to_string())?;
        let mut out = vec![0u8; 256];
        let mut err = vec![0u8; ERR_LEN];
        // SAFETY: as in store_set; `out` takes at most its 256 bytes.
        let rc = unsafe {
            fnc_dist_store_get(
                self.ptr.as_ptr(),
                k.as_ptr(),
                out.as_mut_ptr().cast(),
                out.len(),
                err.as_mut_ptr().cast(),
                ERR_LEN,
            )
        };
        match rc {
            1 => Ok(Some(err_text(&out))),
            0 => Ok(None),
            _ => Err(err_text(&err)),
        }
    }

    /// Says, every second from a thread of its own, that this rank is alive,
    /// so that when a collective fails the others can tell which rank
    /// stopped (a rank blocked in a collective still beats).
    pub fn start_heartbeat(&'static self) {
        let _ = std::thread::Builder::new()
            .name("fnc-heartbeat".into())
            .spawn(move || {
                let mut n = 0u64;
                loop {
                    n += 1;
                    if self
                        .store_set(&format!("alive/{}", self.rank), &n.to_string())
                        .is_err()
                    {
                        return;
                    }
                    std::thread::sleep(HEARTBEAT);
                }
            });
    }

    /// Which other ranks stopped beating: their heartbeats are watched for
    /// three beats. Text to append to an error ("" when nothing is known).
    pub fn diagnosis(&self) -> String {
        let read = |r: usize| self.store_get(&format!("alive/{r}"));
        let others: Vec<usize> = (0..self.world).filter(|&r| r != self.rank).collect();
        let before: Result<Vec<Option<String>>, String> = others.iter().map(|&r| read(r)).collect();
        let before = match before {
            Ok(b) => b,
            Err(_) => return STORE_GONE.into(),
        };
        std::thread::sleep(HEARTBEAT * 3);
        let mut silent = Vec::new();
        for (&r, b) in others.iter().zip(&before) {
            match read(r) {
                Ok(now) if now.is_some() && now != *b => {}
                Ok(_) => silent.push(r.to_string()),
                Err(_) => return STORE_GONE.into(),
            }
        }
        if silent.is_empty() {
            String::new()
        } else {
            format!(
                "; rank {} stopped (no heartbeat for {} s: it died or hangs)",
                silent.join(", rank "),
                3 * HEARTBEAT.as_secs()
            )
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
            return Err(TrainError::Dist {
                rank: self.rank,
                world: self.world,
                op: "all-reduce (autograd)",
                detail: err_text(&err),
            });
        }
        // SAFETY: non-null and freshly allocated by the shim for us.
        Ok(unsafe { Tensor::from_ptr(out) })
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

    /// Sums gradients over the ranks in place, in buckets of about 25 MB per
    /// dtype and device (one collective per bucket rather than per tensor).
    pub fn all_reduce_grads(&self, grads: &[Tensor]) -> Result<(), TrainError> {
        const BUCKET: i64 = 25 << 20;
        let mut bucket: Vec<&Tensor> = Vec::new();
        let mut bytes = 0i64;
        let flush = |bucket: &mut Vec<&Tensor>| -> Result<(), TrainError> {
            if bucket.is_empty() {
                return Ok(());
            }
            let flat: Vec<Tensor> = bucket.iter().map(|g| g.reshape([-1])).collect();
            let joined = Tensor::cat(&flat, 0);
            self.all_reduce(&joined)?;
            let mut at = 0;
            for g in bucket.iter() {
                let n = g.numel() as i64;
                let mut g = g.shallow_clone();
                let part = joined.narrow(0, at, n).view_as(&g);
                g.copy_(&part);
                at += n;
            }
            bucket.clear();
            Ok(())
        };
        for g in grads.iter().filter(|g| g.defined()) {
            if let Some(first) = bucket.first() {
                if first.kind() != g.kind() || first.device() != g.device() || bytes >= BUCKET {
                    flush(&mut bucket)?;
                    bytes = 0;
                }
            }
            bytes += g.numel() as i64 * g.kind().elt_size_in_bytes() as i64;
            bucket.push(g);
        }
        flush(&mut bucket)
    }

    /// Embeddings `z` (this rank's `[views * b, d]`, view-major) as the
    /// global batch's `[views * world * b, d]` (view-major, images in rank
    /// order), every row differentiable: each rank places its rows in a zero
    /// matrix of the global shape and the ranks' matrices are summed by the
    /// all-reduce whose backward all-reduces, so each rank's rows receive the
    /// gradient of every rank's part of the loss.
    pub fn gather_views_live(&self, z: &Tensor, views: i64) -> Result<Tensor, TrainError> {
        let (n, d) = (z.size()[0], z.size()[1]);
        let b = n / views;
        let w = self.world as i64;
        let r = self.rank as i64;
        let opts = (z.kind(), z.device());
        let mine = z.view([1, views, b, d]);
        let placed = Tensor::cat(
            &[
                Tensor::zeros([r, views, b, d], opts),
                mine,
                Tensor::zeros([w - r - 1, views, b, d], opts),
            ],
            0,
        );
        Ok(view_major(&self.all_reduce_autograd(&placed)?, w, views))
    }

    /// The images of the global batch whose anchors this rank computes.
    pub fn shard(&self, local_images: i64) -> crate::loss::Shard {
        crate::loss::Shard {
            first: self.rank as i64 * local_images,
            count: local_images,
        }
    }

    /// Embeddings `z` (this rank's `[views * b, d]`, view-major) as the
    /// global batch's `[views * world * b, d]`, view-major, images in rank
    /// order, without gradient (the momentum encoder's keys).
    pub fn gather_views(&self, z: &Tensor, views: i64) -> Result<Tensor, TrainError> {
        Ok(view_major(&self.all_gather(z)?, self.world as i64, views))
    }
}

/// Rank `rank`'s contiguous share of `total` items split over `world` ranks
/// (the first `total % world` ranks take one more).
pub fn share(total: u64, rank: usize, world: usize) -> std::ops::Range<u64> {
    let (w, r) = (world.max(1) as u64, rank as u64);
    let (base, extra) = (total / w, total % w);
    let start = r * base + r.min(extra);
    start..start + base + u64::from(r < extra)
}

/// Rank-major rows (`[world * views * b, d]` or `[world, views, b, d]`, each
/// rank's block view-major) as the global batch's view-major
/// `[views * world * b, d]`.
fn view_major(rows: &Tensor, world: i64, views: i64) -> Tensor {
    let d = rows.size().last().copied().unwrap_or(1);
    let n = rows.numel() as i64 / d;
    rows.view([world, views, n / (world * views), d])
        .transpose(0, 1)
        .reshape([n, d])
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: the pointer came from fnc_dist_new and is freed only here.
        unsafe { fnc_dist_free(self.ptr.as_ptr()) }
    }
}

static SYNC_BN: OnceLock<ProcessGroup> = OnceLock::new();

/// Makes `group` this process's group and, when `sync_bn`, turns on global
/// BatchNorm statistics in training mode. A process has at most one group.
pub fn install(group: ProcessGroup, sync_bn: bool) -> &'static ProcessGroup {
    let g = SYNC_BN.get_or_init(|| group);
    SYNC.store(sync_bn, std::sync::atomic::Ordering::Relaxed);
    g
}

static SYNC: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

static FAILURE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Records a collective that failed where no error can be returned (inside a
/// module's forward); the step reports it through [`take_failure`].
pub(crate) fn note_failure(e: &TrainError) {
    let text = match e {
        TrainError::Dist { op, detail, .. } => format!("{op}: {detail}"),
        other => other.to_string(),
    };
    if let Ok(mut f) = FAILURE.lock() {
        f.get_or_insert(text);
    }
}

/// Whether a collective failure was noted and not yet reported: the group is
/// then broken, and further collectives of the step would only wait again.
pub(crate) fn has_failed() -> bool {
    FAILURE.lock().map(|f| f.is_some()).unwrap_or(true)
}

/// The first collective failure noted since the last call, if any.
pub fn take_failure() -> Option<String> {
    FAILURE.lock().ok().and_then(|mut f| f.take())
}

/// The group whose ranks BatchNorm synchronises over, when that is on.
pub fn sync_group() -> Option<&'static ProcessGroup> {
    if SYNC.load(std::sync::atomic::Ordering::Relaxed) {
        SYNC_BN.get()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn torchrun_and_slurm_environments_are_read() {
        assert_eq!(Launch::from_vars(env(&[])).unwrap(), None);
        let l = Launch::from_vars(env(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "10.0.0.2"),
            ("MASTER_PORT", "1234"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            (
                l.rank,
                l.world,
                l.local_rank,
                l.master_addr.as_str(),
                l.master_port
            ),
            (3, 4, 1, "10.0.0.2", 1234)
        );
        let s = Launch::from_vars(env(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_JOB_NODELIST", "gpu[07-08,11],cpu1"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            (
                s.rank,
                s.world,
                s.local_rank,
                s.master_addr.as_str(),
                s.master_port
            ),
            (5, 8, 1, "gpu07", DEFAULT_PORT)
        );
        assert_eq!(
            Launch::from_vars(env(&[("RANK", "0"), ("WORLD_SIZE", "1")]))
                .unwrap()
                .map(|l| l.world),
            Some(1),
            "an explicit world of one is a group"
        );
        assert_eq!(
            Launch::from_vars(env(&[("SLURM_NTASKS", "1")])).unwrap(),
            None
        );
        for bad in [
            vec![("WORLD_SIZE", "2")],
            vec![("WORLD_SIZE", "2"), ("RANK", "2")],
            vec![("WORLD_SIZE", "two"), ("RANK", "0")],
            vec![("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_PORT", "x")],
        ] {
            let e = Launch::from_vars(env(&bad)).unwrap_err().to_string();
            assert!(e.contains("environment"), "{e}");
        }
    }

    fn world_of_one() -> ProcessGroup {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let launch = Launch {
            rank: 0,
            world: 1,
            local_rank: 0,
            local_world: 1,
            master_addr: "127.0.0.1".into(),
            master_port: port,
            agent_store: false,
        };
        ProcessGroup::new(&launch, Backend::Gloo, Device::Cpu, Duration::from_secs(20)).unwrap()
    }

    #[test]
    fn a_graph_keeps_its_group_alive_after_its_handle_is_dropped() {
        let g = world_of_one();
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0]).set_requires_grad(true);
        let y = g.all_reduce_autograd(&x).unwrap();
        // The handle goes; the graph's node still holds the group.
        drop(g);
        let grad = Tensor::run_backward(&[(&y * 2.0).sum(tch::Kind::Float)], &[&x], false, false);
        assert_eq!(Vec::<f32>::try_from(&grad[0]).unwrap(), vec![2.0, 2.0, 2.0]);
        // Shutting down is idempotent.
        let g = world_of_one();
        g.shutdown().unwrap();
        g.shutdown().unwrap();
    }

    #[test]
    fn bytes_and_uneven_shares_travel_whole() {
        let g = world_of_one();
        assert_eq!(
            g.broadcast_bytes(b"{\"Ok\":null}", 0).unwrap(),
            b"{\"Ok\":null}"
        );
        assert_eq!(g.broadcast_bytes(b"", 0).unwrap(), b"");
        assert_eq!(g.all_gather_bytes(b"xyz").unwrap(), vec![b"xyz".to_vec()]);
        let x = Tensor::arange(5, (tch::Kind::Float, Device::Cpu)).view([5, 1]);
        assert!(g.all_gather_shares(&x, 5).unwrap().equal(&x));
        for (total, world) in [(10u64, 3usize), (2, 4), (0, 2), (7, 1)] {
            let parts: Vec<_> = (0..world).map(|r| share(total, r, world)).collect();
            assert_eq!(parts.first().map(|p| p.start), Some(0));
            assert_eq!(parts.last().map(|p| p.end), Some(total));
            for w in parts.windows(2) {
                assert_eq!(w[0].end, w[1].start);
                assert!(w[0].end - w[0].start >= w[1].end - w[1].start);
            }
        }
    }

    #[test]
    fn slurm_tasks_per_node_are_read() {
        assert_eq!(tasks_on_node("4(x2),1", 0), Some(4));
        assert_eq!(tasks_on_node("4(x2),1", 1), Some(4));
        assert_eq!(tasks_on_node("4(x2),1", 2), Some(1));
        assert_eq!(tasks_on_node("4(x2),1", 3), None);
        assert_eq!(tasks_on_node("8", 0), Some(8));
        let s = Launch::from_vars(env(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_NODEID", "1"),
            ("SLURM_TASKS_PER_NODE", "4(x2)"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!((s.local_rank, s.local_world), (1, 4));
        let e = Launch::from_vars(env(&[
            ("RANK", "1"),
            ("WORLD_SIZE", "2"),
            ("LOCAL_RANK", "3"),
            ("LOCAL_WORLD_SIZE", "2"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("local rank 3"), "{e}");
    }

    #[test]
    fn first_hosts_of_node_lists() {
        assert_eq!(first_host("node1"), "node1");
        assert_eq!(first_host("a1,a2"), "a1");
        assert_eq!(first_host("n[01-04]"), "n01");
        assert_eq!(first_host("n[3,5-6],m2"), "n3");
    }
}
