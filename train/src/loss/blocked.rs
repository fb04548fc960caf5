//! The loss and its gradient in blocks of anchor rows, so that the memory it
//! takes is bounded by a block's score matrix rather than the batch's.
//!
//! A block is a sub-shard: a few images' anchor rows scored against every
//! key. Each block's part of the loss is backpropagated at once and its graph
//! dropped, so one block's `[R, Nk]` scores (and detection's `[|U|, R/V_a,
//! Nk]`) are alive at a time. The parts sum to the unblocked loss and their
//! gradients to its gradient: in the in-batch loss the keys are the anchors,
//! so each block's gradient reaches every anchor row through the keys too.

use tch::Tensor;

use super::contrast::shard_within;
use super::memory::memory_parts;
use super::{
    in_batch_parts, l2_normalise, BankView, Detect, LossConfig, LossError, LossOutput, OracleDraws,
    Parts, Shard,
};

/// Bytes one element of a block's `[R, Nk]` float32 score matrix takes with
/// its same-sized companions at the peak of the block's loss and gradient:
/// about four floats alive at once (scores, their masked copy or
/// exponentials, log-probabilities, their gradient) and eight boolean masks
/// (same image, own view, positives, false negatives, denominator,
/// candidates, targets, labels), 24 bytes, with room to spare. Measured:
/// `fnc-train loss` at B = 1024, V = 10 peaks at about 40 bytes a float64
/// score above its baseline (docs/benchmarks.md), i.e. ~24 in float32.
const BYTES_PER_SCORE: i64 = 32;

/// The bytes the loss may take before `--loss-block`, when not given,
/// splits its anchor rows into blocks (training and `fnc-train loss`).
pub const LOSS_BUDGET: i64 = 1 << 30;

/// The bytes a block of `rows` anchor rows against `keys` keys takes (see
/// [`loss_block_rows`]), float32.
pub fn loss_block_bytes(rows: i64, keys: i64, support_views: i64) -> i64 {
    rows.saturating_mul(keys.max(1))
        .saturating_mul(BYTES_PER_SCORE + 2 * support_views.max(0))
}

/// [`fnc_loss_shard`] computed in blocks of about `rows_per_block` anchor rows
/// (0: one block), with its gradient. Returns the shard's part of the loss
/// (detached: the graph is gone) with its statistics and false negatives, and
/// dL/dz (shape and kind of `z`, which is taken as a plain tensor). Draws
/// what [`fnc_loss_shard`] draws (the noisy oracle's two draws, once), so the
/// value and gradient are the unblocked ones.
///
/// [`fnc_loss_shard`]: super::fnc_loss_shard
pub fn fnc_loss_grad(
    z: &Tensor,
    views: i64,
    cfg: &LossConfig,
    labels: Option<&Tensor>,
    shard: Option<Shard>,
    rows_per_block: i64,
) -> Result<(LossOutput, Tensor), LossError> {
    let (mut out, grad) = in_batch_grad(z, views, cfg, labels, shard, rows_per_block)?;
    out.settle()?;
    Ok((out, grad))
}

/// [`fnc_loss_grad`] with its statistics left on the device (unsettled).
pub(crate) fn in_batch_grad(
    z: &Tensor,
    views: i64,
    cfg: &LossConfig,
    labels: Option<&Tensor>,
    shard: Option<Shard>,
    rows_per_block: i64,
) -> Result<(LossOutput, Tensor), LossError> {
    let parts = in_batch_parts(z, views, cfg, labels)?;
    in_blocks(z, cfg, &parts, shard, rows_per_block)
}

/// [`fnc_loss_memory_shard`] in blocks of anchor rows, with its gradient
/// (see [`fnc_loss_grad`]); the keys carry no gradient here.
///
/// [`fnc_loss_memory_shard`]: super::fnc_loss_memory_shard
#[allow(clippy::too_many_arguments)]
pub fn fnc_loss_memory_grad(
    z: &Tensor,
    z_momentum: &Tensor,
    bank: &BankView,
    views: i64,
    cfg: &LossConfig,
    labels: Option<&Tensor>,
    shard: Option<Shard>,
    rows_per_block: i64,
) -> Result<(LossOutput, Tensor), LossError> {
    let (mut out, grad) = memory_grad(
        z,
        z_momentum,
        bank,
        views,
        cfg,
        labels,
        shard,
        rows_per_block,
    )?;
    out.settle()?;
    Ok((out, grad))
}

/// [`fnc_loss_memory_grad`] with its statistics left on the device
/// (unsettled).
#[allow(clippy::too_many_arguments)]
pub(crate) fn memory_grad(
    z: &Tensor,
    z_momentum: &Tensor,
    bank: &BankView,
    views: i64,
    cfg: &LossConfig,
    labels: Option<&Tensor>,
    shard: Option<Shard>,
    rows_per_block: i64,
) -> Result<(LossOutput, Tensor), LossError> {
    let parts = memory_parts(z, z_momentum, bank, views, cfg, labels)?;
    in_blocks(z, cfg, &parts, shard, rows_per_block)
}

/// The anchor rows per block that fit in `budget_bytes`: 0 (one block) when
/// all `anchor_rows` of the shard do, else the most rows that fit (at least
/// 1). A block of R rows against `keys` keys takes about
/// `R * keys * (BYTES_PER_SCORE + 2 * support_views)` bytes in float32: the
/// score matrix and its companions (`BYTES_PER_SCORE` a score), and
/// detection's `[|U|, R/V_a, Nk]` similarities (V_a >= 2 anchor views, so at
/// most `|U| / 2` floats a score). Float64 takes twice as much: halve the
/// budget.
pub fn loss_block_rows(anchor_rows: i64, keys: i64, support_views: i64, budget_bytes: i64) -> i64 {
    let per_row = loss_block_bytes(1, keys, support_views);
    if anchor_rows.saturating_mul(per_row) <= budget_bytes {
        0
    } else {
        (budget_bytes / per_row).max(1)
    }
}

/// The blocks of `parts`' loss for `shard`, each backpropagated to a leaf
/// copy of `z` as soon as it is computed; their losses, counts and false
/// negatives summed (stacked), the statistics left on the device.
fn in_blocks(
    z: &Tensor,
    cfg: &LossConfig,
    parts: &Parts,
    shard: Option<Shard>,
    rows_per_block: i64,
) -> Result<(LossOutput, Tensor), LossError> {
    if rows_per_block < 0 {
        return Err(LossError::Option {
            flag: "--loss-block",
            detail: format!("{rows_per_block} is negative (0 computes all rows at once)"),
        });
    }
    let shard = shard_within(shard, parts.b)?;
    let anchor_views = parts.m / parts.b;
    let images = if rows_per_block == 0 {
        shard.count
    } else {
        (rows_per_block / anchor_views).max(1)
    };
    // The noisy oracle's draws, once for the whole batch (as the unblocked
    // loss makes them) rather than once a block.
    let draws =
        if cfg.detect == Detect::Oracle && cfg.oracle_precision < 1.0 && parts.labels.is_some() {
            Some(OracleDraws::new(parts.b, parts.keys(), z.device())?)
        } else {
            None
        };
    tch::with_grad(|| {
        let leaf = z.detach().f_set_requires_grad(true)?;
        let mut grad = z.detach().f_zeros_like()?;
        let mut loss: Option<Tensor> = None;
        let mut tally: Option<Tensor> = None;
        let mut labelled = false;
        let mut masks = Vec::new();
        let end = shard.first + shard.count;
        let mut first = shard.first;
        while first < end {
            let block = Shard {
                first,
                count: images.min(end - first),
            };
            // Normalised again per block, so that each block's graph stands
            // alone and is freed by its backward pass.
            let anchors = l2_normalise(&leaf.f_narrow(0, 0, parts.m)?)?;
            let part = parts.contrast(&anchors, cfg, Some(block), draws.as_ref())?;
            let g = Tensor::f_run_backward(&[&part.loss], &[&leaf], false, false)?;
            if let Some(g) = g.first() {
                let _ = grad.f_add_(g)?;
            }
            let value = part.loss.detach();
            loss = Some(match loss {
                Some(l) => l.f_add(&value)?,
                None => value,
            });
            tally = Some(match tally {
                Some(t) => t.f_add(&part.tally)?,
                None => part.tally,
            });
            labelled |= part.counts.labelled;
            masks.push(part.false_negatives);
            first += block.count;
        }
        let (Some(loss), Some(tally)) = (loss, tally) else {
            return Err(LossError::Option {
                flag: "shard",
                detail: "holds no images".into(),
            });
        };
        let out = LossOutput::unsettled(loss, Tensor::f_cat(&masks, 0)?, tally, labelled);
        Ok((out, grad))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_is_all_rows_when_they_fit_else_the_most_that_fit() {
        // 10240 rows against 10240 keys, |U| = 10: 52 bytes a score.
        let per_row = 10240 * (BYTES_PER_SCORE + 20);
        assert_eq!(per_row, 10240 * 52);
        assert_eq!(loss_block_rows(10240, 10240, 10, 10240 * per_row), 0);
        assert_eq!(
            loss_block_rows(10240, 10240, 10, 10240 * per_row - 1),
            10239
        );
        assert_eq!(
            loss_block_rows(10240, 10240, 10, 1 << 30),
            (1 << 30) / per_row
        );
        assert_eq!((1i64 << 30) / per_row, 2016);
        // Never less than a row, however small the budget.
        assert_eq!(loss_block_rows(10240, 10240, 10, 1), 1);
        // More support views, fewer rows.
        assert!(loss_block_rows(4096, 4096, 32, 1 << 26) < loss_block_rows(4096, 4096, 2, 1 << 26));
        // Degenerate inputs do not divide by zero or overflow.
        assert_eq!(loss_block_rows(0, 0, 0, 0), 0);
        assert_eq!(loss_block_rows(i64::MAX, i64::MAX, 10, 1 << 30), 1);
    }
}
