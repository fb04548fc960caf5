//! Where a run starts: a new run directory, the latest checkpoint of a run
//! (`--resume`), a named one (`--resume-from`), or another run's latest
//! checkpoint in a new directory (`--init-from`, a branch). Rank 0 alone reads the run
//! directory and restores; in a data-parallel run it then hands every rank the
//! same model, optimiser, momentum encoder, bank and bookkeeping, so ranks
//! that see other files (no shared file system, a stale `latest`) still train
//! one model.

use std::collections::HashMap;
use std::path::PathBuf;

use tch::{nn, Tensor};

use crate::checkpoint::{Checkpoint, CheckpointState, RunDir};
use crate::config::TrainConfig;
use crate::dist::ProcessGroup;
use crate::error::TrainError;
use crate::events::Events;
use crate::loss::{LossConfig, Strategy};
use crate::metrics::{read_metrics, MetricsLog, StepMetrics};
use crate::model::Arch;
use crate::momentum::Momentum;
use crate::optim::Optimizer;

/// How a run starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// A new run: `--out` must hold no run files.
    New,
    /// `--resume`: from the run's latest complete checkpoint, or from the
    /// beginning when it has none yet.
    Resume,
    /// `--resume-from CHECKPOINT`: from this checkpoint of the run.
    From(PathBuf),
    /// `--init-from RUN`: a new run (`--out` holds no run files) that starts
    /// from another run's latest complete checkpoint: its weights, optimiser,
    /// momentum encoder and bank, step and sampler position, with the parent's
    /// log up to that step copied in, so a branch shares its parent's first
    /// part exactly.
    InitFrom(PathBuf),
}

/// What rank 0 found: the checkpoint restored (`None`: step 0).
#[derive(Debug)]
pub(crate) struct Started {
    pub state: Option<CheckpointState>,
    /// The checkpoint directory (rank 0 only).
    pub checkpoint: Option<Checkpoint>,
    /// The run's metrics log and events, cut back to the checkpoint's step
    /// (rank 0).
    pub metrics: Option<Logs>,
}

/// Where rank 0 records a run's steps: `metrics.jsonl`, and TensorBoard
/// events unless `--tensorboard false`.
#[derive(Debug)]
pub(crate) struct Logs {
    pub metrics: MetricsLog,
    pub events: Option<Events>,
}

/// The checkpoint `start` asks for in `run` (rank 0's view of the files).
fn find(run: &RunDir, start: &Start) -> Result<Option<Checkpoint>, TrainError> {
    match start {
        Start::InitFrom(parent) => {
            find(run, &Start::New)?;
            let parent = RunDir::new(parent);
            parent
                .latest()?
                .map(Some)
                .ok_or_else(|| TrainError::Config {
                    flag: "--init-from",
                    detail: format!(
                        "{} has no complete checkpoint to start from",
                        parent.path().display()
                    ),
                })
        }
        Start::New => {
            let files = run.run_files();
            if files.is_empty() {
                return Ok(None);
            }
            let names: Vec<String> = files
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect();
            Err(TrainError::Config {
                flag: "--out",
                detail: format!(
                    "{} already holds a run ({}); pass --resume to continue it from its \
                     last checkpoint, or choose another --out",
                    run.path().display(),
                    names.join(", ")
                ),
            })
        }
        Start::Resume => run.latest(),
        Start::From(dir) => {
            let ck = Checkpoint::open(dir)?;
            if !ck.name().starts_with("step-") {
                return Err(TrainError::Config {
                    flag: "--resume-from",
                    detail: format!(
                        "{} is not a checkpoint of the run's line (checkpoints/step-N); \
                         rename it step-N to continue from it",
                        ck.dir().display()
                    ),
                });
            }
            let same = |a: &std::path::Path, b: &std::path::Path| match (
                a.canonicalize(),
                b.canonicalize(),
            ) {
                (Ok(x), Ok(y)) => x == y,
                _ => false,
            };
            if !same(ck.run().path(), run.path()) {
                return Err(TrainError::Config {
                    flag: "--resume-from",
                    detail: format!(
                        "{} is a checkpoint of the run in {}, not of --out {}",
                        ck.dir().display(),
                        ck.run().path().display(),
                        run.path().display()
                    ),
                });
            }
            Ok(Some(ck))
        }
    }
}

/// Rank 0: finds the checkpoint, restores it into the model, optimiser and
/// momentum encoder, and prepares the run directory: its config written, its
/// metrics log cut back to the checkpoint's step (a resumed run that had none
/// yet starts it over), so that every step appears once.
fn restore_here(
    run: &RunDir,
    start: &Start,
    cfg: &TrainConfig,
    world: usize,
    vs: &mut nn::VarStore,
    opt: &mut Optimizer,
    momentum: Option<&mut Momentum>,
) -> Result<(Option<Checkpoint>, Logs), TrainError> {
    let ck = restore_checkpoint(run, start, cfg.arch, world, vs, opt, momentum)?;
    if let (Start::InitFrom(parent), Some(ck)) = (start, &ck) {
        let recorded = RunDir::new(parent).read_config()?;
        same_history(cfg, &recorded, ck.state().step)?;
    }
    std::fs::create_dir_all(run.path()).map_err(crate::error::io(run.path()))?;
    if *start != Start::New {
        run.remove_partial_checkpoints();
    }
    run.write_config(cfg)?;
    let step = ck.as_ref().map_or(0, |c| c.state().step);
    let keep = (*start != Start::New).then_some(step);
    let mut metrics = MetricsLog::open(&run.metrics_path(), keep)?;
    // A branch's log begins with its parent's, up to the step it starts from.
    let inherited = match start {
        Start::InitFrom(parent) => {
            let lines = read_metrics(&RunDir::new(parent).metrics_path())?;
            let lines: Vec<StepMetrics> = lines.into_iter().filter(|m| m.step <= step).collect();
            for m in &lines {
                metrics.append(m)?;
            }
            lines
        }
        _ => Vec::new(),
    };
    let events = if cfg.tensorboard {
        let mut ev = Events::open(run.path(), keep)?;
        for m in &inherited {
            ev.step(m)?;
        }
        let config = toml::to_string(cfg).unwrap_or_default();
        ev.text(step, "config", &format!("```toml\n{config}\n```"))?;
        Some(ev)
    } else {
        // Events of an earlier part of the run are cut back all the same, so
        // that turning them on again later finds no abandoned steps.
        if let Some(step) = keep {
            crate::events::cut_back_all(run.path(), step)?;
        }
        None
    };
    Ok((ck, Logs { metrics, events }))
}

/// A branch's config must describe its first `k` steps (its parent's) as the
/// parent ran them: the same loss at each, cancelling the same way where
/// either cancels. So a branch from a SimCLR run starts cancelling after `k`.
fn same_history(cfg: &TrainConfig, parent: &TrainConfig, k: u64) -> Result<(), TrainError> {
    let effective = |l: &LossConfig, s: u64| {
        let e = *l.at_step(s);
        (e.strategy != Strategy::None).then_some(LossConfig {
            start_step: 1,
            block: None,
            ..e
        })
    };
    for s in 1..=k {
        if effective(&cfg.loss, s) != effective(&parent.loss, s) {
            return Err(TrainError::Config {
                flag: "--fn-start-step",
                detail: format!(
                    "the branch starts from step {k} of a run whose step {s} cancelled \
                     otherwise than this config says it would; start cancelling after the \
                     branch point (--fn-start-step {}) or keep the parent's --fn-* options",
                    k + 1
                ),
            });
        }
    }
    Ok(())
}

/// Rank 0: the checkpoint `start` asks for, restored.
fn restore_checkpoint(
    run: &RunDir,
    start: &Start,
    arch: Arch,
    world: usize,
    vs: &mut nn::VarStore,
    opt: &mut Optimizer,
    momentum: Option<&mut Momentum>,
) -> Result<Option<Checkpoint>, TrainError> {
    let Some(ck) = find(run, start)? else {
        return Ok(None);
    };
    let written = ck.state().world;
    if written != world as u64 {
        return Err(TrainError::Config {
            flag: match start {
                Start::From(_) => "--resume-from",
                Start::InitFrom(_) => "--init-from",
                _ => "--resume",
            },
            detail: format!(
                "{} was written by a run of {written} process(es); resume it with as many \
                 (--nproc-per-node or the launcher's world size), not {world}",
                ck.dir().display(),
            ),
        });
    }
    ck.restore_model(vs, arch)?;
    ck.restore_training(opt, momentum)?;
    if let Start::From(_) = start {
        run.set_aside_after(&ck)?;
    }
    Ok(Some(ck))
}

/// Restores where `start` says (rank 0 reads the files) and, in a
/// data-parallel run, gives every rank rank 0's word: its error, or its
/// bookkeeping and every tensor of the model, the optimiser and the momentum
/// encoder with its bank.
pub(crate) fn restore(
    run: &RunDir,
    start: &Start,
    cfg: &TrainConfig,
    vs: &mut nn::VarStore,
    opt: &mut Optimizer,
    mut momentum: Option<&mut Momentum>,
    group: Option<&ProcessGroup>,
) -> Result<Started, TrainError> {
    let world = group.map(|g| g.world).unwrap_or(1);
    let writer = group.is_none_or(|g| g.rank == 0);
    let found = if writer {
        restore_here(run, start, cfg, world, vs, opt, momentum.as_deref_mut()).map(Some)
    } else {
        Ok(None)
    };
    let Some(g) = group else {
        let (checkpoint, metrics) = found?.unzip();
        let checkpoint = checkpoint.flatten();
        return Ok(Started {
            state: checkpoint.as_ref().map(|c| c.state().clone()),
            checkpoint,
            metrics,
        });
    };
    // Rank 0's word, as JSON: {"Ok": state or null} or {"Err": message}.
    let word: Result<Option<CheckpointState>, String> = match &found {
        Ok(c) => Ok(c
            .as_ref()
            .and_then(|(c, _)| c.as_ref())
            .map(|c| c.state().clone())),
        Err(e) => Err(e.to_string()),
    };
    let text = serde_json::to_vec(&word).unwrap_or_default();
    let heard = g.broadcast_bytes(&text, 0)?;
    let word: Result<Option<CheckpointState>, String> =
        serde_json::from_slice(&heard).map_err(|e| {
            g.error(
                "broadcast of the run's start",
                format!("rank 0's word does not parse: {e}"),
            )
        })?;
    let (state, here) = match (found, word) {
        (Err(e), _) => return Err(e),
        (Ok(_), Err(detail)) => return Err(TrainError::RankZero { detail }),
        (Ok(here), Ok(state)) => (state, here),
    };
    broadcast_tensors(g, vs, opt, momentum)?;
    let (checkpoint, metrics) = here.unzip();
    Ok(Started {
        state,
        checkpoint: checkpoint.flatten(),
        metrics,
    })
}

/// Every rank takes rank 0's model (parameters and BatchNorm statistics),
/// optimiser state and momentum encoder with its bank.
fn broadcast_tensors(
    g: &ProcessGroup,
    vs: &nn::VarStore,
    opt: &mut Optimizer,
    momentum: Option<&mut Momentum>,
) -> Result<(), TrainError> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| vars.iter().try_for_each(|(_, t)| g.broadcast(t, 0)))?;
    // Optimiser and momentum state as copies, broadcast, then loaded back (its
    // counters are not views of the live state).
    let mut named: Vec<(String, Tensor)> = opt.state();
    if let Some(mo) = momentum.as_deref() {
        named.extend(mo.state());
    }
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let copies: HashMap<String, Tensor> = tch::no_grad(|| {
        named
            .into_iter()
            .map(|(n, t)| {
                let c = t.to_device(g.device).copy();
                g.broadcast(&c, 0).map(|()| (n, c))
            })
            .collect::<Result<_, TrainError>>()
    })?;
    let fail = |detail: String| g.error("broadcast of the training state", detail);
    opt.load_state(&copies).map_err(fail)?;
    if let Some(mo) = momentum {
        mo.load_state(&copies).map_err(fail)?;
    }
    Ok(())
}

/// Rank 0's config is the run's: every rank of a data-parallel run trains it.
/// A rank's own config (from its flags, `--config` and the run's
/// config.toml) must agree with it but for the rank's own `--device` and
/// `--workers`; a rank resuming where the run's config.toml is not to be seen
/// (no shared file system: `partial`) takes rank 0's as it is.
pub fn agree_config(
    g: &ProcessGroup,
    cfg: &TrainConfig,
    partial: bool,
) -> Result<TrainConfig, TrainError> {
    let text =
        serde_json::to_vec(cfg).map_err(|e| g.error("broadcast of the config", e.to_string()))?;
    let heard = g.broadcast_bytes(&text, 0)?;
    let mut theirs: TrainConfig = serde_json::from_slice(&heard).map_err(|e| {
        g.error(
            "broadcast of the config",
            format!("rank 0's config does not parse: {e}"),
        )
    })?;
    theirs.device = cfg.device.clone();
    theirs.workers = cfg.workers;
    // A rank's loss block is its own memory's business (results are alike).
    theirs.loss.block = cfg.loss.block;
    let mine = if partial {
        None
    } else {
        cfg.difference(&theirs)
    };
    // Every rank learns whether any disagrees, so all stop together.
    let disagree = Tensor::from_slice(&[i64::from(mine.is_some())]).to_device(g.device);
    g.all_reduce(&disagree)?;
    if let Some((flag, here, there)) = mine {
        return Err(TrainError::Config {
            flag,
            detail: format!(
                "rank {} resolved {here}, rank 0 {there}: every rank must train the same \
                 config (give all ranks the same flags and --config)",
                g.rank
            ),
        });
    }
    let n = disagree.to_device(tch::Device::Cpu).int64_value(&[0]);
    if n > 0 {
        return Err(g.error(
            "agreeing on the config",
            format!(
                "{n} rank(s) resolved another config than rank 0's (their errors name the flag)"
            ),
        ));
    }
    Ok(theirs)
}
