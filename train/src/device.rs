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

/// This machine's cores divided among the `local_world` ranks it runs (one at
/// least): each rank's share for its augmentation and libtorch threads.
pub fn cores_per_rank(local_world: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    share_of_cores(cores, local_world)
}

/// `cores` divided among `local_world` ranks, one at least.
pub(crate) fn share_of_cores(cores: usize, local_world: usize) -> usize {
    (cores / local_world.max(1)).max(1)
}

/// This machine's memory in bytes (`MemTotal` of /proc/meminfo), when known.
pub fn host_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Waits for the work queued on `device` (a no-op on the CPU).
pub fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// The device of one rank of a data-parallel run: `--device` is `requested`
/// (`auto`, `cpu`, `cuda` or `cuda:N`), the rank is `local_rank` of
/// `local_world` ranks on a machine that shows `visible` GPUs (under Slurm's
/// `--gpus-per-task 1` every rank sees one, as `cuda:0`), in a world of
/// `world` ranks; `nccl` when its collectives will run on NCCL.
///
/// A CUDA rank takes GPU `local_rank mod visible`; `cuda:N` holds only for a
/// run of one process; NCCL cannot put two ranks on one GPU, Gloo can.
pub fn rank_device(
    requested: &str,
    world: usize,
    local_rank: usize,
    local_world: usize,
    visible: usize,
    nccl: bool,
) -> Result<Device, TrainError> {
    let bad = |detail: String| TrainError::Config {
        flag: "--device",
        detail,
    };
    let cuda = match requested {
        "cpu" => return Ok(Device::Cpu),
        "auto" if visible == 0 => return Ok(Device::Cpu),
        "auto" | "cuda" => None,
        s => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => Some(n),
            _ => return Err(bad(format!("{s:?} is not auto, cpu, cuda or cuda:N"))),
        },
    };
    if visible == 0 {
        return Err(bad(format!(
            "{requested}: this machine shows no CUDA device"
        )));
    }
    let index = match cuda {
        Some(n) if world > 1 => {
            return Err(bad(format!(
                "cuda:{n} names one GPU, but this is one of {world} ranks: use --device cuda \
                 (rank r takes GPU LOCAL_RANK mod the {visible} visible) or \
                 CUDA_VISIBLE_DEVICES"
            )))
        }
        Some(n) if n >= visible => {
            return Err(bad(format!(
                "cuda:{n}: no such CUDA device on this machine ({visible} visible)"
            )))
        }
        Some(n) => n,
        None => local_rank % visible,
    };
    if nccl && local_world > visible {
        return Err(bad(format!(
            "{local_world} ranks on this machine share {visible} visible GPU(s), and NCCL \
             cannot run two ranks on one GPU: start at most {visible} ranks per machine \
             (--nproc-per-node, --gpus-per-task) or use --dist-backend gloo"
        )));
    }
    Ok(Device::Cuda(index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_take_their_gpu_modulo_the_visible_ones() {
        // torchrun on an 8-GPU node: rank r on cuda:r.
        assert_eq!(
            rank_device("cuda", 8, 5, 8, 8, true).unwrap(),
            Device::Cuda(5)
        );
        // Slurm --gpus-per-task 1: every rank sees one GPU as cuda:0.
        for local in 0..8 {
            assert_eq!(
                rank_device("auto", 16, local, 1, 1, true).unwrap(),
                Device::Cuda(0)
            );
        }
        // Gloo ranks may share a GPU; NCCL ranks may not.
        assert_eq!(
            rank_device("cuda", 4, 3, 4, 2, false).unwrap(),
            Device::Cuda(1)
        );
        let e = rank_device("cuda", 4, 3, 4, 2, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--device") && e.contains("NCCL"), "{e}");
        // An explicit GPU holds for one process only.
        assert_eq!(
            rank_device("cuda:1", 1, 0, 1, 2, true).unwrap(),
            Device::Cuda(1)
        );
        let e = rank_device("cuda:1", 2, 0, 2, 2, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cuda:1") && e.contains("one of 2 ranks"), "{e}");
        assert!(rank_device("cuda:2", 1, 0, 1, 2, true).is_err());
        // CPU runs, and auto without GPUs.
        assert_eq!(rank_device("cpu", 2, 1, 2, 8, false).unwrap(), Device::Cpu);
        assert_eq!(rank_device("auto", 2, 1, 2, 0, false).unwrap(), Device::Cpu);
        assert!(rank_device("cuda", 2, 1, 2, 0, false).is_err());
        assert!(rank_device("tpu", 1, 0, 1, 0, false).is_err());
    }
}
