//! Which encoder to evaluate: a run directory (its latest checkpoint) or a
//! checkpoint, with the training config that says its architecture and data.

use std::path::{Path, PathBuf};

use fnc_train::TrainConfig;

use crate::error::EvalError;

/// A resolved evaluation source.
#[derive(Debug, Clone)]
pub struct Source {
    pub run: PathBuf,
    /// The checkpoint directory (holding model.safetensors).
    pub checkpoint: PathBuf,
    pub config: TrainConfig,
}

impl Source {
    /// A short tag naming the checkpoint, used for feature caches.
    pub fn tag(&self) -> String {
        self.checkpoint
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "checkpoint".into())
    }
}

fn read_config(run: &Path) -> Result<TrainConfig, EvalError> {
    let p = run.join("config.toml");
    let text = std::fs::read_to_string(&p).map_err(|e| EvalError::Input {
        what: p.display().to_string(),
        detail: e.to_string(),
    })?;
    toml::from_str(&text).map_err(|e| EvalError::Input {
        what: p.display().to_string(),
        detail: format!("not an fnc-train config: {e}"),
    })
}

/// The newest run under `runs_dir` that has a checkpoint.
pub fn latest_run(runs_dir: &Path) -> Result<PathBuf, EvalError> {
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for e in std::fs::read_dir(runs_dir)
        .map_err(|e| EvalError::Input {
            what: format!(
                "{} (looking for the latest run; pass --run)",
                runs_dir.display()
            ),
            detail: e.to_string(),
        })?
        .flatten()
    {
        let p = e.path();
        if let Some(ck) = fnc_train::latest_checkpoint(&p) {
            let t = std::fs::metadata(ck.join("state.json"))
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            if best.as_ref().is_none_or(|(bt, _)| t > *bt) {
                best = Some((t, p));
            }
        }
    }
    best.map(|(_, p)| p).ok_or_else(|| EvalError::Input {
        what: runs_dir.display().to_string(),
        detail: "no run with a checkpoint; pass --run or --checkpoint".into(),
    })
}

/// Resolves `--run` / `--checkpoint` (neither: the latest run under `runs/`).
pub fn resolve(run: Option<&Path>, checkpoint: Option<&Path>) -> Result<Source, EvalError> {
    if let Some(ck) = checkpoint {
        let dir = if ck.is_file() {
            ck.parent().unwrap_or(Path::new(".")).to_path_buf()
        } else {
            ck.to_path_buf()
        };
        if !dir.join("model.safetensors").is_file() {
            return Err(EvalError::Input {
                what: format!("--checkpoint {}", ck.display()),
                detail: "not a checkpoint directory (no model.safetensors)".into(),
            });
        }
        // checkpoints/step-N/ -> the run is two levels up.
        let run = dir
            .parent()
            .and_then(|p| p.parent())
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let config = read_config(&run)?;
        return Ok(Source {
            run,
            checkpoint: dir,
            config,
        });
    }
    let run = match run {
        Some(r) => r.to_path_buf(),
        None => latest_run(Path::new("runs"))?,
    };
    let checkpoint = fnc_train::latest_checkpoint(&run).ok_or_else(|| EvalError::Input {
        what: format!("--run {}", run.display()),
        detail: "has no complete checkpoint".into(),
    })?;
    let config = read_config(&run)?;
    Ok(Source {
        run,
        checkpoint,
        config,
    })
}
