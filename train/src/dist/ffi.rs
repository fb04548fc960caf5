//! The C API of the c10d shim (`csrc/dist.cpp`), built with the default
//! `dist` feature. Without it (`cargo build --no-default-features`, for a
//! machine without libgloo-dev) the same functions exist in Rust and every
//! group fails to start, saying why: the trainer then runs one process.

#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void};

use torch_sys::C_tensor;

#[cfg(feature = "dist")]
extern "C" {
    pub(crate) fn fnc_dist_has_nccl() -> c_int;
    pub(crate) fn fnc_dist_live_groups() -> c_int;
    pub(crate) fn fnc_dist_new(
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
    pub(crate) fn fnc_dist_free(group: *mut c_void);
    pub(crate) fn fnc_dist_all_reduce(
        group: *mut c_void,
        t: *mut C_tensor,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    pub(crate) fn fnc_dist_all_reduce_autograd(
        group: *mut c_void,
        x: *mut C_tensor,
        err: *mut c_char,
        errlen: usize,
    ) -> *mut C_tensor;
    pub(crate) fn fnc_dist_all_gather(
        group: *mut c_void,
        x: *mut C_tensor,
        out: *mut C_tensor,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    pub(crate) fn fnc_dist_broadcast(
        group: *mut c_void,
        t: *mut C_tensor,
        root: c_int,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    pub(crate) fn fnc_dist_barrier(group: *mut c_void, err: *mut c_char, errlen: usize) -> c_int;
    pub(crate) fn fnc_dist_store_set(
        group: *mut c_void,
        key: *const c_char,
        value: *const c_char,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    pub(crate) fn fnc_dist_shutdown(group: *mut c_void, err: *mut c_char, errlen: usize) -> c_int;
    pub(crate) fn fnc_dist_store_get(
        group: *mut c_void,
        key: *const c_char,
        out: *mut c_char,
        outlen: usize,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    pub(crate) fn fnc_dist_host_waits() -> i64;
    pub(crate) fn fnc_cuda_side_uploads() -> c_int;
    pub(crate) fn fnc_cuda_upload(
        host: *mut C_tensor,
        device: c_int,
        event: *mut *mut c_void,
        err: *mut c_char,
        errlen: usize,
    ) -> *mut C_tensor;
    pub(crate) fn fnc_cuda_upload_wait(
        event: *mut c_void,
        t: *mut C_tensor,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    pub(crate) fn fnc_cuda_upload_free(event: *mut c_void);
    pub(crate) fn fnc_dist_all_reduce_start(
        group: *mut c_void,
        t: *mut C_tensor,
        err: *mut c_char,
        errlen: usize,
    ) -> *mut c_void;
    pub(crate) fn fnc_dist_work_wait(
        pending: *mut c_void,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    pub(crate) fn fnc_dist_abort(group: *mut c_void, err: *mut c_char, errlen: usize) -> c_int;
    pub(crate) fn fnc_dist_sync_batch_norm(
        group: *mut c_void,
        x: *mut C_tensor,
        weight: *mut C_tensor,
        bias: *mut C_tensor,
        running_mean: *mut C_tensor,
        running_var: *mut C_tensor,
        momentum: f64,
        eps: f64,
        err: *mut c_char,
        errlen: usize,
    ) -> *mut C_tensor;
    #[cfg(test)]
    pub(crate) fn fnc_dist_merge_moments(
        mean_all: *mut C_tensor,
        invstd_all: *mut C_tensor,
        counts: *mut C_tensor,
        eps: f64,
        err: *mut c_char,
        errlen: usize,
    ) -> *mut C_tensor;
}

#[cfg(not(feature = "dist"))]
pub(crate) use off::*;

/// The shim's entry points for a build without it: no group can be made, so
/// the others are never reached with a group; they fail alike. `unsafe` as
/// the C functions they stand for: `err` must point to `errlen` writable
/// bytes.
#[cfg(not(feature = "dist"))]
#[allow(clippy::too_many_arguments)]
mod off {
    use super::*;

    const WHY: &str = "this fnc-train was built without data-parallel support (cargo \
        --no-default-features); rebuild it with the default features (they need \
        libgloo-dev) to train on several processes";

    /// # Safety
    /// `err` is null or points to `errlen` writable bytes.
    unsafe fn say(err: *mut c_char, errlen: usize) {
        let n = WHY.len().min(errlen.saturating_sub(1));
        if err.is_null() || errlen == 0 {
            return;
        }
        // SAFETY: per this function's contract `err` holds `errlen` bytes; at
        // most errlen - 1 bytes and a NUL are written.
        unsafe {
            std::ptr::copy_nonoverlapping(WHY.as_ptr(), err.cast::<u8>(), n);
            *err.add(n) = 0;
        }
    }

    pub(crate) unsafe fn fnc_dist_has_nccl() -> c_int {
        0
    }
    pub(crate) unsafe fn fnc_dist_live_groups() -> c_int {
        0
    }
    pub(crate) unsafe fn fnc_dist_new(
        _backend: c_int,
        _host: *const c_char,
        _port: c_int,
        _serve: c_int,
        _rank: c_int,
        _world: c_int,
        _timeout_ms: i64,
        err: *mut c_char,
        errlen: usize,
    ) -> *mut c_void {
        // SAFETY: the caller passes `errlen` writable bytes at `err`.
        unsafe { say(err, errlen) };
        std::ptr::null_mut()
    }
    pub(crate) unsafe fn fnc_dist_free(_group: *mut c_void) {}
    pub(crate) unsafe fn fnc_dist_all_reduce(
        _group: *mut c_void,
        _t: *mut C_tensor,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int {
        // SAFETY: the caller passes `errlen` writable bytes at `err`.
        unsafe { say(err, errlen) };
        1
    }
    pub(crate) unsafe fn fnc_dist_all_reduce_autograd(
        _group: *mut c_void,
        _x: *mut C_tensor,
        err: *mut c_char,
        errlen: usize,
    ) -> *mut C_tensor {
        // SAFETY: the caller passes `errlen` writable bytes at `err`.
        unsafe { say(err, errlen) };
        std::ptr::null_mut()
    }
    pub(crate) unsafe fn fnc_dist_all_gather(
        _group: *mut c_void,
        _x: *mut C_tensor,
        _out: *mut C_tensor,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int {
        // SAFETY: the caller passes `errlen` writable bytes at `err`.
        unsafe { say(err, errlen) };
        1
    }
    pub(crate) unsafe fn fnc_dist_broadcast(
        _group: *mut c_void,
        _t: *mut C_tensor,
        _root: c_int,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int {
        // SAFETY: the caller passes `errlen` writable bytes at `err`.
        unsafe { say(err, errlen) };
        1
    }
    pub(crate) unsafe fn fnc_dist_barrier(
        _group: *mut c_void,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int {
        // SAFETY: the caller passes `errlen` writable bytes at `err`.
        unsafe { say(err, errlen) };
        1
    }
    pub(crate) unsafe fn fnc_dist_store_set(
        _group: *mut c_void,
        _key: *const c_char,
        _value: *const c_char,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int {
        // SAFETY: the caller passes `errlen` writable bytes at `err`.
        unsafe { say(err, errlen) };
        -1
    }
    pub(crate) unsafe fn fnc_dist_shutdown(
        _group: *mut c_void,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int {
        // SAFETY: the caller passes `errlen` writable bytes at `err`.
        unsafe { say(err, errlen) };
        1
    }
    pub(crate) unsafe fn fnc_dist_host_waits() -> i64 {
        0
    }
    pub(crate) unsafe fn fnc_cuda_side_uploads() -> c_int {
        0
    }
    pub(crate) unsafe fn fnc_cuda_upload(
        _host: *mut C_tensor,
        _device: c_int,
        _event: *mut *mut c_void,
        err: *mut c_char,
        errlen: usize,
    ) -> *mut C_tensor {
        // SAFETY: the caller passes `errlen` writable bytes at `err`.
        unsafe { say(err, errlen) };
        std::ptr::null_mut()
    }
    pub(crate) unsafe fn fnc_cuda_upload_wait(
        _event: *mut c_void,
        _t: *mut C_tensor,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int {
        // SAFETY: the caller passes `errlen` writable bytes at `err`.
        unsafe { say(err, errlen) };
        1
    }
    pub(crate) unsafe fn fnc_cuda_upload_free(_event: *mut c_void) {}
    pub(crate) unsafe fn fnc_dist_all_reduce_start(
        _group: *mut c_void,
        _t: *mut C_tensor,
        err: *mut c_char,
        errlen: usize,
    ) -> *mut c_void {
        // SAFETY: the caller passes `errlen` writable bytes at `err`.
        unsafe { say(err, errlen) };
        std::ptr::null_mut()
    }
    pub(crate) unsafe fn fnc_dist_work_wait(
        _pending: *mut c_void,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int {
        // SAFETY: the caller passes `errlen` writable bytes at `err`.
        unsafe { say(err, errlen) };
        1
    }
    pub(crate) unsafe fn fnc_dist_abort(
        _group: *mut c_void,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int {
        // SAFETY: the caller passes `errlen` writable bytes at `err`.
        unsafe { say(err, errlen) };
        1
    }
    pub(crate) unsafe fn fnc_dist_sync_batch_norm(
        _group: *mut c_void,
        _x: *mut C_tensor,
        _weight: *mut C_tensor,
        _bias: *mut C_tensor,
        _running_mean: *mut C_tensor,
        _running_var: *mut C_tensor,
        _momentum: f64,
        _eps: f64,
        err: *mut c_char,
        errlen: usize,
    ) -> *mut C_tensor {
        // SAFETY: the caller passes `errlen` writable bytes at `err`.
        unsafe { say(err, errlen) };
        std::ptr::null_mut()
    }
    pub(crate) unsafe fn fnc_dist_store_get(
        _group: *mut c_void,
        _key: *const c_char,
        _out: *mut c_char,
        _outlen: usize,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int {
        // SAFETY: the caller passes `errlen` writable bytes at `err`.
        unsafe { say(err, errlen) };
        -1
    }
}
