//! Which rank stopped: every rank says it is alive in the rendezvous store
//! each second (through a store connection of its own), and a rank whose
//! collective failed reads the others' beats (through another) to name the
//! one that went silent.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::ffi::*;
use super::group::{err_text, ProcessGroup, ERR_LEN};

/// What a failed store read means: rank 0 serves the store.
const STORE_GONE: &str =
    "; rank 0, which serves the rendezvous store, cannot be reached (it died or hangs)";

/// How often each rank says it is alive in the rendezvous store.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Beats a rank may miss (or store reads fail running) before the NCCL
/// watch calls it stopped.
const SILENT: u32 = 10;

/// What the NCCL watch remembers between looks: each rank's last beat and
/// how many looks it stayed the same, and how many looks running the store
/// could not be reached.
struct Watch {
    seen: Vec<(Option<String>, u32)>,
    unreachable: u32,
}

impl ProcessGroup {
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
    ///
    /// Under NCCL no collective fails on the host (they are waited on the
    /// CUDA stream), so the beats are also watched: rank 0 watches every
    /// rank and posts one silent for [`SILENT`] beats; every other rank
    /// watches rank 0 and reads that post. A rank that learns of a stopped
    /// rank (or cannot reach the store [`SILENT`] times running) notes the
    /// failure for the step to report and aborts its communicators, so
    /// that kernels waiting for the dead rank end. The watch ends with the
    /// run ([`ProcessGroup::shutdown`]).
    pub fn start_heartbeat(&'static self) {
        let watch = self.backend == "nccl";
        let _ = std::thread::Builder::new()
            .name("fnc-heartbeat".into())
            .spawn(move || {
                let mut n = 0u64;
                let mut w = Watch {
                    seen: vec![(None, 0); self.world],
                    unreachable: 0,
                };
                loop {
                    if self.finished.load(Ordering::Relaxed) {
                        return;
                    }
                    n += 1;
                    let beat = self.store_set(&format!("alive/{}", self.rank), &n.to_string());
                    if !watch {
                        if beat.is_err() {
                            return;
                        }
                    } else if let Some(why) = self.watch(&mut w, beat.is_ok()) {
                        if !self.finished.load(Ordering::Relaxed) {
                            super::note_failure(&self.error("watchdog", why));
                            let _ = self.abort();
                        }
                        return;
                    }
                    std::thread::sleep(HEARTBEAT);
                }
            });
    }

    /// One look of the NCCL watch (see [`start_heartbeat`]): the failure to
    /// report, if any.
    ///
    /// [`start_heartbeat`]: ProcessGroup::start_heartbeat
    fn watch(&self, w: &mut Watch, beat_ok: bool) -> Option<String> {
        let mut reached = beat_ok;
        // Rank 0 watches everyone; the others watch rank 0.
        let watched: Vec<usize> = if self.rank == 0 {
            (1..self.world).collect()
        } else {
            vec![0]
        };
        for r in watched {
            let now = match self.store_get(&format!("alive/{r}")) {
                Ok(now) => now,
                Err(_) => {
                    reached = false;
                    continue;
                }
            };
            let (last, quiet) = &mut w.seen[r];
            *quiet = if now.is_some() && now == *last {
                *quiet + 1
            } else {
                0
            };
            *last = now;
            if *quiet >= SILENT {
                let why = format!(
                    "rank {r} stopped (no heartbeat for {} s: it died or hangs)",
                    SILENT as u64 * HEARTBEAT.as_secs()
                );
                let _ = self.store_set("failed", &why);
                return Some(why);
            }
        }
        if self.rank != 0 {
            match self.store_get("failed") {
                Ok(Some(why)) => return Some(why),
                Ok(None) => {}
                Err(_) => reached = false,
            }
        }
        w.unreachable = if reached { 0 } else { w.unreachable + 1 };
        (w.unreachable >= SILENT).then(|| STORE_GONE.trim_start_matches("; ").to_string())
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
}
