//! `fnc-train plan`: the memory one device of a run would take, part by
//! part, under each way of trading compute for memory (`--recompute`,
//! `--micro-batch`, `--loss-block`), and the cheapest that fits.
//!
//! The figures are estimates from the architecture (see `activations`), the
//! batch and the loss's own block estimate; `docs/benchmarks.md` holds them
//! against measured peaks.

mod activations;

use serde::Serialize;

pub use activations::{segments, Dtypes, SegmentCost};

use crate::config::TrainConfig;
use crate::error::TrainError;
use crate::loss::{loss_block_bytes, LOSS_BUDGET};

/// Where the plan is for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    /// Ranks of the run (devices).
    pub ranks: usize,
    /// Bytes of memory per device.
    pub device_memory: u64,
    /// CUDA devices (else the CPU, whose memory also holds the engine's
    /// batches).
    pub cuda: bool,
}

/// One way of running the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Setting {
    pub recompute: bool,
    /// Images per chunk; 0 = the whole batch.
    pub micro_batch: usize,
    /// Anchor rows per block of the loss; 0 = all at once.
    pub loss_block: i64,
}

impl Setting {
    /// The flags that select it.
    pub fn flags(&self) -> String {
        let mut f = Vec::new();
        if self.recompute {
            f.push("--recompute".to_string());
        }
        if self.micro_batch > 0 {
            f.push(format!("--micro-batch {}", self.micro_batch));
        }
        f.push(format!("--loss-block {}", self.loss_block));
        f.join(" ")
    }

    /// Compute beyond the plain step, as a share of it: a step is about one
    /// forward and a backward of twice its cost; recomputation and the
    /// micro-batches' first pass each add about a forward.
    pub fn extra_compute(&self) -> f64 {
        (u8::from(self.recompute) + u8::from(self.micro_batch > 0)) as f64 / 3.0
    }
}

/// The memory of one device under one [`Setting`], in bytes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    pub setting: Setting,
    /// Weights, gradients, optimiser state (and the momentum encoder).
    pub weights: u64,
    /// The memory bank.
    pub bank: u64,
    /// The batch: uint8 views and their normalised copies (on the CPU, also
    /// the engine's batches in flight).
    pub inputs: u64,
    /// What the forward keeps for the backward, and the backward's own
    /// working tensors, at their peak.
    pub activations: u64,
    /// The loss's score matrices (one block's).
    pub loss: u64,
    /// The runtime: libtorch, and on CUDA its context and workspaces.
    pub runtime: u64,
    pub total: u64,
    pub fits: bool,
    /// BatchNorm statistics as without micro-batches.
    pub exact: bool,
    pub extra_compute: f64,
}

/// A run's plan: what it is, per view, and the settings tried.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryPlan {
    pub ranks: usize,
    pub images_per_rank: usize,
    pub views: usize,
    pub device_memory: u64,
    pub cuda: bool,
    /// Bytes a main view's forward keeps for the backward, and its segment
    /// boundaries.
    pub view_bytes: u64,
    pub view_boundary_bytes: u64,
    pub estimates: Vec<Estimate>,
    /// The index in `estimates` of the cheapest setting that fits.
    pub chosen: Option<usize>,
}

/// The runtime's own memory: CUDA's context, cuBLAS and cuDNN workspaces;
/// on the CPU, libtorch and the engine's threads (measured: 0.5-1.0 GB at
/// batch 2 for the small CNN to ResNet-50, of which oneDNN holds a copy of
/// the weights in its own layout, counted with the weights).
const CUDA_RUNTIME: u64 = 1 << 30;
const CPU_RUNTIME: u64 = 500 << 20;
/// Share of a device's memory a plan fills at most (the allocator's
/// fragmentation, and what the estimate misses).
const HEADROOM: f64 = 0.9;

/// The plan of `cfg` on `target`: every setting's estimate and the one to use.
pub fn plan(cfg: &TrainConfig, target: &Target) -> Result<MemoryPlan, TrainError> {
    cfg.validate()?;
    let ranks = target.ranks.max(1);
    if !cfg.batch_size.is_multiple_of(ranks) {
        return Err(TrainError::Config {
            flag: "--nproc",
            detail: format!(
                "the global batch of {} does not divide among {ranks} ranks",
                cfg.batch_size
            ),
        });
    }
    let b = cfg.batch_size / ranks;
    let shape = Shape::of(cfg, target);
    let mut settings = vec![(false, 0), (true, 0)];
    let mut m = b / 2;
    while m >= 1 {
        settings.push((false, m));
        settings.push((true, m));
        m /= 2;
    }
    let estimates: Vec<Estimate> = settings
        .into_iter()
        .map(|(recompute, micro_batch)| shape.estimate(cfg, target, b, recompute, micro_batch))
        .collect();
    // The least extra compute; among equals, exact first, then the larger
    // chunks (BatchNorm statistics over more images).
    let chosen = estimates
        .iter()
        .enumerate()
        .filter(|(_, e)| e.fits)
        .min_by(|(_, x), (_, y)| {
            x.extra_compute
                .total_cmp(&y.extra_compute)
                .then(y.exact.cmp(&x.exact))
                .then(chunk(y, b).cmp(&chunk(x, b)))
        })
        .map(|(i, _)| i);
    Ok(MemoryPlan {
        ranks,
        images_per_rank: b,
        views: cfg.views(),
        device_memory: target.device_memory,
        cuda: target.cuda,
        view_bytes: shape.main.iter().map(|c| c.kept(shape.dtypes)).sum(),
        view_boundary_bytes: shape
            .main
            .iter()
            .skip(1)
            .map(|c| c.input * shape.dtypes.act)
            .sum(),
        estimates,
        chosen,
    })
}

/// What `fnc-train plan` would use for `cfg` on `ranks` devices of
/// `device_memory` bytes (unknown: `None`), as a sentence for an out of
/// memory error.
pub fn advice(cfg: &TrainConfig, ranks: usize, device_memory: Option<u64>, cuda: bool) -> String {
    let Some(memory) = device_memory else {
        return "`fnc-train plan --device-memory SIZE` with this config gives the \
                --recompute / --loss-block / --micro-batch settings that fit."
            .into();
    };
    let target = Target {
        ranks,
        device_memory: memory,
        cuda,
    };
    let gb = memory as f64 / 1e9;
    match plan(cfg, &target) {
        Ok(p) => match p.chosen.map(|i| &p.estimates[i]) {
            Some(e) => format!(
                "`fnc-train plan` for this config on {ranks} device(s) of {gb:.1} GB would use \
                 {} (~{:.1} GB, about +{:.0}% compute{}).",
                e.setting.flags(),
                e.total as f64 / 1e9,
                100.0 * e.extra_compute,
                if e.exact { "" } else { "; BatchNorm per chunk" }
            ),
            None => format!(
                "`fnc-train plan` finds no setting of this config that fits {gb:.1} GB: lower \
                 --batch-size or --image-size, or use more devices."
            ),
        },
        Err(e) => format!("`fnc-train plan` cannot plan this config: {e}."),
    }
}

fn chunk(e: &Estimate, b: usize) -> usize {
    if e.setting.micro_batch == 0 {
        b
    } else {
        e.setting.micro_batch
    }
}

/// The per-view costs of a run's main and support views and its dtypes.
struct Shape {
    main: Vec<SegmentCost>,
    support: Vec<SegmentCost>,
    dtypes: Dtypes,
    params: u64,
}

impl Shape {
    fn of(cfg: &TrainConfig, target: &Target) -> Shape {
        let bf16 = target.cuda && cfg.precision != crate::config::Precision::Fp32
            || cfg.precision == crate::config::Precision::Bf16;
        let act = if bf16 { 2 } else { 4 };
        // Synchronised BatchNorm keeps a float32 copy of its input.
        let bn = if target.ranks > 1 && cfg.sync_bn {
            4
        } else {
            act
        };
        let proj = cfg.proj_dim as u64;
        Shape {
            main: segments(cfg.arch, cfg.image_size as u64, proj),
            support: segments(cfg.arch, cfg.support_side() as u64, proj),
            dtypes: Dtypes { act, bn },
            params: parameters(cfg.arch, cfg.proj_dim),
        }
    }

    /// Peak bytes of `n` images' views in the backward: what the forward
    /// kept (or, with `--recompute`, the boundaries) and, segment by
    /// segment from the last, the one being backpropagated (replayed with
    /// its input) with the gradients in flight.
    fn kept(&self, cfg: &TrainConfig, n: u64, recompute: bool) -> u64 {
        let passes: Vec<(&[SegmentCost], u64)> = if cfg.support_side() == cfg.image_size {
            vec![(&self.main, n * cfg.views() as u64)]
        } else {
            vec![(&self.main, 2 * n), (&self.support, cfg.support as u64 * n)]
        };
        let each: Vec<(u64, u64)> = passes
            .iter()
            .map(|(s, rows)| {
                let (peak, held) = self.pass_peak(s, recompute);
                (peak.saturating_mul(*rows), held.saturating_mul(*rows))
            })
            .collect();
        // A pass's peak with the other passes' kept tensors still held
        // (replays go pass by pass: the later ones' boundaries wait).
        (0..each.len())
            .map(|p| {
                let others: u64 = if recompute {
                    each[p + 1..].iter().map(|e| e.1).sum()
                } else {
                    each.iter()
                        .enumerate()
                        .filter(|(q, _)| *q != p)
                        .map(|(_, e)| e.1)
                        .sum()
                };
                each[p].0.saturating_add(others)
            })
            .max()
            .unwrap_or(0)
    }

    /// One view's peak in the backward of a pass over `segs`, and what it
    /// holds until then (all kept tensors, or the boundaries).
    fn pass_peak(&self, segs: &[SegmentCost], recompute: bool) -> (u64, u64) {
        let d = self.dtypes;
        // Gradients in flight: the layer's output's and input's, float32
        // inside synchronised BatchNorm.
        let grads = |c: &SegmentCost| c.largest * (d.act + d.bn);
        // The first segment's input is the batch, counted with the inputs.
        let boundary = |k: usize, c: &SegmentCost| if k == 0 { 0 } else { c.input * d.act };
        let mut held = 0u64;
        let mut peak = 0u64;
        for (k, c) in segs.iter().enumerate() {
            if recompute {
                held = held.saturating_add(boundary(k, c));
                peak = peak.max(held.saturating_add(c.kept(d) + grads(c)));
            } else {
                held = held.saturating_add(c.kept(d));
                peak = peak.max(held.saturating_add(grads(c)));
            }
        }
        (peak, held)
    }

    fn estimate(
        &self,
        cfg: &TrainConfig,
        target: &Target,
        b: usize,
        recompute: bool,
        micro_batch: usize,
    ) -> Estimate {
        let (b64, views) = (b as u64, cfg.views() as u64);
        let p = self.params;
        // Weights, gradients, the optimiser's moments, the moving average.
        let moments = if cfg.optimizer == crate::optim::OptimizerKind::Adamw {
            2
        } else {
            1
        };
        // Chunks' gradients are summed into a second copy; oneDNN keeps
        // the weights in its own layout on the CPU.
        let copies = 2
            + moments
            + u64::from(cfg.memory > 0)
            + u64::from(micro_batch > 0)
            + u64::from(!target.cuda);
        let weights = p
            .saturating_mul(4 * copies)
            .saturating_add(if target.ranks > 1 { 2 * (25 << 20) } else { 0 });
        let bank = cfg.bank_bytes().unwrap_or(u64::MAX);
        let pixels = (2 * u64::from(cfg.image_size).pow(2)).saturating_add(
            (cfg.support as u64).saturating_mul(u64::from(cfg.support_side()).pow(2)),
        );
        let chunk = if micro_batch == 0 {
            b64
        } else {
            micro_batch as u64
        };
        let uint8 = b64.saturating_mul(pixels).saturating_mul(3);
        // The normalised views (and their concatenation into one pass).
        let float = chunk
            .saturating_mul(pixels)
            .saturating_mul(3 * self.dtypes.act * 2);
        // On the CPU the engine's queue of batches shares the memory.
        let engine = if target.cuda {
            0
        } else {
            uint8.saturating_mul(6)
        };
        let inputs = uint8.saturating_add(float).saturating_add(engine);
        let activations = self.kept(cfg, chunk, recompute);
        // The momentum encoder's forward (no graph) holds a layer's input
        // and output at a time.
        let momentum_peak = if cfg.memory > 0 {
            let largest = self.main.iter().map(|c| c.largest).max().unwrap_or(0);
            (2 * largest)
                .saturating_mul(chunk)
                .saturating_mul(views)
                .saturating_mul(self.dtypes.act)
        } else {
            0
        };
        let activations = activations.max(momentum_peak);
        let va = cfg.loss.anchor_views(views as i64);
        let rows = va.saturating_mul(b as i64);
        let keys = if cfg.memory > 0 {
            cfg.memory.saturating_mul(cfg.batch_size) as i64
        } else {
            views.saturating_mul(cfg.batch_size as u64) as i64
        };
        let support = cfg.loss.support_views(views as i64);
        let loss_block = cfg
            .loss
            .block_rows(views as i64, b as i64, keys, LOSS_BUDGET);
        let block_rows = if loss_block == 0 {
            rows
        } else {
            loss_block.min(rows)
        };
        // One block's scores, and the batch's embeddings with their
        // gradients (gathered over the ranks).
        let loss = (loss_block_bytes(block_rows, keys, support).max(0) as u64).saturating_add(
            (6 * views)
                .saturating_mul(cfg.batch_size as u64)
                .saturating_mul(cfg.proj_dim as u64 * 4),
        );
        let runtime = if target.cuda {
            CUDA_RUNTIME
        } else {
            CPU_RUNTIME
        };
        let total = weights
            .saturating_add(bank)
            .saturating_add(inputs)
            .saturating_add(activations)
            .saturating_add(loss)
            .saturating_add(runtime);
        let setting = Setting {
            recompute,
            micro_batch,
            loss_block,
        };
        Estimate {
            setting,
            weights,
            bank,
            inputs,
            activations,
            loss,
            runtime,
            total,
            fits: (total as f64) <= HEADROOM * target.device_memory as f64,
            exact: micro_batch == 0,
            extra_compute: setting.extra_compute(),
        }
    }
}

/// Parameters and BatchNorm statistics of `arch` with its head, counted
/// from a model built on the CPU.
pub fn parameters(arch: crate::model::Arch, proj_dim: i64) -> u64 {
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _model = crate::model::Model::new(&vs.root(), arch, proj_dim);
    vs.variables().values().map(|t| t.numel() as u64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paper() -> TrainConfig {
        let text = include_str!("../../../configs/fnc-paper.toml");
        toml::from_str(text).unwrap_or_default()
    }

    #[test]
    fn the_paper_preset_fits_eight_h200s_only_with_help() {
        // Counting the parameters builds (and so draws) a model.
        let _held = crate::generator_lock();
        let cfg = paper();
        assert_eq!(cfg.batch_size, 4096, "the preset read");
        let target = Target {
            ranks: 8,
            device_memory: 141_000_000_000,
            cuda: true,
        };
        let p = plan(&cfg, &target).unwrap_or_else(|e| panic!("{e}"));
        let plain = &p.estimates[0];
        assert!(!plain.fits, "plain: {} bytes", plain.total);
        let re = &p.estimates[1];
        assert!(re.setting.recompute && re.activations < plain.activations / 2);
        let chosen = &p.estimates[p.chosen.unwrap_or_else(|| panic!("nothing fits"))];
        assert!(chosen.fits && chosen.total as f64 <= 0.9 * 141e9);
        // Nothing that fits costs less.
        for e in p.estimates.iter().filter(|e| e.fits) {
            assert!(e.extra_compute >= chosen.extra_compute, "{:?}", e.setting);
        }
        // One GPU of 80 GB: only micro-batches.
        let one = plan(
            &cfg,
            &Target {
                ranks: 1,
                device_memory: 80_000_000_000,
                cuda: true,
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let c = &one.estimates[one.chosen.unwrap_or_else(|| panic!("nothing fits"))];
        assert!(c.setting.micro_batch > 0 && !c.exact);
    }

    #[test]
    fn every_help_lowers_the_estimate() {
        let _held = crate::generator_lock();
        let mut cfg = TrainConfig {
            arch: crate::model::Arch::Resnet50,
            image_size: 96,
            batch_size: 32,
            ..TrainConfig::default()
        };
        cfg.loss.block = Some(0);
        let t = Target {
            ranks: 1,
            device_memory: 1 << 40,
            cuda: false,
        };
        let shape = Shape::of(&cfg, &t);
        // The rows of docs/benchmarks.md measured 0.35x and 0.32x (and
        // 0.16x with both) of plain's activations.
        let plain = shape.estimate(&cfg, &t, 32, false, 0);
        let re = shape.estimate(&cfg, &t, 32, true, 0);
        let micro = shape.estimate(&cfg, &t, 32, false, 8);
        let both = shape.estimate(&cfg, &t, 32, true, 8);
        assert!(re.activations < plain.activations / 2);
        assert!(micro.activations < plain.activations / 2);
        assert!(both.activations < re.activations.min(micro.activations));
        cfg.loss.block = Some(64);
        let blocked = shape.estimate(&cfg, &t, 32, false, 0);
        assert!(blocked.loss < plain.loss);
    }
}
