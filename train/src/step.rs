//! A training step's loss and gradients, shared by training and the step
//! benchmark: uint8 view groups -> normalised inputs -> embeddings -> FNC loss
//! (in-batch, or against the memory bank) and its gradient with respect to
//! the embeddings -> the parameters' gradients.

use tch::Tensor;

use crate::config::TrainConfig;
use crate::dist::{ProcessGroup, Reducer};
use crate::embed::{backward, embed};
use crate::error::TrainError;
use crate::loss::{in_batch_grad, memory_grad, LossOutput, Shard, LOSS_BUDGET};
use crate::model::Model;
use crate::momentum::Momentum;
use crate::recompute::backpropagate;

/// What a step hands back: the loss output (its `loss` detached; in a
/// data-parallel run, this rank's part, with the global batch's statistics),
/// the global loss's value, the parameters' gradients (in a data-parallel
/// run, summed over the ranks), and with the memory variant the momentum
/// embeddings and labels of the (global) batch to push into the bank after
/// the step.
pub(crate) struct StepGrads {
    pub out: LossOutput,
    pub value: f64,
    pub grads: Vec<Tensor>,
    pub keys: Option<(Tensor, Tensor)>,
    /// Seconds the step spent in (or waiting for) the collectives of a
    /// data-parallel run, outside the forward and backward: gathering the
    /// batch, the loss's sums, starting and finishing the gradient buckets.
    pub comm_s: f64,
    /// Seconds up to the loss's gradient with respect to the embeddings
    /// (the rest of the step is the backward through the model); the device
    /// is synchronised there only when the caller asked (`timed`).
    pub forward_s: f64,
}

/// The loss of a step and the gradients of its parameters (`params`, in
/// their order). The embeddings are made as `cfg` says ([`embed`]: plain,
/// `--recompute` or `--micro-batch`); the loss and its gradient with respect
/// to every embedding are computed once over the whole batch; that gradient
/// is then backpropagated through the model.
///
/// In a data-parallel run (`group`), this rank's embeddings and labels join
/// every rank's into the global batch, and each rank computes the anchors of
/// its own images against every key of the global batch: positives,
/// negatives, detection and the loss are those of one process holding the
/// whole batch, split over the ranks (the parts' sum is the loss; the
/// gathered rows carry every part's gradient back to their rank), and the FN
/// statistics and loss value are summed over the ranks.
#[allow(clippy::too_many_arguments)]
pub(crate) fn train_step(
    model: &Model,
    momentum: Option<&Momentum>,
    groups: &[&Tensor],
    labels: &Tensor,
    cfg: &TrainConfig,
    group: Option<&ProcessGroup>,
    params: &[&Tensor],
    timed: bool,
) -> Result<StepGrads, TrainError> {
    let t0 = std::time::Instant::now();
    let b = labels.size()[0];
    let (z, zm, kept) = embed(model, momentum, groups, b, cfg);
    dist_failure(group, "synchronised BatchNorm")?;
    let lossed = match loss_and_grad(&z, zm, momentum, labels, cfg, group) {
        Ok(l) => l,
        // A rank the NCCL watch found dead is the cause, if there is one.
        Err(e) => return Err(dist_failure(group, "loss").err().unwrap_or(e)),
    };
    if timed {
        crate::device::sync(z.device());
    }
    let forward_s = t0.elapsed().as_secs_f64();
    let mut reducer = group.map(Reducer::new);
    let mut failed = None;
    let backwarded = {
        // Buckets of final gradients start their sums while the backward
        // goes on (`--overlap-grads`).
        let mut ready = |idx: &[usize], acc: &[Option<Tensor>]| {
            if let (true, Some(r), None) = (cfg.overlap_grads, reducer.as_mut(), &failed) {
                let grads: Vec<&Tensor> = idx.iter().filter_map(|&i| acc[i].as_ref()).collect();
                if let Err(e) = r.add(&grads) {
                    failed = Some(e);
                }
            }
        };
        backward(model, kept, &lossed.grad_z, groups, cfg, params, &mut ready)
    };
    let grads = match backwarded {
        Ok(g) => g,
        Err(e) => return Err(backward_error(e, group)),
    };
    dist_failure(group, "synchronised BatchNorm (backward)")?;
    if let Some(e) = failed {
        return Err(e);
    }
    let mut comm_s = lossed.comm_s;
    if let Some(mut r) = reducer {
        if !cfg.overlap_grads {
            r.add(&grads.iter().collect::<Vec<_>>())?;
        }
        comm_s += r.finish()?;
    }
    // The step's one host read, once the whole backward is queued: the loss
    // value and the FN counts.
    let mut out = lossed.out;
    let value = out.settle_with(&lossed.totals)?;
    // A rank the NCCL watch found dead while this step ran (its values are
    // then garbage).
    dist_failure(group, "step")?;
    Ok(StepGrads {
        out,
        value,
        grads,
        keys: lossed.keys,
        comm_s,
        forward_s,
    })
}

/// A collective that failed where no error could be returned (inside a
/// module: synchronised BatchNorm; or found by the NCCL watch) as this
/// rank's error.
fn dist_failure(group: Option<&ProcessGroup>, op: &'static str) -> Result<(), TrainError> {
    let Some(f) = crate::dist::take_failure() else {
        return Ok(());
    };
    // The NCCL watch's failure already names the rank.
    let named = f.starts_with("watchdog:");
    let (rank, world, why) = group
        .map(|g| {
            let why = if named { String::new() } else { g.diagnosis() };
            (g.rank, g.world, why)
        })
        .unwrap_or((0, 1, String::new()));
    Err(TrainError::Dist {
        rank,
        world,
        op,
        detail: format!("{f}{why}"),
    })
}

/// A failed backward; in a data-parallel run (whose synchronised BatchNorm
/// runs collectives) it names the rank that stopped.
fn backward_error(e: tch::TchError, group: Option<&ProcessGroup>) -> TrainError {
    match group {
        // libtorch appends its C++ backtrace: the first line says it.
        Some(g) => g.error(
            "backward",
            crate::dist::take_failure().unwrap_or_else(|| {
                let first = e.to_string().lines().next().unwrap_or_default().to_string();
                format!("{first}{}", g.diagnosis())
            }),
        ),
        None => e.into(),
    }
}

/// The loss half of a step: its output, the loss value and FN counts still
/// on the device (`totals`, summed over the ranks), the gradient with respect
/// to this rank's embeddings, the bank's new keys, and the collectives' time.
struct Lossed {
    out: LossOutput,
    totals: Tensor,
    grad_z: Tensor,
    keys: Option<(Tensor, Tensor)>,
    comm_s: f64,
}

/// The FNC loss of embeddings `z` (this rank's, `[V * b, d]`) and its
/// gradient with respect to them; see [`train_step`].
fn loss_and_grad(
    z: &Tensor,
    zm: Option<Tensor>,
    momentum: Option<&Momentum>,
    labels: &Tensor,
    cfg: &TrainConfig,
    group: Option<&ProcessGroup>,
) -> Result<Lossed, TrainError> {
    let views = cfg.views() as i64;
    let Some(g) = group else {
        let (out, grad_z) = loss_grad(z, zm.as_ref(), momentum, labels, cfg, None)?;
        let totals = out.totals()?;
        return Ok(Lossed {
            out,
            totals,
            grad_z,
            keys: zm.map(|zm| (zm, labels.shallow_clone())),
            comm_s: 0.0,
        });
    };
    let t = std::time::Instant::now();
    let shard = g.shard(labels.size()[0]);
    let leaf = z.detach().set_requires_grad(true);
    let zg = g.gather_views_live(&leaf, views)?;
    let lg = g.all_gather(labels)?;
    let zm = zm.map(|zm| g.gather_views(&zm, views)).transpose()?;
    let mut comm_s = t.elapsed().as_secs_f64();
    let (out, grad_zg) = loss_grad(&zg.detach(), zm.as_ref(), momentum, &lg, cfg, Some(shard))?;
    // Every rank's part of the gradient reaches its rows: the gather's
    // backward sums the ranks' gradients.
    let t = std::time::Instant::now();
    let grad_z = match backpropagate(&zg, &grad_zg, &[&leaf]) {
        Ok(mut v) => v.pop().unwrap_or_else(Tensor::new),
        Err(e) => return Err(backward_error(e, Some(g))),
    };
    // The loss value and the statistics of the global batch: sums of the
    // parts, on the device (NCCL reduces CUDA tensors only), read after the
    // backward is queued.
    let totals = out.totals()?;
    g.all_reduce(&totals)?;
    comm_s += t.elapsed().as_secs_f64();
    Ok(Lossed {
        out,
        totals,
        grad_z,
        keys: zm.map(|zm| (zm, lg)),
        comm_s,
    })
}

/// The loss of `shard`'s anchors (all when `None`) over embeddings `z`
/// (with the memory variant, against the momentum keys `zm` and the bank)
/// and its gradient with respect to `z`, in blocks of `--loss-block` anchor
/// rows (chosen from [`LOSS_BUDGET`] when not given); the statistics are
/// left on the device.
fn loss_grad(
    z: &Tensor,
    zm: Option<&Tensor>,
    momentum: Option<&Momentum>,
    labels: &Tensor,
    cfg: &TrainConfig,
    shard: Option<Shard>,
) -> Result<(LossOutput, Tensor), TrainError> {
    let views = cfg.views() as i64;
    let images = shard.map_or(labels.size()[0], |s| s.count);
    let keys = match momentum {
        Some(mo) => mo.bank.view().keys.size()[0],
        None => z.size()[0],
    };
    let block = cfg.loss.block_rows(views, images, keys, LOSS_BUDGET);
    let lossed = match (momentum, zm) {
        (Some(mo), Some(zm)) => memory_grad(
            z,
            zm,
            &mo.bank.view(),
            views,
            &cfg.loss,
            Some(labels),
            shard,
            block,
        ),
        _ => in_batch_grad(z, views, &cfg.loss, Some(labels), shard, block),
    };
    Ok(lossed?)
}
