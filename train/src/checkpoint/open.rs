//! A checkpoint on disk: its bookkeeping, opened and checked against the
//! checksums it recorded, and restored into a model, optimiser and momentum
//! encoder.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use fnc_augment::SamplerState;
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use super::*;
use crate::model::Arch;
use crate::momentum::Momentum;
use crate::optim::Optimizer;

/// Bookkeeping kept next to a checkpoint's tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointState {
    pub step: u64,
    pub sampler: SamplerState,
    /// The encoder architecture the weights belong to.
    pub arch: String,
    /// Bad records replaced so far (`--max-bad-records`), each named.
    #[serde(default)]
    pub bad_records: Vec<String>,
    /// Processes of the data-parallel run that wrote it (1 = one process).
    #[serde(default = "one")]
    pub world: u64,
    /// Size and checksum of each tensor file (filled in by [`RunDir::save`];
    /// absent from checkpoints of earlier versions, which are not checked).
    #[serde(default)]
    pub files: BTreeMap<String, FileDigest>,
}

fn one() -> u64 {
    1
}

/// A complete checkpoint on disk.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub(super) dir: PathBuf,
    pub(super) state: CheckpointState,
}

impl Checkpoint {
    /// Opens the checkpoint directory `path` (or the directory of a file in
    /// it, e.g. its `model.safetensors`).
    pub fn open(path: &Path) -> Result<Checkpoint, TrainError> {
        let dir = if path.is_file() {
            path.parent().unwrap_or(Path::new(".")).to_path_buf()
        } else {
            path.to_path_buf()
        };
        if !dir.join(MODEL).is_file() {
            return Err(checkpoint(
                &dir,
                "not a checkpoint directory (no model.safetensors)",
            ));
        }
        let p = dir.join(STATE);
        let text = fs::read_to_string(&p).map_err(io(&p))?;
        let state: CheckpointState = serde_json::from_str(&text)
            .map_err(|e| checkpoint(&p, format!("is damaged: it does not parse: {e}")))?;
        for (file, want) in &state.files {
            let f = dir.join(file);
            if !f.is_file() {
                return Err(checkpoint(&f, "is missing"));
            }
            let got = FileDigest::of(&f)?;
            if got != *want {
                return Err(checkpoint(
                    &f,
                    format!(
                        "is damaged: {} bytes with CRC-32 {:08x}, but {STATE} recorded {} \
                         bytes with {:08x}",
                        got.bytes, got.crc32, want.bytes, want.crc32
                    ),
                ));
            }
        }
        Ok(Checkpoint { dir, state })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The checkpoint's name (`step-NNNNNNNN`).
    pub fn name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "checkpoint".into())
    }

    pub fn state(&self) -> &CheckpointState {
        &self.state
    }

    /// The run the checkpoint belongs to.
    pub fn run(&self) -> RunDir {
        RunDir::new(
            self.dir
                .parent()
                .and_then(Path::parent)
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        )
    }

    /// Loads the weights into `vs`, a model of `arch`: the architecture the
    /// checkpoint was saved from must be `arch`, and every variable of `vs`
    /// must be in the checkpoint.
    pub fn restore_model(&self, vs: &mut nn::VarStore, arch: Arch) -> Result<(), TrainError> {
        self.restore_model_except(vs, arch, &[])
    }

    /// [`Self::restore_model`], leaving the variables of `vs` under the
    /// prefixes `extra` (e.g. a fine-tuning classifier) as they are.
    pub fn restore_model_except(
        &self,
        vs: &mut nn::VarStore,
        arch: Arch,
        extra: &[&str],
    ) -> Result<(), TrainError> {
        if self.state.arch != arch.name() {
            return Err(checkpoint(
                &self.dir,
                format!(
                    "holds a {} encoder and cannot be loaded into a {} encoder",
                    self.state.arch,
                    arch.name()
                ),
            ));
        }
        let unfit = |e: String| {
            checkpoint(
                &self.dir,
                format!("its weights do not fit a {} model: {e}", arch.name()),
            )
        };
        let missing = vs
            .load_partial(self.dir.join(MODEL))
            .map_err(|e| unfit(e.to_string()))?;
        let missing: Vec<String> = missing
            .into_iter()
            .filter(|n| !extra.iter().any(|p| n.starts_with(p)))
            .collect();
        if !missing.is_empty() {
            return Err(unfit(format!("it lacks {}", missing.join(", "))));
        }
        Ok(())
    }

    /// Restores the optimiser state (and the momentum encoder's, with
    /// `--memory`); a missing or mismatched entry is named.
    pub fn restore_training(
        &self,
        opt: &mut Optimizer,
        momentum: Option<&mut Momentum>,
    ) -> Result<(), TrainError> {
        let named = read_tensors(&self.dir.join(OPTIMIZER))?;
        opt.load_state(&named)
            .map_err(|detail| checkpoint(&self.dir, detail))?;
        if let Some(mo) = momentum {
            let p = self.dir.join(MOMENTUM);
            if !p.is_file() {
                return Err(checkpoint(
                    &self.dir,
                    "has no momentum encoder state, but the run uses --memory",
                ));
            }
            mo.load_state(&read_tensors(&p)?)
                .map_err(|detail| checkpoint(&self.dir, detail))?;
        }
        Ok(())
    }
}

fn read_tensors(path: &Path) -> Result<HashMap<String, Tensor>, TrainError> {
    Ok(Tensor::read_safetensors(path)
        .map_err(|e| checkpoint(path, e.to_string()))?
        .into_iter()
        .collect())
}
