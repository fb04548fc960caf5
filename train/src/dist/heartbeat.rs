//! Which rank stopped: every rank says it is alive in the rendezvous store
//! each second (through a store connection of its own), and a rank whose
//! collective failed reads the others' beats (through another) to name the
//! one that went silent.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::time::Duration;

use super::ffi::*;
use super::group::{err_text, ProcessGroup, ERR_LEN};

/// What a failed store read means: rank 0 serves the store.
const STORE_GONE: &str =
    "; rank 0, which serves the rendezvous store, cannot be reached (it died or hangs)";

/// How often each rank says it is alive in the rendezvous store.
const HEARTBEAT: Duration = Duration::from_secs(1);

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
}
