//! Which encoder to evaluate: a run directory (its latest checkpoint) or a
//! checkpoint, with the training config that says its architecture and data.
//! Where things are inside a run is `fnc_train::RunDir`'s business.

use std::path::Path;

use fnc_train::{Checkpoint, RunDir, TrainConfig};

use crate::error::EvalError;

/// A resolved evaluation source.
#[derive(Debug, Clone)]
pub struct Source {
    pub run: RunDir,
    pub checkpoint: Checkpoint,
    pub config: TrainConfig,
}

impl Source {
    /// A short tag naming the checkpoint, used for feature caches: its name
    /// and its weights' CRC-32 (a step redone after `--resume-from` has other
    /// weights under the same name).
    pub fn tag(&self) -> String {
        match self.checkpoint.state().files.get("model.safetensors") {
            Some(d) => format!("{}-{:08x}", self.checkpoint.name(), d.crc32),
            None => self.checkpoint.name(),
        }
    }
}

/// The newest run under `runs_dir` that has a checkpoint.
pub fn latest_run(runs_dir: &Path) -> Result<RunDir, EvalError> {
    let mut best: Option<(std::time::SystemTime, RunDir)> = None;
    let entries = std::fs::read_dir(runs_dir).map_err(|e| EvalError::Input {
        what: format!(
            "{} (looking for the latest run; pass --run)",
            runs_dir.display()
        ),
        detail: e.to_string(),
    })?;
    for e in entries.flatten() {
        let run = RunDir::new(e.path());
        // When its newest checkpoint was completed (without reading it: the
        // chosen run's is opened and checked by `resolve`).
        let Ok(t) = std::fs::metadata(run.latest_pointer()).and_then(|m| m.modified()) else {
            continue;
        };
        if best.as_ref().is_none_or(|(bt, _)| t > *bt) {
            best = Some((t, run));
        }
    }
    best.map(|(_, r)| r).ok_or_else(|| EvalError::Input {
        what: runs_dir.display().to_string(),
        detail: "no run with a checkpoint; pass --run or --checkpoint".into(),
    })
}

/// Resolves `--run` / `--checkpoint` (neither: the latest run under `runs/`).
pub fn resolve(run: Option<&Path>, checkpoint: Option<&Path>) -> Result<Source, EvalError> {
    let (run, checkpoint) = match (checkpoint, run) {
        (Some(ck), _) => {
            let ck = Checkpoint::open(ck).map_err(|e| EvalError::Input {
                what: format!("--checkpoint {}", ck.display()),
                detail: e.to_string(),
            })?;
            (ck.run(), ck)
        }
        (None, run) => {
            let run = match run {
                Some(r) => RunDir::new(r),
                None => latest_run(Path::new("runs"))?,
            };
            let ck = run
                .latest()
                .map_err(|e| EvalError::Input {
                    what: format!("--run {}", run.path().display()),
                    detail: e.to_string(),
                })?
                .ok_or_else(|| EvalError::Input {
                    what: format!("--run {}", run.path().display()),
                    detail: "has no complete checkpoint".into(),
                })?;
            (run, ck)
        }
    };
    let config = run.read_config()?;
    // A config fnc-train wrote passed this; one edited since may not. Its
    // errors name fnc-train's flags, which fnc-eval does not have: say the
    // config key instead (the flag's name with `_` for `-`).
    config.validate().map_err(|e| match e {
        fnc_train::TrainError::Config { flag, detail } => EvalError::Input {
            what: format!(
                "{} (the run's training config)",
                run.config_path().display()
            ),
            detail: format!(
                "{}: {detail}",
                flag.trim_start_matches("--").replace('-', "_")
            ),
        },
        other => other.into(),
    })?;
    Ok(Source {
        run,
        checkpoint,
        config,
    })
}
