//! Checkpoints written: the tensors copied off the live model ([`Snapshot`]),
//! then written into a temporary directory with their sizes and checksums,
//! renamed into place and named by `latest`.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use super::*;
use crate::momentum::Momentum;
use crate::optim::Optimizer;

impl RunDir {
    /// Writes a checkpoint of the model, the optimiser (and the momentum
    /// encoder) after `state.step`: [`Snapshot::take`], then [`Self::write`].
    pub fn save(
        &self,
        vs: &nn::VarStore,
        opt: &Optimizer,
        momentum: Option<&Momentum>,
        state: CheckpointState,
    ) -> Result<Checkpoint, TrainError> {
        self.write(Snapshot::take(vs, opt, momentum), state)
    }

    /// Writes `snapshot` as the checkpoint after `state.step` atomically: into
    /// a temporary directory (tensor files, then `state.json` with their sizes
    /// and checksums), renamed into place, then `latest` points at it; then
    /// the older ones beyond the newest two (by step) are removed. Needs no
    /// libtorch state of the run, so it may run on a thread of its own while
    /// training goes on.
    pub fn write(
        &self,
        snapshot: Snapshot,
        mut state: CheckpointState,
    ) -> Result<Checkpoint, TrainError> {
        let dir = self.checkpoints_dir();
        let name = format!("step-{:08}", state.step);
        let tmp = dir.join(format!(".{name}.tmp"));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        state.files.clear();
        for (file, named) in snapshot.parts {
            let p = tmp.join(file);
            write_tensors(&p, named)?;
            // On disk before state.json vouches for it.
            fs::File::open(&p)
                .and_then(|f| f.sync_all())
                .map_err(crate::error::io(&p))?;
            state.files.insert(file.to_string(), FileDigest::of(&p)?);
        }
        let json = serde_json::to_vec_pretty(&state).map_err(|err| TrainError::Json {
            path: tmp.join(STATE),
            err,
        })?;
        fnc_formats::write_atomic(&tmp.join(STATE), &json)?;
        fnc_formats::sync_parent(&tmp.join(STATE));
        let final_dir = dir.join(&name);
        let _ = fs::remove_dir_all(&final_dir);
        fs::rename(&tmp, &final_dir).map_err(io(&final_dir))?;
        fnc_formats::sync_parent(&final_dir);
        fnc_formats::write_atomic(&dir.join(LATEST), name.as_bytes())?;
        self.prune(state.step)?;
        Ok(Checkpoint {
            dir: final_dir,
            state,
        })
    }
}

/// The tensors of a checkpoint, copied off the live model, optimiser and
/// momentum encoder onto the CPU, so that training can go on while they are
/// written.
#[derive(Debug)]
pub struct Snapshot {
    parts: Vec<(&'static str, Vec<(String, Tensor)>)>,
}

impl Snapshot {
    pub fn take(vs: &nn::VarStore, opt: &Optimizer, momentum: Option<&Momentum>) -> Snapshot {
        let copy = |named: Vec<(String, Tensor)>| -> Vec<(String, Tensor)> {
            tch::no_grad(|| {
                named
                    .into_iter()
                    .map(|(n, t)| {
                        let t = if t.device() == tch::Device::Cpu {
                            t.copy()
                        } else {
                            t.to_device(tch::Device::Cpu)
                        };
                        (n, t)
                    })
                    .collect()
            })
        };
        let mut parts = vec![
            (MODEL, copy(vs.variables().into_iter().collect())),
            (OPTIMIZER, copy(opt.state())),
        ];
        if let Some(mo) = momentum {
            parts.push((MOMENTUM, copy(mo.state())));
        }
        Snapshot { parts }
    }
}

/// Size and CRC-32 of a checkpoint file, recorded in `state.json` so that a
/// damaged or truncated file is found when the checkpoint is opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    pub bytes: u64,
    pub crc32: u32,
}

impl FileDigest {
    pub(super) fn of(path: &Path) -> Result<FileDigest, TrainError> {
        use std::io::Read;
        let mut f = fs::File::open(path).map_err(io(path))?;
        let mut h = crc32fast::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut bytes = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(io(path))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            bytes += n as u64;
        }
        Ok(FileDigest {
            bytes,
            crc32: h.finalize(),
        })
    }
}

/// Writes named tensors as safetensors; channels-last ones are written in
/// standard (contiguous) order, so files do not depend on the memory format.
pub(crate) fn write_tensors(
    path: &Path,
    named: impl IntoIterator<Item = (String, Tensor)>,
) -> Result<(), TrainError> {
    let mut named: Vec<(String, Tensor)> = named
        .into_iter()
        .map(|(n, t)| (n, t.contiguous()))
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    Tensor::write_safetensors(&named, path)?;
    Ok(())
}
