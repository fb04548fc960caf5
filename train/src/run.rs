//! The training loop: engine batches -> device -> model -> FNC loss -> optimiser,
//! with metrics, atomic checkpoints and exact resume.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use fnc_augment::{EngineConfig, Loader, Sampler, SamplerState};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::config::TrainConfig;
use crate::feed::Feed;
use crate::loss::{fnc_loss, fnc_loss_memory};
use crate::model::{normalise_as, to_channels_last, Model};
use crate::momentum::Momentum;
use crate::optim::{learning_rate, Optimizer};

/// Errors that stop a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    // The cause is in the message, not chained as a source, so that it is
    // printed once both by Display and by anyhow's `{:#}`.
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("--shards {path}: {err}")]
    Shards {
        path: PathBuf,
        err: fnc_formats::FormatError,
    },
    #[error(transparent)]
    Augment(#[from] fnc_augment::AugmentError),
    #[error(transparent)]
    Loss(#[from] crate::loss::LossError),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    #[error("invalid option {flag}: {detail}")]
    Config { flag: &'static str, detail: String },
    #[error("the loss is not finite at step {step}; stopped without updating. {checkpoint}")]
    NonFinite { step: u64, checkpoint: String },
    #[error("cannot resume {path}: {detail}")]
    Resume { path: PathBuf, detail: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |err| TrainError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepMetrics {
    pub step: u64,
    pub epoch: u64,
    pub loss: f64,
    pub lr: f64,
    pub images_per_s: f64,
    /// Share of the step spent waiting for the augmentation engine.
    pub data_wait: f64,
    /// Mean |F_i|.
    pub mean_fn: f64,
    /// Share of detected false negatives carrying the anchor's label.
    pub fn_precision: Option<f64>,
    /// The same share among all candidates: the chance rate.
    pub fn_chance: Option<f64>,
    /// Weighted k-NN (k = 20) top-1 on val, percent, on `--knn-every` steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knn_top1: Option<f64>,
}

/// What a finished run reports.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    pub out: String,
    pub steps: u64,
    pub device: String,
    pub final_loss: f64,
    pub mean_data_wait: f64,
    pub checkpoint: String,
}

/// Checkpoint bookkeeping kept next to the tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointState {
    step: u64,
    sampler: SamplerState,
    arch: String,
}

/// Parses `--device`.
pub fn parse_device(s: &str) -> Result<Device, TrainError> {
    let bad = |detail: String| TrainError::Config {
        flag: "--device",
        detail,
    };
    match s {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        _ => {
            let n = match s.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| bad(format!("{s:?} is not auto, cpu, cuda or cuda:N")))?,
                None => return Err(bad(format!("{s:?} is not auto, cpu, cuda or cuda:N"))),
            };
            if !tch::Cuda::is_available() || n >= tch::Cuda::device_count() as usize {
                return Err(bad(format!("{s}: no such CUDA device on this machine")));
            }
            Ok(Device::Cuda(n))
        }
    }
}

/// Directory of the newest complete checkpoint of a run, if any.
pub fn latest_checkpoint(run: &Path) -> Option<PathBuf> {
    let name = fs::read_to_string(run.join("checkpoints").join("latest")).ok()?;
    let dir = run.join("checkpoints").join(name.trim());
    dir.join("state.json").is_file().then_some(dir)
}

/// Trainable variables, sorted by name (a stable order for the optimiser).
pub(crate) fn trainable(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Writes named tensors as safetensors; channels-last ones are written in
/// standard (contiguous) order, so files do not depend on the memory format.
fn write_tensors(
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

fn save_checkpoint(
    run: &Path,
    vs: &nn::VarStore,
    opt: &Optimizer,
    momentum: Option<&Momentum>,
    state: &CheckpointState,
) -> Result<PathBuf, TrainError> {
    let dir = run.join("checkpoints");
    let name = format!("step-{:08}", state.step);
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    write_tensors(&tmp.join("model.safetensors"), vs.variables())?;
    write_tensors(&tmp.join("optimizer.safetensors"), opt.state())?;
    if let Some(mo) = momentum {
        write_tensors(&tmp.join("momentum.safetensors"), mo.state())?;
    }
    let json = serde_json::to_vec_pretty(state).map_err(|e| TrainError::Resume {
        path: tmp.clone(),
        detail: e.to_string(),
    })?;
    fs::write(tmp.join("state.json"), json).map_err(io(&tmp))?;
    let final_dir = dir.join(&name);
    let _ = fs::remove_dir_all(&final_dir);
    fs::rename(&tmp, &final_dir).map_err(io(&final_dir))?;
    fnc_formats::write_atomic(&dir.join("latest"), name.as_bytes()).map_err(|e| {
        TrainError::Resume {
            path: dir.clone(),
            detail: e.to_string(),
        }
    })?;
    // Keep the two newest.
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
    for old in all.iter().rev().skip(2) {
        let _ = fs::remove_dir_all(old);
    }
    Ok(final_dir)
}

/// Builds the model of `cfg` in `vs` (seeded), its convolution weights
/// channels-last when `cfg.memory_format` says so on `vs`'s device.
pub fn build_model(vs: &nn::VarStore, cfg: &TrainConfig) -> Model {
    tch::manual_seed(cfg.seed as i64);
    let model = Model::new(&vs.root(), cfg.arch, cfg.proj_dim);
    if cfg.memory_format.channels_last(vs.device()) {
        to_channels_last(vs);
    }
    model
}

/// Loads the latest checkpoint of `run` into `vs` and returns its step.
pub fn load_latest(run: &Path, vs: &mut nn::VarStore) -> Result<u64, TrainError> {
    let dir = latest_checkpoint(run).ok_or_else(|| TrainError::Resume {
        path: run.to_path_buf(),
        detail: "no complete checkpoint".into(),
    })?;
    let state = read_state(&dir)?;
    vs.load(dir.join("model.safetensors"))
        .map_err(|e| TrainError::Resume {
            path: dir.clone(),
            detail: format!("model weights do not fit this architecture: {e}"),
        })?;
    Ok(state.step)
}

fn read_state(dir: &Path) -> Result<CheckpointState, TrainError> {
    let p = dir.join("state.json");
    let text = fs::read_to_string(&p).map_err(io(&p))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Resume {
        path: p,
        detail: e.to_string(),
    })
}

/// Embeddings of the uint8 NHWC view groups (main views, then support views;
/// each group view-major) and their FNC loss.
/// The uint8 NHWC view groups (main views, then support views; each group
/// view-major) normalised in `cfg`'s precision and layout.
fn prepare_groups(groups: &[&Tensor], cfg: &TrainConfig) -> Vec<Tensor> {
    groups
        .iter()
        .map(|x| {
            let dev = x.device();
            normalise_as(
                x,
                cfg.precision.kind(dev),
                cfg.memory_format.channels_last(dev),
            )
        })
        .collect()
}

/// Train-mode projections of prepared view groups, concatenated, as float32:
/// the loss and its detection run in float32 whatever the model computes in.
pub(crate) fn project_groups(model: &Model, inputs: &[Tensor]) -> Tensor {
    let parts: Vec<Tensor> = inputs.iter().map(|x| model.project(x, true)).collect();
    Tensor::cat(&parts, 0).to_kind(Kind::Float)
}

/// Embeddings of the view groups and their FNC loss; with the memory variant,
/// also the momentum encoder's embeddings of the same normalised inputs (to
/// push into the bank after the step).
fn forward_loss(
    model: &Model,
    momentum: Option<&Momentum>,
    groups: &[&Tensor],
    labels: &Tensor,
    cfg: &TrainConfig,
) -> Result<(crate::loss::LossOutput, Option<Tensor>), TrainError> {
    let views = cfg.views() as i64;
    let inputs = prepare_groups(groups, cfg);
    let z = project_groups(model, &inputs);
    match momentum {
        None => Ok((fnc_loss(&z, views, &cfg.loss, Some(labels))?, None)),
        Some(mo) => {
            let zm = mo.embed(&inputs);
            let out = fnc_loss_memory(&z, &zm, &mo.bank, views, &cfg.loss, Some(labels))?;
            Ok((out, Some(zm)))
        }
    }
}

/// The memory variant's bank must hold at least one batch of anchor views.
fn check_memory(cfg: &TrainConfig) -> Result<(), TrainError> {
    let anchor_views = cfg.loss.anchor_views(cfg.views() as i64) as usize;
    if cfg.memory > 0 && cfg.memory < anchor_views {
        return Err(TrainError::Config {
            flag: "--memory",
            detail: format!(
                "{} x batch rows cannot hold one batch of {anchor_views} anchor views; \
                 use at least {anchor_views} (the reference uses 16)",
                cfg.memory
            ),
        });
    }
    if !(0.0..1.0).contains(&cfg.ema_decay) {
        return Err(TrainError::Config {
            flag: "--ema-decay",
            detail: format!("{} is not in [0, 1)", cfg.ema_decay),
        });
    }
    Ok(())
}

/// Mean seconds per timed step of [`bench_steps`], whole and by phase.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct BenchTimes {
    pub step_s: f64,
    /// Normalisation, encoder, head and loss (and the momentum encoder).
    pub forward_s: f64,
    pub backward_s: f64,
    /// The optimiser update (and the moving average and bank).
    pub optimizer_s: f64,
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Step time of `cfg`'s model and loss on random uint8 views (no data loading):
/// `warmup` untimed steps, then the mean of `steps` timed ones, split into
/// phases (the device is synchronised between phases).
pub fn bench_steps(
    cfg: &TrainConfig,
    warmup: usize,
    steps: usize,
) -> Result<(BenchTimes, String), TrainError> {
    let device = parse_device(&cfg.device)?;
    check_memory(cfg)?;
    let vs = nn::VarStore::new(device);
    let model = build_model(&vs, cfg);
    let mut opt = Optimizer::new(cfg.optimizer, trainable(&vs), cfg.weight_decay);
    let mut momentum = (cfg.memory > 0)
        .then(|| Momentum::new(&vs, cfg))
        .transpose()?;
    let b = cfg.batch_size as i64;
    let (s, ss) = (cfg.image_size as i64, cfg.support_size as i64);
    let opts = (Kind::Uint8, device);
    let main = Tensor::randint(256, [2 * b, s, s, 3], opts);
    let support =
        (cfg.support > 0).then(|| Tensor::randint(256, [cfg.support as i64 * b, ss, ss, 3], opts));
    let labels = Tensor::arange(b, (Kind::Int64, device));
    let mut sum = BenchTimes::default();
    for k in 0..warmup + steps {
        sync(device);
        let t0 = Instant::now();
        let mut groups = vec![&main];
        groups.extend(support.as_ref());
        let (out, zm) = forward_loss(&model, momentum.as_ref(), &groups, &labels, cfg)?;
        sync(device);
        let t1 = Instant::now();
        let grads = opt.gradients(&out.loss)?;
        sync(device);
        let t2 = Instant::now();
        opt.step(&grads, 0.1);
        if let (Some(mo), Some(zm)) = (momentum.as_mut(), zm) {
            mo.update();
            mo.bank.push(&zm, &labels, cfg.views() as i64, &cfg.loss)?;
        }
        // Reading the loss waits for the device.
        let _ = out.loss.double_value(&[]);
        let t3 = Instant::now();
        if k >= warmup {
            sum.forward_s += (t1 - t0).as_secs_f64();
            sum.backward_s += (t2 - t1).as_secs_f64();
            sum.optimizer_s += (t3 - t2).as_secs_f64();
            sum.step_s += (t3 - t0).as_secs_f64();
        }
    }
    let n = steps.max(1) as f64;
    let mean = BenchTimes {
        step_s: sum.step_s / n,
        forward_s: sum.forward_s / n,
        backward_s: sum.backward_s / n,
        optimizer_s: sum.optimizer_s / n,
    };
    Ok((mean, format!("{device:?}")))
}

/// Trains per `cfg` into `out` (a run directory); `resume` continues the latest
/// checkpoint there. `observe` sees every step's metrics.
pub fn train(
    cfg: &TrainConfig,
    out: &Path,
    resume: bool,
    observe: &dyn Fn(&StepMetrics, u64),
) -> Result<TrainSummary, TrainError> {
    let device = parse_device(&cfg.device)?;
    check_memory(cfg)?;
    let ds = fnc_formats::Dataset::open(&cfg.shards).map_err(|err| TrainError::Shards {
        path: cfg.shards.clone(),
        err,
    })?;
    let split = Arc::new(ds.split(&cfg.split).map_err(|err| TrainError::Shards {
        path: cfg.shards.clone(),
        err,
    })?);
    // The k-NN monitor reads the training split through the same reader.
    let knn_splits = if cfg.knn_every > 0 {
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
    let epoch_len = split.len();
    if cfg.batch_size < 2 || cfg.batch_size as u64 > epoch_len {
        return Err(TrainError::Config {
            flag: "--batch-size",
            detail: format!(
                "{} does not fit the {epoch_len} records of split {} (2..={epoch_len})",
                cfg.batch_size, cfg.split
            ),
        });
    }
    let steps_per_epoch = epoch_len / cfg.batch_size as u64;
    let total = if cfg.steps > 0 {
        cfg.steps
    } else {
        ((cfg.epochs * steps_per_epoch as f64).ceil() as u64).max(1)
    };
    let warmup = ((cfg.warmup_epochs * steps_per_epoch as f64) as u64).min(total / 2) as i64;
    let peak = cfg.peak_lr();

    fs::create_dir_all(out).map_err(io(out))?;
    let mut vs = nn::VarStore::new(device);
    let model = build_model(&vs, cfg);
    let mut opt = Optimizer::new(cfg.optimizer, trainable(&vs), cfg.weight_decay);
    let mut momentum = (cfg.memory > 0)
        .then(|| Momentum::new(&vs, cfg))
        .transpose()?;
    let mut step = 0u64;
    let mut sampler = Sampler::new(epoch_len, cfg.seed, 0, 1);
    let metrics_path = out.join("metrics.jsonl");
    if resume {
        if let Some(dir) = latest_checkpoint(out) {
            let state = read_state(&dir)?;
            if state.arch != cfg.arch.name() {
                return Err(TrainError::Resume {
                    path: dir,
                    detail: format!(
                        "checkpoint of {} but --arch {}",
                        state.arch,
                        cfg.arch.name()
                    ),
                });
            }
            vs.load(dir.join("model.safetensors"))
                .map_err(|e| TrainError::Resume {
                    path: dir.clone(),
                    detail: e.to_string(),
                })?;
            let named: HashMap<String, Tensor> =
                Tensor::read_safetensors(dir.join("optimizer.safetensors"))?
                    .into_iter()
                    .collect();
            opt.load_state(&named)
                .map_err(|detail| TrainError::Resume {
                    path: dir.clone(),
                    detail,
                })?;
            if let Some(mo) = momentum.as_mut() {
                let named: HashMap<String, Tensor> =
                    Tensor::read_safetensors(dir.join("momentum.safetensors"))
                        .map_err(|e| TrainError::Resume {
                            path: dir.clone(),
                            detail: format!("no momentum encoder state for --memory: {e}"),
                        })?
                        .into_iter()
                        .collect();
                mo.load_state(&named).map_err(|detail| TrainError::Resume {
                    path: dir.clone(),
                    detail,
                })?;
            }
            step = state.step;
            sampler = Sampler::restore(epoch_len, 0, 1, state.sampler);
        }
        // Lines past the checkpoint belong to steps that will be redone.
        if metrics_path.exists() {
            let keep: Vec<String> =
                BufReader::new(File::open(&metrics_path).map_err(io(&metrics_path))?)
                    .lines()
                    .map_while(Result::ok)
                    .filter(|l| {
                        serde_json::from_str::<StepMetrics>(l).is_ok_and(|m| m.step <= step)
                    })
                    .collect();
            let mut text = keep.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            fnc_formats::write_atomic(&metrics_path, text.as_bytes()).map_err(|e| {
                TrainError::Resume {
                    path: metrics_path.clone(),
                    detail: e.to_string(),
                }
            })?;
        }
    } else if latest_checkpoint(out).is_some() {
        return Err(TrainError::Config {
            flag: "--out",
            detail: format!(
                "{} already holds a run; pass --resume to continue it or choose another --out",
                out.display()
            ),
        });
    }
    let toml = toml::to_string_pretty(cfg).map_err(|e| TrainError::Config {
        flag: "--config",
        detail: e.to_string(),
    })?;
    fs::write(out.join("config.toml"), toml).map_err(io(out))?;
    let mut metrics = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .map_err(io(&metrics_path))?;

    let engine = EngineConfig::builder()
        .batch_size(cfg.batch_size)
        .support(cfg.support)
        .size(cfg.image_size)
        .support_size(cfg.support_size)
        .seed(cfg.seed)
        .threads(cfg.workers)
        .build()?;
    let feed = Feed::start(
        Loader::start(split, engine, sampler)?,
        cfg.batch_size,
        device,
    )?;
    let views = cfg.views() as i64;
    let b = cfg.batch_size;
    let mut last_ckpt = latest_checkpoint(out);
    let (mut wait_sum, mut time_sum, mut final_loss) = (0.0, 0.0, f64::NAN);
    while step < total {
        let t0 = Instant::now();
        let batch = feed.next().ok_or_else(|| TrainError::Config {
            flag: "--shards",
            detail: "the augmentation engine stopped".into(),
        })??;
        let waited = t0.elapsed().as_secs_f64();
        let lr = learning_rate(step as i64, peak, warmup, total as i64);
        let labels = &batch.labels;
        let mut groups = vec![&batch.main];
        groups.extend(batch.support.as_ref());
        let (outp, zm) = forward_loss(&model, momentum.as_ref(), &groups, labels, cfg)?;
        let loss = outp.loss.double_value(&[]);
        if !loss.is_finite() {
            let checkpoint = match &last_ckpt {
                Some(p) => format!("The last good checkpoint is {}.", p.display()),
                None => "No checkpoint was written yet.".into(),
            };
            return Err(TrainError::NonFinite {
                step: step + 1,
                checkpoint,
            });
        }
        let grads = opt.gradients(&outp.loss)?;
        opt.step(&grads, lr);
        if let (Some(mo), Some(zm)) = (momentum.as_mut(), zm) {
            mo.update();
            mo.bank.push(&zm, labels, views, &cfg.loss)?;
        }
        step += 1;
        let dt = t0.elapsed().as_secs_f64();
        wait_sum += waited;
        time_sum += dt;
        final_loss = loss;
        let m = StepMetrics {
            step,
            epoch: batch.epoch,
            loss,
            lr,
            images_per_s: b as f64 / dt,
            data_wait: waited / dt,
            mean_fn: outp.mean_fn,
            fn_precision: outp.fn_precision,
            fn_chance: outp.fn_chance,
            knn_top1: match &knn_splits {
                Some((tr, va, classes)) if step.is_multiple_of(cfg.knn_every) || step == total => {
                    let (tf, tl) =
                        crate::features::extract_features(&model, tr, cfg.image_size, 256, device)?;
                    let (vf, vl) =
                        crate::features::extract_features(&model, va, cfg.image_size, 256, device)?;
                    Some(crate::features::knn_top1(
                        &tf, &tl, &vf, &vl, 20, 0.07, *classes,
                    ))
                }
                _ => None,
            },
        };
        let line = serde_json::to_string(&m).map_err(|e| TrainError::Config {
            flag: "--out",
            detail: e.to_string(),
        })?;
        writeln!(metrics, "{line}").map_err(io(&metrics_path))?;
        metrics.flush().map_err(io(&metrics_path))?;
        observe(&m, total);
        if step.is_multiple_of(cfg.checkpoint_every.max(1)) || step == total {
            let state = CheckpointState {
                step,
                sampler: batch.sampler_after,
                arch: cfg.arch.name().into(),
            };
            last_ckpt = Some(save_checkpoint(out, &vs, &opt, momentum.as_ref(), &state)?);
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
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    })
}

/// Writes the encoder of `run`'s latest checkpoint as safetensors with
/// torchvision's names (head dropped, `num_batches_tracked` added).
pub fn export_encoder(run: &Path, out_file: &Path) -> Result<usize, TrainError> {
    let cfg_path = run.join("config.toml");
    let text = fs::read_to_string(&cfg_path).map_err(io(&cfg_path))?;
    let cfg: TrainConfig = toml::from_str(&text).map_err(|e| TrainError::Resume {
        path: cfg_path.clone(),
        detail: e.to_string(),
    })?;
    let mut vs = nn::VarStore::new(Device::Cpu);
    let _model = build_model(&vs, &cfg);
    load_latest(run, &mut vs)?;
    let mut named: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(n, _)| !n.starts_with("head."))
        .collect();
    let extra: Vec<(String, Tensor)> = named
        .iter()
        .filter_map(|(n, _)| {
            n.strip_suffix("running_mean").map(|p| {
                (
                    format!("{p}num_batches_tracked"),
                    Tensor::from_slice(&[0i64]).view([]),
                )
            })
        })
        .collect();
    named.extend(extra);
    let n = named.len();
    write_tensors(out_file, named)?;
    Ok(n)
}
