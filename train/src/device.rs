//! `--device`: which libtorch device a run uses, and waiting for it.

use tch::Device;

use crate::error::TrainError;

/// Parses `--device`: `auto` (CUDA when available), `cpu`, `cuda` or `cuda:N`;
/// a CUDA device this machine lacks is an error.
pub fn parse_device(s: &str) -> Result<Device, TrainError> {
    let bad = |detail: String| TrainError::Config {
        flag: "--device",
        detail,
    };
    match s {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        _ => {
            let n = match s.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| bad(format!("{s:?} is not auto, cpu, cuda or cuda:N")))?,
                None => return Err(bad(format!("{s:?} is not auto, cpu, cuda or cuda:N"))),
            };
            if !tch::Cuda::is_available() || n >= tch::Cuda::device_count() as usize {
                return Err(bad(format!("{s}: no such CUDA device on this machine")));
            }
            Ok(Device::Cuda(n))
        }
    }
}

/// Waits for the work queued on `device` (a no-op on the CPU).
pub fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}
