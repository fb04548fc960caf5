//! The run directory and its checkpoints: the one place that knows their
//! layout. Training saves, prunes and resumes through it; `export` and
//! `fnc-eval` find and open checkpoints through it.
//!
//! ```text
//! RUN/config.toml                    the resolved TrainConfig
//! RUN/metrics.jsonl                  one StepMetrics line per step
//! RUN/checkpoints/latest             name of the newest complete checkpoint
//! RUN/checkpoints/step-NNNNNNNN/     model, optimizer (and momentum) safetensors + state.json
//! RUN/features/                      evaluation feature caches (fnc-eval)
//! ```

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use fnc_augment::SamplerState;
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use crate::config::TrainConfig;
use crate::error::{checkpoint, io, TrainError};
use crate::model::Arch;
use crate::momentum::Momentum;
use crate::optim::Optimizer;

const CONFIG: &str = "config.toml";
const METRICS: &str = "metrics.jsonl";
const CHECKPOINTS: &str = "checkpoints";
const LATEST: &str = "latest";
const FEATURES: &str = "features";
const STATE: &str = "state.json";
const MODEL: &str = "model.safetensors";
const OPTIMIZER: &str = "optimizer.safetensors";
const MOMENTUM: &str = "momentum.safetensors";
/// Checkpoints kept: the newest and the one before it.
const KEEP: usize = 2;

/// A run directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir(PathBuf);

impl RunDir {
    pub fn new(path: impl Into<PathBuf>) -> RunDir {
        RunDir(path.into())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The resolved config of the run.
    pub fn config_path(&self) -> PathBuf {
        self.0.join(CONFIG)
    }

    pub fn metrics_path(&self) -> PathBuf {
        self.0.join(METRICS)
    }

    /// Where evaluation caches the features of this run's checkpoints.
    pub fn features_dir(&self) -> PathBuf {
        self.0.join(FEATURES)
    }

    fn checkpoints_dir(&self) -> PathBuf {
        self.0.join(CHECKPOINTS)
    }

    /// Reads the run's config.
    pub fn read_config(&self) -> Result<TrainConfig, TrainError> {
        let p = self.config_path();
        let text = fs::read_to_string(&p).map_err(io(&p))?;
        toml::from_str(&text).map_err(|e| TrainError::ConfigFile {
            path: p,
            detail: e.to_string(),
        })
    }

    /// Writes the run's config.
    pub fn write_config(&self, cfg: &TrainConfig) -> Result<(), TrainError> {
        let text = toml::to_string_pretty(cfg).map_err(|e| TrainError::ConfigFile {
            path: self.config_path(),
            detail: e.to_string(),
        })?;
        fnc_formats::write_atomic(&self.config_path(), text.as_bytes())?;
        Ok(())
    }

    /// The newest complete checkpoint, if any.
    pub fn latest(&self) -> Option<Checkpoint> {
        let dir = self.checkpoints_dir();
        let name = fs::read_to_string(dir.join(LATEST)).ok()?;
        Checkpoint::open(&dir.join(name.trim())).ok()
    }

    /// Writes a checkpoint of the model, the optimiser (and the momentum
    /// encoder) after `state.step` atomically: into a temporary directory,
    /// renamed into place, then `latest` points at it; older ones beyond the
    /// newest two are removed.
    pub fn save(
        &self,
        vs: &nn::VarStore,
        opt: &Optimizer,
        momentum: Option<&Momentum>,
        state: CheckpointState,
    ) -> Result<Checkpoint, TrainError> {
        let dir = self.checkpoints_dir();
        let name = format!("step-{:08}", state.step);
        let tmp = dir.join(format!(".{name}.tmp"));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        write_tensors(&tmp.join(MODEL), vs.variables())?;
        write_tensors(&tmp.join(OPTIMIZER), opt.state())?;
        if let Some(mo) = momentum {
            write_tensors(&tmp.join(MOMENTUM), mo.state())?;
        }
        let json = serde_json::to_vec_pretty(&state).map_err(|err| TrainError::Json {
            path: tmp.join(STATE),
            err,
        })?;
        fnc_formats::write_atomic(&tmp.join(STATE), &json)?;
        let final_dir = dir.join(&name);
        let _ = fs::remove_dir_all(&final_dir);
        fs::rename(&tmp, &final_dir).map_err(io(&final_dir))?;
        fnc_formats::sync_parent(&final_dir);
        fnc_formats::write_atomic(&dir.join(LATEST), name.as_bytes())?;
        self.prune()?;
        Ok(Checkpoint {
            dir: final_dir,
            state,
        })
    }

    fn prune(&self) -> Result<(), TrainError> {
        let dir = self.checkpoints_dir();
        let mut all: Vec<PathBuf> = fs::read_dir(&dir)
            .map_err(io(&dir))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("step-"))
            })
            .collect();
        all.sort();
        for old in all.iter().rev().skip(KEEP) {
            let _ = fs::remove_dir_all(old);
        }
        Ok(())
    }
}

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
}

fn one() -> u64 {
    1
}

/// A complete checkpoint on disk.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    dir: PathBuf,
    state: CheckpointState,
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
        let state = serde_json::from_str(&text)
            .map_err(|e| checkpoint(&dir, format!("{STATE} does not parse: {e}")))?;
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
