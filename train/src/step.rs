//! The forward half of a training step, shared by training and the step
//! benchmark: uint8 view groups -> normalised inputs -> projections -> FNC loss
//! (in-batch, or against the memory bank).

use tch::Tensor;

use crate::config::TrainConfig;
use crate::dist::ProcessGroup;
use crate::error::TrainError;
use crate::loss::{
    fnc_loss, fnc_loss_memory, fnc_loss_memory_shard, fnc_loss_shard, FnCounts, LossOutput,
};
use crate::model::{normalise_as, project_groups, Model};
use crate::momentum::Momentum;

/// The uint8 NHWC view groups (main views, then support views; each group
/// view-major) normalised in `cfg`'s precision and layout.
pub(crate) fn prepare_groups(groups: &[&Tensor], cfg: &TrainConfig) -> Vec<Tensor> {
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

/// What a step's forward half hands back: the loss output (in a
/// data-parallel run, this rank's part of the loss, with the global batch's
/// statistics), the global loss's value, and with the memory variant the
/// momentum embeddings and labels of the (global) batch to push into the bank
/// after the step.
pub(crate) struct Forward {
    pub out: LossOutput,
    pub value: f64,
    pub keys: Option<(Tensor, Tensor)>,
    /// Seconds in the collectives of a data-parallel run.
    pub comm_s: f64,
}

/// Embeddings of the view groups and their FNC loss; with the memory variant,
/// also the momentum encoder's embeddings of the same normalised inputs.
///
/// In a data-parallel run (`group`), this rank's embeddings and labels join
/// every rank's into the global batch, and each rank computes the anchors of
/// its own images against every key of the global batch: positives,
/// negatives, detection and the loss are those of one process holding the
/// whole batch, split over the ranks (the parts' sum is the loss; the
/// gathered rows carry every part's gradient back to their rank), and the FN
/// statistics and loss value are summed over the ranks.
pub(crate) fn forward_loss(
    model: &Model,
    momentum: Option<&Momentum>,
    groups: &[&Tensor],
    labels: &Tensor,
    cfg: &TrainConfig,
    group: Option<&ProcessGroup>,
) -> Result<Forward, TrainError> {
    let views = cfg.views() as i64;
    let inputs = prepare_groups(groups, cfg);
    let z = project_groups(model, &inputs);
    if let Some(f) = crate::dist::take_failure() {
        let (rank, world, why) =
            group
                .map(|g| (g.rank, g.world, g.diagnosis()))
                .unwrap_or((0, 1, String::new()));
        return Err(TrainError::Dist {
            rank,
            world,
            op: "synchronised BatchNorm",
            detail: format!("{f}{why}"),
        });
    }
    let Some(g) = group else {
        let (out, keys) = match momentum {
            None => (fnc_loss(&z, views, &cfg.loss, Some(labels))?, None),
            Some(mo) => {
                let zm = mo.embed(&inputs);
                let out =
                    fnc_loss_memory(&z, &zm, &mo.bank.view(), views, &cfg.loss, Some(labels))?;
                (out, Some((zm, labels.shallow_clone())))
            }
        };
        let value = out.loss.double_value(&[]);
        return Ok(Forward {
            out,
            value,
            keys,
            comm_s: 0.0,
        });
    };
    let t = std::time::Instant::now();
    let shard = g.shard(labels.size()[0]);
    let zg = g.gather_views_live(&z, views)?;
    let lg = g.all_gather(labels)?;
    let mut comm_s = t.elapsed().as_secs_f64();
    let (mut out, keys) = match momentum {
        None => (
            fnc_loss_shard(&zg, views, &cfg.loss, Some(&lg), Some(shard))?,
            None,
        ),
        Some(mo) => {
            let zm = mo.embed(&inputs);
            let t = std::time::Instant::now();
            let zm = g.gather_views(&zm, views)?;
            comm_s += t.elapsed().as_secs_f64();
            let out = fnc_loss_memory_shard(
                &zg,
                &zm,
                &mo.bank.view(),
                views,
                &cfg.loss,
                Some(&lg),
                Some(shard),
            )?;
            (out, Some((zm, lg)))
        }
    };
    // The loss value and the statistics of the global batch: sums of the parts.
    let t = std::time::Instant::now();
    let c = out.counts;
    // On the embeddings' device: NCCL reduces CUDA tensors only.
    let parts = Tensor::from_slice(&[
        out.loss.double_value(&[]),
        c.images,
        c.detected,
        c.detected_same,
        c.candidates_same,
        c.candidates,
    ])
    .to_device(z.device());
    g.all_reduce(&parts)?;
    comm_s += t.elapsed().as_secs_f64();
    let v: Vec<f64> =
        Vec::<f64>::try_from(&parts.to_device(tch::Device::Cpu)).map_err(TrainError::Torch)?;
    out.counts = FnCounts {
        images: v[1],
        detected: v[2],
        detected_same: v[3],
        candidates_same: v[4],
        candidates: v[5],
        labelled: c.labelled,
    };
    (out.mean_fn, out.fn_precision, out.fn_chance, out.fn_recall) = out.counts.stats();
    Ok(Forward {
        out,
        value: v[0],
        keys,
        comm_s,
    })
}
