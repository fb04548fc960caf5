//! Which candidates are false negatives: the top-k / threshold filter of
//! detection (and of the filtered oracle), and the noisy oracle's draws.

use tch::{Kind, Tensor};

use super::{LossConfig, LossError};

/// The members of `set` (`[B, Nk]` bool) that the top-k and threshold filter
/// keeps when it ranks them by `score` (whose entries outside `set` are
/// ignored).
pub(super) fn filter(
    score: &Tensor,
    set: &Tensor,
    cfg: &LossConfig,
    nk: i64,
) -> Result<Tensor, LossError> {
    let score = score.f_masked_fill(&set.logical_not(), f64::NEG_INFINITY)?;
    let mut f = set.shallow_clone();
    if cfg.topk > 0 {
        // Past the set's members, top-k picks -inf scores that `set` drops.
        let k = cfg.topk.min(nk);
        let (_, top_idx) = score.f_topk(k, 1, true, false)?;
        let top = score
            .f_zeros_like()?
            .to_kind(Kind::Bool)
            .f_scatter_value(1, &top_idx, 1)?;
        f = f.f_logical_and(&top)?;
    }
    if let Some(t) = cfg.threshold {
        f = f.f_logical_and(&score.f_gt(t)?)?;
    }
    Ok(f)
}

/// The noisy oracle's two draws for a batch of `batch` images against `nk`
/// keys, `[batch, nk]` each from libtorch's global generator: which
/// detections to keep, then the random order of their replacements. Drawn for
/// the whole batch, so that a rank's shard (or a block of it) takes its rows
/// of what one process would draw; both always, so the generator moves alike
/// on every rank.
pub(crate) struct OracleDraws {
    keep: Tensor,
    order: Tensor,
}

impl OracleDraws {
    pub(crate) fn new(batch: i64, nk: i64, dev: tch::Device) -> Result<Self, LossError> {
        let keep = Tensor::f_rand([batch, nk], (Kind::Float, dev))?;
        let order = Tensor::f_rand([batch, nk], (Kind::Float, dev))?;
        Ok(OracleDraws { keep, order })
    }
}

/// A noisy oracle: each member of `f` (`[B, Nk]` bool) is kept with
/// probability `precision`, and every dropped one is replaced by a random
/// member of `wrong` (distinct, uniformly chosen), so |F_i| is kept while
/// `wrong` has enough members. `f` holds the rows of images `first..` of the
/// batch whose `draws` these are (a rank's shard, or a block of it). The
/// trainer seeds the generator per step, so runs and resumes repeat.
pub(super) fn noisy(
    f: &Tensor,
    wrong: &Tensor,
    precision: f64,
    draws: &OracleDraws,
    first: i64,
) -> Result<Tensor, LossError> {
    let b = f.size()[0];
    let dev = f.device();
    let keep_draw = draws.keep.f_narrow(0, first, b)?;
    let order_draw = draws.order.f_narrow(0, first, b)?;
    let drop = f.f_logical_and(&keep_draw.f_ge(precision)?)?;
    let kept = f.f_logical_and(&drop.logical_not())?;
    // How many each row drops, `[B]`.
    let n_drop = drop.f_sum_dim_intlist([1i64].as_slice(), false, Kind::Int64)?;
    // A uniformly random order of each row's wrong candidates: random keys,
    // non-members last, sorted, so a row's choice does not depend on the
    // other rows (a rank's shard chooses what the whole batch does). The
    // whole row is sorted (stably, so exact ties keep key order): knowing
    // how many to take would cost a host read.
    let keys = order_draw.f_masked_fill(&wrong.logical_not(), -1.0)?;
    let order = keys.f_argsort_stable(true, 1, true)?; // [B, Nk], by key
    let rank = Tensor::f_arange(order.size()[1], (Kind::Int64, dev))?.unsqueeze(0);
    let take = rank.f_lt_tensor(&n_drop.unsqueeze(1))?; // [B, K]
    let added = f
        .f_zeros_like()?
        .f_scatter(1, &order, &take)?
        .f_logical_and(wrong)?;
    Ok(kept.f_logical_or(&added)?)
}
