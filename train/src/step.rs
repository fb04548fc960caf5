//! The forward half of a training step, shared by training and the step
//! benchmark: uint8 view groups -> normalised inputs -> projections -> FNC loss
//! (in-batch, or against the memory bank).

use tch::{Kind, Tensor};

use crate::config::TrainConfig;
use crate::error::TrainError;
use crate::loss::{fnc_loss, fnc_loss_memory, LossOutput};
use crate::model::{normalise_as, Model};
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

/// Train-mode projections of prepared view groups, concatenated, as float32:
/// the loss and its detection run in float32 whatever the model computes in.
pub(crate) fn project_groups(model: &Model, inputs: &[Tensor]) -> Tensor {
    let parts: Vec<Tensor> = inputs.iter().map(|x| model.project(x, true)).collect();
    Tensor::cat(&parts, 0).to_kind(Kind::Float)
}

/// Embeddings of the view groups and their FNC loss; with the memory variant,
/// also the momentum encoder's embeddings of the same normalised inputs (to
/// push into the bank after the step).
pub(crate) fn forward_loss(
    model: &Model,
    momentum: Option<&Momentum>,
    groups: &[&Tensor],
    labels: &Tensor,
    cfg: &TrainConfig,
) -> Result<(LossOutput, Option<Tensor>), TrainError> {
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
