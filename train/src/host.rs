//! The host synchronisations of a step, counted where fnc's code makes them:
//! a device value read on the host ([`read`], and [`note_read`] for reads
//! made otherwise) and a collective waited on the host (Gloo's, counted by
//! the c10d shim; NCCL's are waited on the CUDA stream). On CUDA each one
//! stalls the host until the device has caught up with everything queued;
//! the count is kept alike on every device, so the CPU's tests see what a
//! GPU run would do. Reported per step in `metrics.jsonl` (`host_syncs`).

use std::sync::atomic::{AtomicU64, Ordering};

use tch::{Device, Kind, Tensor};

static READS: AtomicU64 = AtomicU64::new(0);

/// The values of `t` on the host, as float64, flattened: one
/// synchronisation.
pub fn read(t: &Tensor) -> Result<Vec<f64>, tch::TchError> {
    note_read();
    let host = t
        .f_to_kind(Kind::Double)?
        .f_to_device(Device::Cpu)?
        .f_reshape([-1])?;
    Vec::<f64>::try_from(&host)
}

/// `values` on `device` without a host synchronisation: on CUDA a copy that
/// does not block (from pageable memory CUDA stages the values before the
/// call returns, and waits for nothing queued on the device).
pub fn upload<T: tch::kind::Element>(values: &[T], device: Device) -> Tensor {
    let t = Tensor::from_slice(values);
    if device.is_cuda() {
        t.to_device_(device, t.kind(), true, false)
    } else {
        t
    }
}

/// Counts a device value read on the host some other way.
pub fn note_read() {
    READS.fetch_add(1, Ordering::Relaxed);
}

/// Host synchronisations of this process so far: reads and host-waited
/// collectives (a step's count is the difference across it).
pub fn syncs() -> u64 {
    READS.load(Ordering::Relaxed) + crate::dist::ProcessGroup::host_waits()
}
