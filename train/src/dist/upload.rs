//! Batches uploaded to the GPU on a side stream (`csrc/upload.cpp`, in the
//! shim where libtorch has CUDA): the feed thread starts the copy from pinned
//! memory and the training thread's stream waits for it, not its host.
//! Elsewhere (a build without the shim or without CUDA headers) the copy is
//! made from pinned memory without blocking on the current stream.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::ptr::NonNull;

use tch::{Device, Tensor};

use super::ffi::*;
use super::group::{err_text, ERR_LEN};

/// A tensor on its way to the GPU and the event its copy records.
#[derive(Debug)]
pub struct Upload {
    pub tensor: Tensor,
    event: Option<NonNull<c_void>>,
}

// SAFETY: the event is a heap `c10::Event` (CUDA) owned by this value alone;
// CUDA events may be waited for and destroyed from any thread, and tch's
// tensors are Send.
unsafe impl Send for Upload {}

/// Starts the upload of `host` (a CPU tensor) to `device`: on CUDA on a side
/// stream when the build has them, else from pinned memory without blocking
/// on the current stream; on the CPU, `host` itself.
pub fn upload(host: &Tensor, device: Device) -> Upload {
    let Device::Cuda(index) = device else {
        return Upload::here(&host.to_device(device));
    };
    // SAFETY: a pure query without arguments.
    if unsafe { fnc_cuda_side_uploads() } != 0 {
        let mut event: *mut c_void = std::ptr::null_mut();
        let mut err = vec![0u8; ERR_LEN];
        // SAFETY: `host` is a live tensor handle; the shim writes a heap event
        // pointer into `event` and returns a new heap `at::Tensor*`, or null
        // with at most ERR_LEN bytes in `err` (and no event).
        let out = unsafe {
            fnc_cuda_upload(
                host.as_ptr() as *mut torch_sys::C_tensor,
                index as i32,
                &mut event,
                err.as_mut_ptr().cast(),
                ERR_LEN,
            )
        };
        if !out.is_null() {
            return Upload {
                // SAFETY: non-null and freshly allocated by the shim for us.
                tensor: unsafe { Tensor::from_ptr(out) },
                event: NonNull::new(event),
            };
        }
        // No side stream could be had: the plain upload below.
    }
    Upload {
        tensor: host
            .pin_memory(device)
            .to_device_(device, host.kind(), true, false),
        event: None,
    }
}

impl Upload {
    /// `t` where it is (the CPU): nothing to wait for.
    pub fn here(t: &Tensor) -> Upload {
        Upload {
            tensor: t.shallow_clone(),
            event: None,
        }
    }

    /// The tensor, once the calling thread's stream waits for its copy (the
    /// host does not).
    pub fn ready(mut self) -> Result<Tensor, String> {
        if let Some(event) = self.event.take() {
            let mut err = vec![0u8; ERR_LEN];
            // SAFETY: `event` came from fnc_cuda_upload and is consumed (and
            // freed) exactly once, here; the tensor handle is live.
            let rc = unsafe {
                fnc_cuda_upload_wait(
                    event.as_ptr(),
                    self.tensor.as_ptr() as *mut torch_sys::C_tensor,
                    err.as_mut_ptr().cast(),
                    ERR_LEN,
                )
            };
            if rc != 0 {
                return Err(err_text(&err));
            }
        }
        Ok(self.tensor.shallow_clone())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(event) = self.event.take() {
            // SAFETY: an event not consumed by `ready` is freed once, here.
            unsafe { fnc_cuda_upload_free(event.as_ptr()) }
        }
    }
}
