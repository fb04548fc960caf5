//! `fnc-train export`: a run's encoder as safetensors with torchvision's names.

use std::path::Path;

use tch::{nn, Device, Tensor};

use crate::checkpoint::{write_tensors, RunDir};
use crate::error::{checkpoint, TrainError};
use crate::model::build_model;

/// Writes the encoder of `run`'s latest checkpoint as safetensors with
/// torchvision's names (head dropped, `num_batches_tracked` added); returns
/// the number of tensors written.
pub fn export_encoder(run: &Path, out_file: &Path) -> Result<usize, TrainError> {
    let run = RunDir::new(run);
    let cfg = run.read_config()?;
    let ck = run
        .latest()?
        .ok_or_else(|| checkpoint(run.path(), "the run has no complete checkpoint"))?;
    let mut vs = nn::VarStore::new(Device::Cpu);
    let _model = build_model(&vs, &cfg.model_spec(vs.device()));
    ck.restore_model(&mut vs, cfg.arch)?;
    let mut named: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(n, _)| !n.starts_with("head."))
        .collect();
    let extra: Vec<(String, Tensor)> = named
        .iter()
        .filter_map(|(n, _)| {
            n.strip_suffix("running_mean").map(|p| {
                (
                    format!("{p}num_batches_tracked"),
                    Tensor::from_slice(&[0i64]).view([]),
                )
            })
        })
        .collect();
    named.extend(extra);
    let n = named.len();
    write_tensors(out_file, named)?;
    Ok(n)
}
