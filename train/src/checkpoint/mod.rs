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
//!
//! Homes: this file (the layout and the run directory's questions: run
//! files, the checkpoints by step, the latest complete one, pruning),
//! `write` (snapshots written atomically with checksums), `open` (a
//! checkpoint opened, checked and restored).

mod open;
mod write;

use std::fs;
use std::path::{Path, PathBuf};

pub use open::{Checkpoint, CheckpointState};
pub(crate) use write::write_tensors;
pub use write::{FileDigest, Snapshot};

use crate::config::TrainConfig;
use crate::error::{checkpoint, io, TrainError};

pub(super) const CONFIG: &str = "config.toml";
pub(super) const METRICS: &str = "metrics.jsonl";
pub(super) const CHECKPOINTS: &str = "checkpoints";
pub(super) const LATEST: &str = "latest";
pub(super) const FEATURES: &str = "features";
/// TensorBoard event files of the run start with this.
pub(super) use crate::events::EVENTS_PREFIX;
pub(super) const STATE: &str = "state.json";
pub(super) const MODEL: &str = "model.safetensors";
pub(super) const OPTIMIZER: &str = "optimizer.safetensors";
pub(super) const MOMENTUM: &str = "momentum.safetensors";
/// Checkpoints kept: the newest and the one before it.
pub(super) const KEEP: usize = 2;

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

    /// `checkpoints/latest`, the name of the newest complete checkpoint (its
    /// modification time is when that checkpoint was completed).
    pub fn latest_pointer(&self) -> PathBuf {
        self.checkpoints_dir().join(LATEST)
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
                // Only before the first `latest` was written: the newest
                // checkpoint, which must be complete (never a silent fall
                // back to an older one).
                let Some((step, newest)) = self.checkpoint_dirs()?.pop() else {
                    return Ok(None);
                };
                return Checkpoint::open(&newest)
                    .map(Some)
                    .map_err(|e| self.with_older_hint(e, step));
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
                TrainError::Checkpoint { path, detail } => self.with_older_hint(
                    TrainError::Checkpoint {
                        path,
                        detail: format!("{detail} (named by {})", pointer.display()),
                    },
                    step,
                ),
                other => other,
            })
    }

    /// `e` (about the checkpoint of `step`) with the way on: the older
    /// complete checkpoint `--resume-from` can take.
    fn with_older_hint(&self, e: TrainError, step: u64) -> TrainError {
        match e {
            TrainError::Checkpoint { path, detail } => TrainError::Checkpoint {
                path,
                detail: format!("{detail}{}", self.older_hint(step)),
            },
            other => other,
        }
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

    /// Removes what a checkpoint write killed midway left (`.step-N.tmp`),
    /// before a resumed run writes its own.
    pub fn remove_partial_checkpoints(&self) {
        let Ok(entries) = fs::read_dir(self.checkpoints_dir()) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".step-") && name.ends_with(".tmp") {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }

    /// Before a run continues from the older checkpoint `ck`
    /// (`--resume-from`): the newer checkpoints, whose steps will be redone,
    /// are renamed `superseded-step-N` (kept, not removed), and `latest`
    /// names `ck`.
    pub fn set_aside_after(&self, ck: &Checkpoint) -> Result<(), TrainError> {
        let dir = self.checkpoints_dir();
        // `latest` first: killed midway, the run resumes from `ck` all the same.
        fnc_formats::write_atomic(&dir.join(LATEST), ck.name().as_bytes())?;
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
        Ok(())
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
