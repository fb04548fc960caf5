//! The training loop: engine batches -> device -> model -> FNC loss ->
//! optimiser, with metrics, checkpoints and exact resume. Everything else it
//! uses lives in its own module; nothing imports from here.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use fnc_augment::{AugmentError, Loader, Sampler};
use tch::{nn, Tensor};

use crate::checkpoint::{Checkpoint, CheckpointState, RunDir};
use crate::config::TrainConfig;
use crate::device::parse_device;
use crate::dist::ProcessGroup;
use crate::error::TrainError;
use crate::features::{extract_features, knn_top1, KNN_K, KNN_T};
use crate::feed::Feed;
use crate::loss::Detect;
use crate::metrics::{MetricsLog, StepMetrics, TrainSummary};
use crate::model::build_model;
use crate::momentum::Momentum;
use crate::optim::{learning_rate, trainable, Optimizer};
use crate::step::forward_loss;

/// Sees a run as it goes: every step's metrics, and each bad record (once)
/// when `--max-bad-records` lets the run replace it.
pub trait Observer {
    /// Step `m.step` of `total` is done.
    fn step(&self, m: &StepMetrics, total: u64);
    /// A record failed to decode and was replaced; called once per record.
    fn bad_record(&self, _err: &AugmentError) {}
}

impl<F: Fn(&StepMetrics, u64)> Observer for F {
    fn step(&self, m: &StepMetrics, total: u64) {
        self(m, total)
    }
}

/// The distinct bad records replaced so far, against `--max-bad-records`.
struct BadRecords {
    max: u64,
    named: Vec<String>,
    seen: HashSet<String>,
}

impl BadRecords {
    fn new(max: u64, named: Vec<String>) -> BadRecords {
        let seen = named.iter().cloned().collect();
        BadRecords { max, named, seen }
    }

    /// Counts the batch's bad records; a record seen in an earlier epoch is
    /// not counted (or reported) again.
    fn add(&mut self, bad: Vec<AugmentError>, observer: &dyn Observer) -> Result<(), TrainError> {
        for e in bad {
            let name = e.to_string();
            if !self.seen.insert(name.clone()) {
                continue;
            }
            self.named.push(name);
            if self.named.len() as u64 > self.max {
                return Err(TrainError::TooManyBadRecords {
                    count: self.named.len(),
                    max: self.max,
                    last: e,
                });
            }
            observer.bad_record(&e);
        }
        Ok(())
    }
}

/// A seed for libtorch's generator at `step` of a run seeded `seed` (splitmix64).
fn step_seed(seed: u64, step: u64) -> i64 {
    let mut z = seed ^ step.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) as i64
}

/// Trains per `cfg` into `out` (a run directory); `resume` continues the latest
/// checkpoint there. `observer` sees every step and every bad record.
pub fn train(
    cfg: &TrainConfig,
    out: &Path,
    resume: bool,
    observer: &dyn Observer,
) -> Result<TrainSummary, TrainError> {
    train_parallel(cfg, out, resume, observer, None)
}

/// [`train`] as one rank of a data-parallel run over `group`: `--batch-size`
/// is the global batch, each rank reads its slice, embeddings are gathered so
/// the loss is the single-process loss of the global batch, gradients are
/// summed over the ranks, and only rank 0 writes the run directory.
pub fn train_parallel(
    cfg: &TrainConfig,
    out: &Path,
    resume: bool,
    observer: &dyn Observer,
    group: Option<&ProcessGroup>,
) -> Result<TrainSummary, TrainError> {
    cfg.validate()?;
    let (rank, world) = group.map(|g| (g.rank, g.world)).unwrap_or((0, 1));
    if !cfg.batch_size.is_multiple_of(world) {
        return Err(TrainError::Config {
            flag: "--batch-size",
            detail: format!(
                "{} is the global batch and must divide among the {world} ranks",
                cfg.batch_size
            ),
        });
    }
    let local_batch = cfg.batch_size / world;
    let writer = rank == 0;
    let device = match (parse_device(&cfg.device)?, group) {
        // Rank r uses the GPU of its local rank.
        (tch::Device::Cuda(_), Some(g)) => tch::Device::Cuda(g.local_rank),
        (d, _) => d,
    };
    let open_err = |err| TrainError::Dataset {
        path: cfg.shards.clone(),
        err,
    };
    let ds = fnc_formats::Dataset::open(&cfg.shards).map_err(open_err)?;
    let split = Arc::new(ds.split(&cfg.split).map_err(open_err)?);
    let epoch_len = split.len();
    cfg.check_split(epoch_len)?;
    // The k-NN monitor reads the training split through the same reader.
    let knn = if cfg.knn_every > 0 {
        let val = ds.split("val").map_err(|e| TrainError::Config {
            flag: "--knn-every",
            detail: format!("needs a val split: {e}"),
        })?;
        Some((
            split.clone(),
            val,
            ds.manifest().classes.len().max(1) as i64,
        ))
    } else {
        None
    };
    let steps_per_epoch = epoch_len / cfg.batch_size as u64;
    let total = if cfg.steps > 0 {
        cfg.steps
    } else {
        ((cfg.epochs * steps_per_epoch as f64).ceil() as u64).max(1)
    };
    let warmup = ((cfg.warmup_epochs * steps_per_epoch as f64) as u64).min(total / 2) as i64;
    let peak = cfg.peak_lr();

    let run = RunDir::new(out);
    if writer {
        std::fs::create_dir_all(out).map_err(crate::error::io(out))?;
    }
    let mut vs = nn::VarStore::new(device);
    let model = build_model(&vs, cfg);
    if let Some(g) = group {
        // Every rank starts from rank 0's weights (and BatchNorm statistics).
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        tch::no_grad(|| vars.iter().try_for_each(|(_, t)| g.broadcast(t, 0)))?;
    }
    let mut opt = Optimizer::new(cfg.optimizer, trainable(&vs), cfg.weight_decay);
    let mut momentum = (cfg.memory > 0)
        .then(|| Momentum::new(&vs, cfg))
        .transpose()?;
    let mut step = 0u64;
    let mut sampler = Sampler::new(epoch_len, cfg.seed, rank as u64, world as u64);
    let mut bad = BadRecords::new(cfg.max_bad_records, Vec::new());
    let mut last_ckpt: Option<Checkpoint> = None;
    if resume {
        if let Some(ck) = run.latest() {
            ck.restore_model(&mut vs, cfg.arch)?;
            ck.restore_training(&mut opt, momentum.as_mut())?;
            let state = ck.state();
            if state.world != world as u64 {
                return Err(TrainError::Config {
                    flag: "--resume",
                    detail: format!(
                        "{} was written by a run of {} process(es); resume it with as many \
                         (--nproc-per-node or the launcher's world size), not {world}",
                        ck.dir().display(),
                        state.world
                    ),
                });
            }
            step = state.step;
            sampler = Sampler::restore(epoch_len, rank as u64, world as u64, state.sampler);
            bad = BadRecords::new(cfg.max_bad_records, state.bad_records.clone());
            last_ckpt = Some(ck);
        }
    } else if run.latest().is_some() {
        return Err(TrainError::Config {
            flag: "--out",
            detail: format!(
                "{} already holds a run; pass --resume to continue it or choose another --out",
                out.display()
            ),
        });
    }
    let mut metrics = if writer {
        run.write_config(cfg)?;
        Some(MetricsLog::open(
            &run.metrics_path(),
            resume.then_some(step),
        )?)
    } else {
        None
    };

    let feed = Feed::start(
        Loader::start(
            split,
            cfg.engine_config_for(cfg.workers, local_batch)?,
            sampler,
        )?,
        device,
    )?;
    let views = cfg.views() as i64;
    let (mut wait_sum, mut time_sum, mut final_loss) = (0.0, 0.0, f64::NAN);
    while step < total {
        let t0 = Instant::now();
        let batch = feed.next().ok_or(TrainError::EngineStopped)??;
        let waited = t0.elapsed().as_secs_f64();
        bad.add(batch.bad, observer)?;
        let lr = learning_rate(step as i64, peak, warmup, total as i64);
        let labels = &batch.labels;
        if cfg.loss.detect == Detect::Oracle && cfg.loss.oracle_precision < 1.0 {
            // The noisy oracle's draws depend on (seed, step) only, so a
            // resumed run repeats them.
            tch::manual_seed(step_seed(cfg.seed, step));
        }
        let groups: Vec<&Tensor> = batch.groups.iter().collect();
        let fwd = forward_loss(&model, momentum.as_ref(), &groups, labels, cfg, group)?;
        let mut comm_s = fwd.comm_s;
        let outp = fwd.out;
        let loss = fwd.value;
        if !loss.is_finite() {
            let checkpoint = match &last_ckpt {
                Some(c) => format!("The last good checkpoint is {}.", c.dir().display()),
                None => "No checkpoint was written yet.".into(),
            };
            return Err(TrainError::NonFinite {
                step: step + 1,
                checkpoint,
            });
        }
        let grads = match (opt.gradients(&outp.loss), group) {
            (Ok(g), _) => g,
            // The backward of synchronised BatchNorm runs collectives too.
            (Err(e), Some(g)) => {
                return Err(TrainError::Dist {
                    rank: g.rank,
                    world: g.world,
                    op: "backward",
                    // libtorch appends its C++ backtrace: the first line says it.
                    detail: crate::dist::take_failure().unwrap_or_else(|| {
                        let first = e.to_string().lines().next().unwrap_or_default().to_string();
                        format!("{first}{}", g.diagnosis())
                    }),
                });
            }
            (Err(e), None) => return Err(e.into()),
        };
        if let Some(g) = group {
            let t = Instant::now();
            g.all_reduce_grads(&grads)?;
            comm_s += t.elapsed().as_secs_f64();
        }
        opt.step(&grads, lr);
        if let (Some(mo), Some((zm, keys_labels))) = (momentum.as_mut(), fwd.keys) {
            mo.update();
            mo.bank.push(&zm, &keys_labels, views, &cfg.loss)?;
        }
        step += 1;
        let dt = t0.elapsed().as_secs_f64();
        wait_sum += waited;
        time_sum += dt;
        final_loss = loss;
        let knn_top1 = match &knn {
            Some((tr, va, classes))
                if writer && (step.is_multiple_of(cfg.knn_every) || step == total) =>
            {
                let (tf, tl) = extract_features(&model, tr, cfg.image_size, 256, device)?;
                let (vf, vl) = extract_features(&model, va, cfg.image_size, 256, device)?;
                Some(knn_top1(&tf, &tl, &vf, &vl, KNN_K, KNN_T, *classes))
            }
            _ => None,
        };
        let m = StepMetrics {
            step,
            epoch: batch.epoch,
            loss,
            lr,
            images_per_s: cfg.batch_size as f64 / dt,
            data_wait: waited / dt,
            mean_fn: outp.mean_fn,
            fn_precision: outp.fn_precision,
            fn_chance: outp.fn_chance,
            fn_recall: outp.fn_recall,
            knn_top1,
            bad_records: bad.named.len() as u64,
            comm: group.map(|_| comm_s / dt),
        };
        if let Some(log) = metrics.as_mut() {
            log.append(&m)?;
        }
        observer.step(&m, total);
        if writer && (step.is_multiple_of(cfg.checkpoint_every) || step == total) {
            let state = CheckpointState {
                step,
                sampler: batch.sampler_after,
                arch: cfg.arch.name().into(),
                bad_records: bad.named.clone(),
                world: world as u64,
            };
            last_ckpt = Some(run.save(&vs, &opt, momentum.as_ref(), state)?);
        }
    }
    Ok(TrainSummary {
        out: out.display().to_string(),
        steps: step,
        device: format!("{device:?}"),
        final_loss,
        mean_data_wait: if time_sum > 0.0 {
            wait_sum / time_sum
        } else {
            0.0
        },
        checkpoint: last_ckpt
            .map(|c| c.dir().display().to_string())
            .unwrap_or_default(),
        bad_records: bad.named,
    })
}
