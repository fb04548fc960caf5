//! `resolve`, the one place where fnc-train's flags are merged with a config
//! file (or the run's own, on resume) and judged, naming each flag as the
//! user typed it; and the flags `bench` does not use.

use std::path::PathBuf;

use anyhow::{Context, Result};
use fnc_train::TrainConfig;

use crate::cli::TrainArgs;

macro_rules! set {
    ($cfg:ident, $args:ident, $($f:ident),*) => { $( if let Some(v) = $args.$f.clone() { $cfg.$f = v; } )* };
}

/// Ranks --nproc-per-node may start beyond one per core (a GPU node's ranks
/// may outnumber its cores).
const MAX_LOCAL_RANKS: usize = 16;

/// What a training command resolves to.
#[derive(Debug)]
pub struct Resolved {
    pub cfg: TrainConfig,
    pub out: PathBuf,
    pub start: fnc_train::Start,
    /// `--nproc-per-node` (1 = this process alone, or a launcher's rank).
    pub nproc: usize,
    pub master_port: Option<u16>,
    pub backend: fnc_train::dist::Backend,
    pub dist_timeout: std::time::Duration,
    /// A launched rank other than 0 resuming where the run's config.toml is
    /// not to be seen: it takes rank 0's config.
    pub partial: bool,
}

fn invalid(flag: &str, detail: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("invalid option {flag}: {detail}")
}

/// Merges defaults, `--config` (or the run's own config on resume) and the
/// flags, and judges them: the one place fnc-train's options are checked.
/// `follower`: this process is a launched rank other than 0, which may resume
/// without seeing the run directory (rank 0 then gives it the config).
pub fn resolve(a: &TrainArgs, follower: bool) -> Result<Resolved> {
    let resuming = a.resume || a.resume_from.is_some();
    // --resume-from names a checkpoint of the run: its run is the default --out.
    let out = match (&a.out, &a.resume_from) {
        (Some(o), _) => Some(o.clone()),
        // RUN/checkpoints/step-N: the run is two levels up (opened and checked
        // by rank 0 when the run starts).
        (None, Some(ck)) => Some(
            ck.parent()
                .and_then(std::path::Path::parent)
                .map(std::path::Path::to_path_buf)
                .ok_or_else(|| {
                    invalid(
                        "--resume-from",
                        format!("{} is not RUN/checkpoints/step-N", ck.display()),
                    )
                })?,
        ),
        (None, None) => None,
    };
    if a.resume && out.is_none() {
        return Err(invalid(
            "--resume",
            "needs --out RUN_DIR (the run to continue)",
        ));
    }
    let (recorded, partial) = recorded_config(a, out.as_deref(), resuming, follower)?;
    let mut cfg = merged_config(a, recorded.as_ref())?;
    a.loss.apply(&mut cfg.loss)?;
    // A stop is this command's, never inherited from the run's config.
    if a.stop_at_step == Some(0) {
        return Err(invalid(
            "--stop-at-step",
            "0: steps count from 1 (leave it out to run to the end)",
        ));
    }
    cfg.stop_at_step = a.stop_at_step.unwrap_or(0);
    cfg.validate()?;
    if let Some(r) = &recorded {
        cfg.check_resume(r)?;
    }
    // (A launched rank other than 0 may not see the parent: rank 0 checks.)
    if let (Some(parent), false) = (&a.init_from, follower) {
        let run = fnc_train::RunDir::new(parent);
        if !run.config_path().is_file() {
            return Err(invalid(
                "--init-from",
                format!("{} holds no run (no config.toml)", parent.display()),
            ));
        }
        cfg.check_branch(&run.read_config()?)?;
    }
    let (nproc, secs) = launch_flags(a, &cfg)?;
    let start = match (&a.resume_from, a.resume, &a.init_from) {
        (Some(ck), _, _) => fnc_train::Start::From(ck.clone()),
        (None, true, _) => fnc_train::Start::Resume,
        (None, false, Some(parent)) => fnc_train::Start::InitFrom(parent.clone()),
        (None, false, None) => fnc_train::Start::New,
    };
    let out = out.unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let strategy = serde_json::to_value(cfg.loss.strategy)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        PathBuf::from("runs").join(format!(
            "{}-{}-{}",
            utc_stamp(now),
            cfg.arch.name(),
            strategy
        ))
    });
    Ok(Resolved {
        cfg,
        out,
        start,
        nproc,
        master_port: a.master_port,
        backend: a.dist_backend.unwrap_or(fnc_train::dist::Backend::Auto),
        dist_timeout: std::time::Duration::from_secs_f64(secs),
        partial,
    })
}

/// On resume, the run's recorded config (`None` for a new run), and whether
/// this rank resumes without seeing it (`partial`: a follower on another file
/// system, which rank 0 gives the config).
fn recorded_config(
    a: &TrainArgs,
    out: Option<&std::path::Path>,
    resuming: bool,
    follower: bool,
) -> Result<(Option<TrainConfig>, bool)> {
    let mut partial = false;
    let recorded = match (out, resuming) {
        (Some(o), true) if follower && !fnc_train::RunDir::new(o).config_path().is_file() => {
            // Its config comes from rank 0, but its device and collective
            // library must match rank 0's before they can talk.
            if a.device.is_none() {
                return Err(invalid(
                    "--device",
                    format!(
                        "this rank resumes without the run's files ({} is not here): give it \
                         the --device (and --dist-backend) rank 0 uses",
                        fnc_train::RunDir::new(o).config_path().display()
                    ),
                ));
            }
            partial = true;
            None
        }
        (Some(o), true) => {
            let run = fnc_train::RunDir::new(o);
            if !run.config_path().is_file() {
                return Err(invalid(
                    if a.resume {
                        "--resume"
                    } else {
                        "--resume-from"
                    },
                    format!(
                        "{} holds no run to continue (no {}); start it without --resume",
                        o.display(),
                        run.config_path().display()
                    ),
                ));
            }
            Some(run.read_config()?)
        }
        _ => None,
    };
    Ok((recorded, partial))
}

/// Defaults, then `--config` (or the recorded config), then the flags.
fn merged_config(a: &TrainArgs, recorded: Option<&TrainConfig>) -> Result<TrainConfig> {
    let mut cfg = match (&a.config, recorded) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --config {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("--config {}", path.display()))?
        }
        (None, Some(r)) => r.clone(),
        (None, None) => TrainConfig::default(),
    };
    set!(
        cfg,
        a,
        shards,
        arch,
        image_size,
        support,
        batch_size,
        epochs,
        steps,
        lr,
        lr_scaling,
        optimizer,
        weight_decay,
        warmup_epochs,
        workers,
        device,
        precision,
        memory_format,
        init,
        augment_impl,
        sync_bn,
        seed,
        checkpoint_every,
        knn_every,
        memory,
        ema_decay,
        max_bad_records,
        recompute,
        micro_batch,
        overlap_grads,
        tensorboard
    );
    if let Some(v) = a.support_size {
        cfg.support_size = Some(v);
    }
    if let Some(v) = &a.randaugment {
        cfg.randaugment = fnc_augment::parse_randaugment(v)
            .map_err(|e| anyhow::anyhow!("--randaugment {v}: {e}"))?;
    }
    Ok(cfg)
}

/// `--nproc-per-node`, `--master-port` and `--dist-timeout` (seconds), judged.
fn launch_flags(a: &TrainArgs, cfg: &TrainConfig) -> Result<(usize, f64)> {
    let nproc = a.nproc_per_node.unwrap_or(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if nproc == 0 || nproc > cores.max(MAX_LOCAL_RANKS) {
        return Err(invalid(
            "--nproc-per-node",
            format!(
                "{nproc} is not in 1..={}: every rank needs a core (or a GPU)",
                cores.max(MAX_LOCAL_RANKS)
            ),
        ));
    }
    if nproc > 1 && !fnc_train::dist::AVAILABLE {
        return Err(invalid(
            "--nproc-per-node",
            "this fnc-train was built without data-parallel support (--no-default-features); \
             rebuild it with the default features (they need libgloo-dev)",
        ));
    }
    if nproc > 1 && !cfg.batch_size.is_multiple_of(nproc) {
        return Err(invalid(
            "--batch-size",
            format!(
                "{} is the global batch and must divide among the {nproc} ranks of \
                 --nproc-per-node",
                cfg.batch_size
            ),
        ));
    }
    if a.master_port == Some(0) {
        return Err(invalid(
            "--master-port",
            "0 is not a port (leave the flag out for a free one)",
        ));
    }
    if a.master_port.is_some() && nproc == 1 {
        return Err(invalid(
            "--master-port",
            "is the rendezvous port of --nproc-per-node N (N > 1); a launched rank takes \
             MASTER_PORT from its environment",
        ));
    }
    let secs = a.dist_timeout.unwrap_or(300.0);
    if !(secs > 0.0 && secs.is_finite() && secs <= 7.0 * 86_400.0) {
        return Err(invalid(
            "--dist-timeout",
            format!("{secs} is not a number of seconds in (0, 604800]"),
        ));
    }
    Ok((nproc, secs))
}

/// The flags of a training run that `fnc-train bench` (random views, no
/// data, no run directory) does not use: given, they are refused.
pub fn unused_by_bench(a: &TrainArgs) -> Option<&'static str> {
    [
        (a.shards.is_some(), "--shards"),
        (a.out.is_some(), "--out"),
        (a.resume, "--resume"),
        (a.resume_from.is_some(), "--resume-from"),
        (a.init_from.is_some(), "--init-from"),
        (a.epochs.is_some(), "--epochs"),
        (a.steps.is_some(), "--steps"),
        (a.stop_at_step.is_some(), "--stop-at-step"),
        (a.workers.is_some(), "--workers"),
        (a.checkpoint_every.is_some(), "--checkpoint-every"),
        (a.knn_every.is_some(), "--knn-every"),
        (a.max_bad_records.is_some(), "--max-bad-records"),
        (a.nproc_per_node.is_some(), "--nproc-per-node"),
        (a.master_port.is_some(), "--master-port"),
        (a.dist_backend.is_some(), "--dist-backend"),
        (a.dist_timeout.is_some(), "--dist-timeout"),
        (a.sync_bn.is_some(), "--sync-bn"),
        (a.print_config, "--print-config"),
        (a.json, "--json"),
    ]
    .into_iter()
    .find_map(|(given, flag)| given.then_some(flag))
}

/// `YYYYmmdd-HHMMSS` in UTC (civil-from-days).
fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
