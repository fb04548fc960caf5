//! The memory variant of the loss: anchors of this batch against the momentum
//! encoder's keys of this batch and the older ones of a FIFO bank.

use tch::{Kind, Tensor};

use super::{
    images_in, l2_normalise, support_rows, LossConfig, LossError, LossOutput, Parts, Shard,
};

/// The older keys a memory-variant loss contrasts with: a FIFO bank's
/// normalised rows, newest first, with their labels (-1 unknown); the first
/// `filled` rows are real.
#[derive(Debug, Clone, Copy)]
pub struct BankView<'a> {
    pub keys: &'a Tensor,
    pub labels: &'a Tensor,
    pub filled: i64,
}

impl BankView<'_> {
    /// The keys of a step: `current` on top of the bank's newest rows, the
    /// whole as long as the bank; with a mask of the real rows and the labels.
    pub fn keys_with(
        &self,
        current: &Tensor,
        labels: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor), LossError> {
        let capacity = self.keys.size()[0];
        let m = current.size()[0];
        let keep = capacity - m;
        let dev = self.keys.device();
        let current = current.to_kind(self.keys.kind());
        let keys = Tensor::f_cat(&[&current, &self.keys.f_narrow(0, 0, keep)?], 0)?;
        let labels = Tensor::f_cat(&[labels, &self.labels.f_narrow(0, 0, keep)?], 0)?;
        let valid =
            Tensor::f_arange(capacity, (Kind::Int64, dev))?.f_lt(m + self.filled.min(keep))?;
        Ok((keys, valid, labels))
    }
}

/// The memory variant (the reference's `memory_multiplier`): anchors are the
/// online embeddings `z` (`[V*B, d]`, view-major); keys are the momentum
/// encoder's embeddings of this batch (`z_momentum`, same shape, no gradient)
/// followed by the older ones held in `bank`. Positives of anchor (i, a) are
/// the momentum embeddings of i's other views; its own view's is left out of
/// the denominator; detection compares i's support set, as the momentum
/// encoder sees it, with every key of another image. `bank` is the view of a
/// `MemoryBank` (`Momentum::bank`), into which `z_momentum` is pushed after
/// the step.
pub fn fnc_loss_memory(
    z: &Tensor,
    z_momentum: &Tensor,
    bank: &BankView,
    views: i64,
    cfg: &LossConfig,
    labels: Option<&Tensor>,
) -> Result<LossOutput, LossError> {
    fnc_loss_memory_shard(z, z_momentum, bank, views, cfg, labels, None)
}

/// [`fnc_loss_memory`] of `shard`'s anchors only (see [`fnc_loss_shard`]).
///
/// [`fnc_loss_shard`]: super::fnc_loss_shard
pub fn fnc_loss_memory_shard(
    z: &Tensor,
    z_momentum: &Tensor,
    bank: &BankView,
    views: i64,
    cfg: &LossConfig,
    labels: Option<&Tensor>,
    shard: Option<Shard>,
) -> Result<LossOutput, LossError> {
    let parts = memory_parts(z, z_momentum, bank, views, cfg, labels)?;
    let anchors = l2_normalise(z)?.f_narrow(0, 0, parts.m)?;
    let mut out = parts.contrast(&anchors, cfg, shard, None)?;
    out.settle()?;
    Ok(out)
}

/// The memory variant's [`Parts`]: the momentum embeddings of this batch on
/// top of the bank's as keys, the momentum encoder's support sets; checked.
pub(crate) fn memory_parts(
    z: &Tensor,
    z_momentum: &Tensor,
    bank: &BankView,
    views: i64,
    cfg: &LossConfig,
    labels: Option<&Tensor>,
) -> Result<Parts, LossError> {
    let b = images_in(z, views, cfg, labels)?;
    if z_momentum.size() != z.size() {
        return Err(LossError::Shape {
            views,
            rows: z_momentum.size().first().copied().unwrap_or(0),
        });
    }
    let m = cfg.anchor_views(views) * b;
    let capacity = bank.keys.size()[0];
    if capacity < m {
        return Err(LossError::Option {
            flag: "--memory",
            detail: format!(
                "a bank of {capacity} rows cannot hold the {m} anchor views of one batch; \
                 the multiplier must be at least the number of anchor views"
            ),
        });
    }
    let zm = l2_normalise(&z_momentum.detach())?;
    let support = support_rows(&zm, views, b, cfg)?;
    let current = zm.f_narrow(0, 0, m)?;
    let dev = z.device();
    let labels = labels.map(|l| l.to_device(dev).to_kind(Kind::Int64));
    let current_labels = match &labels {
        Some(l) => l.repeat([m / b]),
        None => Tensor::f_full([m], -1i64, (Kind::Int64, dev))?,
    };
    let (keys, valid, key_labels) = bank.keys_with(&current, &current_labels)?;
    Ok(Parts {
        b,
        m,
        support,
        key_labels: labels.as_ref().map(|_| key_labels),
        labels,
        bank_keys: Some((keys, valid)),
    })
}
