//! The training loop: engine batches -> device -> model -> FNC loss ->
//! optimiser, with metrics, checkpoints and exact resume. Everything else it
//! uses lives in its own module; nothing imports from here.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use fnc_augment::{AugmentError, EngineConfig, Loader, Sampler};
use tch::{nn, Tensor};

use crate::bad_records::BadRecords;
use crate::checkpoint::{CheckpointState, RunDir, Snapshot};
use crate::config::TrainConfig;
use crate::device::{parse_device, share_of_cores};
use crate::dist::ProcessGroup;
use crate::error::TrainError;
use crate::events::Events;
use crate::feed::Feed;
use crate::loss::Detect;
use crate::metrics::{MetricsLog, StepMetrics, TrainSummary};
use crate::model::build_model;
use crate::momentum::Momentum;
use crate::monitor::Monitor;
use crate::oom::{device_total, guard, out_of_memory};
use crate::optim::{learning_rate, trainable, Optimizer};
use crate::saver::Saver;
use crate::start::{restore, Start};
use crate::step::train_step;

/// Sees a run as it goes: every step's metrics, and each bad record (once)
/// when `--max-bad-records` lets the run replace it.
pub trait Observer {
    /// Step `m.step` of `total` is done.
    fn step(&self, m: &StepMetrics, total: u64);
    /// A record failed to decode and was replaced; called once per record.
    fn bad_record(&self, _err: &AugmentError) {}
    /// The run starts at step `step` (0: from the beginning); `resumed` when
    /// it continues a checkpoint, false for a new run or a `--resume` of a
    /// run that had none yet.
    fn started(&self, _step: u64, _resumed: bool) {}
    /// Something a person should know that does not stop the run (an image
    /// of the TensorBoard events that could not be made, say).
    fn warning(&self, _text: &str) {}
}

impl<F: Fn(&StepMetrics, u64)> Observer for F {
    fn step(&self, m: &StepMetrics, total: u64) {
        self(m, total)
    }
}

/// Augmentation threads: `--workers`, or with 0 this machine's `cores`
/// divided among its `local_world` ranks (each rank of a node would otherwise
/// start one per core).
fn workers_of(workers: usize, local_world: usize, cores: usize) -> usize {
    match workers {
        0 if local_world > 1 => share_of_cores(cores, local_world),
        n => n,
    }
}

/// A seed for libtorch's generator at `step` of a run seeded `seed` (splitmix64).
fn step_seed(seed: u64, step: u64) -> i64 {
    let mut z = seed ^ step.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) as i64
}

/// Trains per `cfg` into `out` (a run directory) from where `start` says.
/// `observer` sees every step and every bad record.
pub fn train(
    cfg: &TrainConfig,
    out: &Path,
    start: &Start,
    observer: &dyn Observer,
) -> Result<TrainSummary, TrainError> {
    train_parallel(cfg, out, start, observer, None)
}

/// The length of a run and its schedule.
struct Plan {
    total: u64,
    warmup: i64,
    peak: f64,
}

impl Plan {
    fn of(cfg: &TrainConfig, epoch_len: u64) -> Plan {
        let steps_per_epoch = epoch_len / cfg.batch_size as u64;
        let total = if cfg.steps > 0 {
            cfg.steps
        } else {
            ((cfg.epochs * steps_per_epoch as f64).ceil() as u64).max(1)
        };
        let warmup = ((cfg.warmup_epochs * steps_per_epoch as f64) as u64).min(total / 2) as i64;
        Plan {
            total,
            warmup,
            peak: cfg.peak_lr(),
        }
    }
}

/// The training split, and the k-NN monitor's splits with `--knn-every`.
fn open_data(
    cfg: &TrainConfig,
) -> Result<(Arc<fnc_formats::SplitReader>, Option<Monitor>), TrainError> {
    let open_err = |err| TrainError::Dataset {
        path: cfg.shards.clone(),
        err,
    };
    let ds = fnc_formats::Dataset::open(&cfg.shards).map_err(open_err)?;
    let split = Arc::new(ds.split(&cfg.split).map_err(open_err)?);
    cfg.check_split(split.len())?;
    // The k-NN monitor reads the training split through the same reader.
    let monitor = if cfg.knn_every > 0 {
        let eval_split = ds.manifest().evaluation_split().unwrap_or("val");
        let val = ds.split(eval_split).map_err(|e| TrainError::Config {
            flag: "--knn-every",
            detail: format!("needs a val or test split: {e}"),
        })?;
        Some(Monitor {
            train: split.clone(),
            val,
            classes: ds.manifest().classes.len().max(1) as i64,
        })
    } else {
        None
    };
    Ok((split, monitor))
}

/// Rank 0's writing of the run directory after a step: the metrics line, and
/// a checkpoint when one is due. An error here is kept, not returned at once:
/// in a data-parallel run every rank learns of it in the next step's
/// collective and all stop together.
struct Writer {
    metrics: MetricsLog,
    events: Option<Events>,
    metrics_path: std::path::PathBuf,
    saver: Saver,
    failed: Option<TrainError>,
}

impl Writer {
    /// The end of the run: an error kept from a step, or the last
    /// checkpoint once it is written.
    fn finish(mut self) -> Result<Option<String>, TrainError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.saver.wait()?;
        Ok(self
            .saver
            .last
            .as_ref()
            .map(|c| c.dir().display().to_string()))
    }

    /// The views of the first images of the run, as the engine makes them,
    /// into the events (at step 0). Images are for people: one that cannot be
    /// made (a bad record among the first, say) is a warning, not a stop.
    fn contact_sheet(
        &mut self,
        split: &Arc<fnc_formats::SplitReader>,
        engine: &EngineConfig,
        observer: &dyn Observer,
    ) {
        let Some(ev) = self.events.as_mut() else {
            return;
        };
        match fnc_augment::contact_sheet(split.clone(), engine, SHEET_IMAGES) {
            Ok(sheet) => {
                if let Err(e) = ev.image(0, "augment/views", &sheet) {
                    self.failed.get_or_insert(e);
                }
            }
            Err(e) => observer.warning(&format!(
                "no augmentation sheet in the TensorBoard events: {e}"
            )),
        }
    }

    fn record(
        &mut self,
        m: &StepMetrics,
        checkpoint: Option<(Snapshot, CheckpointState)>,
        observer: &dyn Observer,
    ) {
        let due = checkpoint.is_some();
        let done = self
            .metrics
            .append(m)
            .and_then(|()| self.events.as_mut().map_or(Ok(()), |e| e.step(m)))
            .and_then(|()| match checkpoint {
                Some((snap, state)) => self.saver.submit(snap, state),
                None => self.saver.poll(),
            });
        if let Err(e) = done {
            self.failed.get_or_insert(e);
        }
        if let (Some(ev), true) = (&mut self.events, due) {
            // The report of the run so far, beside the checkpoint.
            if let Err(e) = crate::report::to_events(ev, &self.metrics_path, m.step) {
                observer.warning(&format!("no report in the TensorBoard events: {e}"));
            }
        }
    }
}

/// The step this command stops at: `--stop-at-step`, or the run's end.
fn stop_of(cfg: &TrainConfig, total: u64) -> u64 {
    match cfg.stop_at_step {
        0 => total,
        k => k.min(total),
    }
}

/// Images in the augmentation sheet of a run's TensorBoard events.
const SHEET_IMAGES: usize = 4;

/// [`train`] as one rank of a data-parallel run over `group`: `--batch-size`
/// is the global batch, each rank reads its slice, embeddings are gathered so
/// the loss is the single-process loss of the global batch, gradients are
/// summed over the ranks, and only rank 0 writes the run directory.
pub fn train_parallel(
    cfg: &TrainConfig,
    out: &Path,
    start: &Start,
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
    let device = match group {
        Some(g) => g.device,
        None => parse_device(&cfg.device)?,
    };
    if device.is_cuda() {
        // Every step has the same shapes: let cuDNN time its algorithms once.
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let (split, monitor) = open_data(cfg)?;
    let epoch_len = split.len();
    let plan = Plan::of(cfg, epoch_len);

    let run = RunDir::new(out);
    let mut vs = nn::VarStore::new(device);
    // The run's weights are drawn from --seed.
    tch::manual_seed(cfg.seed as i64);
    let model = build_model(&vs, &cfg.model_spec(vs.device()));
    let mut opt = Optimizer::new(cfg.optimizer, trainable(&vs), cfg.weight_decay);
    let mut momentum = (cfg.memory > 0)
        .then(|| Momentum::new(&vs, cfg))
        .transpose()?;
    // Rank 0 finds and restores the checkpoint and prepares the run
    // directory; every rank takes its word.
    let started = restore(
        &run,
        start,
        cfg,
        &mut vs,
        &mut opt,
        momentum.as_mut(),
        group,
    )?;
    let (mut step, sampler, mut bad) = match &started.state {
        Some(state) => (
            state.step,
            Sampler::restore(epoch_len, rank as u64, world as u64, state.sampler),
            BadRecords::new(cfg.max_bad_records, state.bad_records.clone()),
        ),
        None => (
            0,
            Sampler::new(epoch_len, cfg.seed, rank as u64, world as u64),
            BadRecords::new(cfg.max_bad_records, Vec::new()),
        ),
    };
    if rank == 0 {
        observer.started(step, started.state.is_some());
    }
    let mut writer = started.metrics.map(|logs| Writer {
        metrics: logs.metrics,
        events: logs.events,
        metrics_path: run.metrics_path(),
        // A branch's checkpoints are its own: it starts with none.
        saver: Saver::new(
            run.clone(),
            started
                .checkpoint
                .filter(|_| !matches!(start, Start::InitFrom(_))),
        ),
        failed: None,
    });
    if let (Start::InitFrom(parent), Some(state)) = (start, &started.state) {
        if step >= stop_of(cfg, plan.total) {
            return Err(TrainError::Config {
                flag: "--init-from",
                detail: format!(
                    "{} stops at step {step}, where the branch would start: give the branch \
                     more --steps (or a later --stop-at-step)",
                    parent.display()
                ),
            });
        }
        // The state it starts from, as its own first checkpoint: a resume
        // of the branch continues the branch, never its parent's files.
        if let Some(w) = writer.as_mut() {
            let own = CheckpointState {
                files: Default::default(),
                ..state.clone()
            };
            w.saver
                .submit(Snapshot::take(&vs, &opt, momentum.as_ref()), own)?;
        }
    }

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = workers_of(cfg.workers, group.map_or(1, |g| g.local_world), cores);
    let engine = cfg.engine_config_for(workers, cfg.batch_size / world, world)?;
    if let Some(w) = writer.as_mut().filter(|_| step == 0) {
        w.contact_sheet(&split, &engine, observer);
    }
    let feed = Feed::start(Loader::start(split, engine, sampler)?, device)?;
    let (mut wait_sum, mut time_sum, mut final_loss) = (0.0, 0.0, f64::NAN);
    // --stop-at-step ends this command early, checkpointed, on the full schedule.
    let stop = stop_of(cfg, plan.total);
    if cfg.stop_at_step > 0 && stop <= step {
        return Err(TrainError::Config {
            flag: "--stop-at-step",
            detail: format!(
                "{}: the run is at step {step} already; stop later, or resume without it",
                cfg.stop_at_step
            ),
        });
    }
    while step < stop {
        let t0 = Instant::now();
        let syncs0 = crate::host::syncs();
        let batch = feed.next().ok_or(TrainError::EngineStopped)??;
        let waited = t0.elapsed().as_secs_f64();
        let failed = writer.as_ref().is_some_and(|w| w.failed.is_some());
        if failed && group.is_none() {
            break;
        }
        if let Err(e) = bad.add(batch.bad, &|e| observer.bad_record(e), group, failed) {
            // Rank 0 stops with the error it met.
            return Err(writer.and_then(|w| w.failed).unwrap_or(e));
        }
        let lr = learning_rate(step as i64, plan.peak, plan.warmup, plan.total as i64);
        if cfg.loss.detect == Detect::Oracle && cfg.loss.oracle_precision < 1.0 {
            // The noisy oracle's draws depend on (seed, step) only, so a
            // resumed run repeats them.
            tch::manual_seed(step_seed(cfg.seed, step));
        }
        let groups: Vec<&Tensor> = batch.groups.iter().collect();
        // A step that cannot allocate stops the run with the last good
        // checkpoint as it was (nothing of this step is written).
        let oom = |a, w: Option<&mut Writer>| {
            let advice =
                crate::plan::advice(cfg, world, device_total(&a, device), device.is_cuda());
            out_of_memory(a, step + 1, device, advice, last_good(w))
        };
        // Before --fn-start-step, the step of --fn-strategy none.
        let step_cfg = cfg.at_step(step + 1);
        let stepped = match guard(|| {
            train_step(
                &model,
                momentum.as_ref(),
                &groups,
                &batch.labels,
                &step_cfg,
                group,
                &opt.parameters(),
                false,
            )
        }) {
            Ok(stepped) => stepped?,
            Err(a) => return Err(oom(a, writer.as_mut())),
        };
        let comm_s = stepped.comm_s;
        let outp = stepped.out;
        let loss = stepped.value;
        if !loss.is_finite() {
            return Err(TrainError::NonFinite {
                step: step + 1,
                checkpoint: last_good(writer.as_mut()),
            });
        }
        let grads = stepped.grads;
        let keys = stepped.keys;
        match guard(|| apply(&mut opt, momentum.as_mut(), &grads, keys, lr, cfg)) {
            Ok(done) => done?,
            Err(a) => return Err(oom(a, writer.as_mut())),
        }
        step += 1;
        // (the k-NN monitor's, every --knn-every steps, are not the step's)
        let host_syncs = crate::host::syncs().saturating_sub(syncs0);
        let dt = t0.elapsed().as_secs_f64();
        wait_sum += waited;
        time_sum += dt;
        final_loss = loss;
        let knn_top1 = match &monitor {
            Some(mon) if step.is_multiple_of(cfg.knn_every) || step == plan.total => {
                Some(mon.knn_top1(&model, cfg.image_size, device, group)?)
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
            host_syncs,
        };
        observer.step(&m, plan.total);
        if let Some(w) = writer.as_mut() {
            let due = step.is_multiple_of(cfg.checkpoint_every) || step == stop;
            let checkpoint = due.then(|| {
                let state = CheckpointState {
                    step,
                    sampler: batch.sampler_after,
                    arch: cfg.arch.name().into(),
                    bad_records: bad.named.clone(),
                    world: world as u64,
                    files: Default::default(),
                };
                (Snapshot::take(&vs, &opt, momentum.as_ref()), state)
            });
            w.record(&m, checkpoint, observer);
        }
    }
    let checkpoint = match writer {
        Some(w) => w.finish()?,
        None => None,
    };
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
        checkpoint: checkpoint.unwrap_or_default(),
        bad_records: bad.named,
    })
}

/// The update of a step from its gradients (summed over the ranks of a
/// data-parallel run): the optimiser's step, and the memory variant's moving
/// average and bank (`keys`: the batch's momentum embeddings and labels).
fn apply(
    opt: &mut Optimizer,
    momentum: Option<&mut Momentum>,
    grads: &[Tensor],
    keys: Option<(Tensor, Tensor)>,
    lr: f64,
    cfg: &TrainConfig,
) -> Result<(), TrainError> {
    opt.step(grads, lr);
    if let (Some(mo), Some((zm, labels))) = (momentum, keys) {
        mo.update();
        mo.bank.push(&zm, &labels, cfg.views() as i64, &cfg.loss)?;
    }
    Ok(())
}

/// "The last good checkpoint is ..." once the one in flight is written.
fn last_good(writer: Option<&mut Writer>) -> String {
    let last = writer.and_then(|w| {
        let _ = w.saver.wait();
        w.saver.last.as_ref().map(|c| c.dir().display().to_string())
    });
    match last {
        Some(dir) => format!("The last good checkpoint is {dir}."),
        None => "No checkpoint was written yet.".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::workers_of;

    #[test]
    fn workers_0_divides_the_cores_among_the_ranks_of_a_machine() {
        // One process: 0 stays "one per core" (the engine's own default).
        assert_eq!(workers_of(0, 1, 64), 0);
        // 8 ranks on a 64-core node: 8 threads each, not 64.
        assert_eq!(workers_of(0, 8, 64), 8);
        // More ranks than cores: one each.
        assert_eq!(workers_of(0, 8, 2), 1);
        // An explicit count holds.
        assert_eq!(workers_of(3, 8, 64), 3);
    }
}
