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

use std::collections::{BTreeMap, HashMap};
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
/// TensorBoard event files of the run start with this.
const EVENTS_PREFIX: &str = "events.out.tfevents";
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

    /// The run files present in the directory (config, metrics, checkpoints,
    /// event logs): a new run must not start over them.
    pub fn run_files(&self) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = [CONFIG, METRICS, CHECKPOINTS]
            .iter()
            .map(|n| self.0.join(n))
            .filter(|p| p.exists())
            .collect();
        if let Ok(entries) = fs::read_dir(&self.0) {
            found.extend(entries.flatten().map(|e| e.path()).filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(EVENTS_PREFIX))
            }));
        }
        found
    }

    /// The checkpoint directories `step-N` by step, oldest first (complete or
    /// not: [`Checkpoint::open`] tells).
    pub fn checkpoint_dirs(&self) -> Result<Vec<(u64, PathBuf)>, TrainError> {
        let dir = self.checkpoints_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&dir)(e)),
        };
        let mut all: Vec<(u64, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let step = name.strip_prefix("step-")?.parse().ok()?;
                Some((step, e.path()))
            })
            .collect();
        all.sort();
        Ok(all)
    }

    /// The newest complete checkpoint: the one `checkpoints/latest` names.
    /// `Ok(None)` when the run has none yet. A `latest` that cannot be read,
    /// or that names a checkpoint that is missing or damaged, is an error
    /// naming the file, and says which older complete checkpoint
    /// `--resume-from` could take instead. Killed between writing a first
    /// checkpoint and its `latest`, the newest complete one is taken.
    pub fn latest(&self) -> Result<Option<Checkpoint>, TrainError> {
        let dir = self.checkpoints_dir();
        let pointer = dir.join(LATEST);
        let name = match fs::read(&pointer) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Only before the first `latest` was written.
                return Ok(self
                    .checkpoint_dirs()?
                    .into_iter()
                    .rev()
                    .find_map(|(_, p)| Checkpoint::open(&p).ok()));
            }
            Err(e) => return Err(io(&pointer)(e)),
        };
        let name = String::from_utf8(name)
            .ok()
            .map(|n| n.trim().to_string())
            .filter(|n| {
                n.strip_prefix("step-")
                    .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            });
        let Some(name) = name else {
            return Err(checkpoint(
                &pointer,
                format!(
                    "is damaged (it should hold the name of a step-N directory){}",
                    self.older_hint(u64::MAX)
                ),
            ));
        };
        let step: u64 = name[5..].parse().unwrap_or(u64::MAX);
        Checkpoint::open(&dir.join(&name))
            .map(Some)
            .map_err(|e| match e {
                TrainError::Checkpoint { path, detail } => TrainError::Checkpoint {
                    path,
                    detail: format!(
                        "{detail} (named by {}){}",
                        pointer.display(),
                        self.older_hint(step)
                    ),
                },
                other => other,
            })
    }

    /// "; --resume-from DIR continues from the older complete checkpoint
    /// DIR" for the newest complete checkpoint before `step`, or "".
    fn older_hint(&self, step: u64) -> String {
        let older = self.checkpoint_dirs().ok().and_then(|all| {
            all.into_iter()
                .rev()
                .filter(|(s, _)| *s < step)
                .find_map(|(_, p)| Checkpoint::open(&p).ok())
        });
        match older {
            Some(ck) => format!(
                "; to continue from the older complete checkpoint instead, pass \
                 --resume-from {}",
                ck.dir().display()
            ),
            None => "; no older complete checkpoint is left".into(),
        }
    }

    /// Before a run continues from the older checkpoint `ck`
    /// (`--resume-from`): the newer checkpoints, whose steps will be redone,
    /// are renamed `superseded-step-N` (kept, not removed), and `latest`
    /// names `ck`.
    pub fn set_aside_after(&self, ck: &Checkpoint) -> Result<(), TrainError> {
        let dir = self.checkpoints_dir();
        for (step, path) in self.checkpoint_dirs()? {
            if step <= ck.state().step {
                continue;
            }
            let mut to = dir.join(format!("superseded-step-{step:08}"));
            let mut n = 1;
            while to.exists() {
                to = dir.join(format!("superseded-step-{step:08}.{n}"));
                n += 1;
            }
            fs::rename(&path, &to).map_err(io(&path))?;
        }
        fnc_formats::write_atomic(&dir.join(LATEST), ck.name().as_bytes())?;
        Ok(())
    }

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

    /// Removes checkpoints beyond the newest [`KEEP`] by step; never the one
    /// just written (`written`) nor the one `latest` names.
    fn prune(&self, written: u64) -> Result<(), TrainError> {
        let pointer = self.checkpoints_dir().join(LATEST);
        let named = fs::read_to_string(&pointer).unwrap_or_default();
        let all = self.checkpoint_dirs()?;
        for (step, dir) in all.iter().rev().skip(KEEP) {
            let is_latest = dir
                .file_name()
                .is_some_and(|n| n.to_string_lossy() == named.trim());
            if *step != written && !is_latest {
                let _ = fs::remove_dir_all(dir);
            }
        }
        Ok(())
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
    fn of(path: &Path) -> Result<FileDigest, TrainError> {
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
