//! One contrast: anchors against keys with positives, detected false
//! negatives (eliminated or attracted) and the denominator's rows.

use tch::{Kind, Tensor};

use super::detect::{filter, noisy, OracleDraws};
use super::{Aggregate, Detect, LossConfig, LossError, LossOutput, Shard, Strategy};

/// One contrast: anchors (`[m, d]`, normalised, view-major over the anchor
/// views) against keys (`[Nk, d]`, normalised), whose first `m` rows are the
/// anchor views of the same batch in the same order.
pub(super) struct Contrast<'a> {
    pub anchors: &'a Tensor,
    pub keys: &'a Tensor,
    /// `[Nk]` bool: rows that hold an embedding (all when `None`).
    pub valid: Option<&'a Tensor>,
    /// `[|U|, B, d]`: each image's support set for detection.
    pub support: &'a Tensor,
    pub b: i64,
    pub cfg: &'a LossConfig,
    /// `[B]`: labels of the batch, for the FN precision statistic.
    pub labels: Option<&'a Tensor>,
    /// `[Nk]`: labels of the keys (-1 unknown).
    pub key_labels: Option<&'a Tensor>,
    /// The images whose anchors to compute (all when `None`).
    pub shard: Option<Shard>,
    /// The noisy oracle's draws for the whole batch, made once per loss when
    /// the loss is computed in blocks; `None` draws them here.
    pub draws: Option<&'a OracleDraws>,
}

/// `shard` (the whole batch when `None`), checked to lie within a batch of
/// `b` images.
pub(super) fn shard_within(shard: Option<Shard>, b: i64) -> Result<Shard, LossError> {
    let s = shard.unwrap_or(Shard { first: 0, count: b });
    if s.first < 0 || s.count < 1 || s.first + s.count > b {
        return Err(LossError::Option {
            flag: "shard",
            detail: format!(
                "images {}..{} are not within the batch of {b}",
                s.first,
                s.first + s.count
            ),
        });
    }
    Ok(s)
}

pub(super) fn contrast(c: &Contrast) -> Result<LossOutput, LossError> {
    let (b, cfg) = (c.b, c.cfg);
    let m = c.anchors.size()[0];
    let nk = c.keys.size()[0];
    let dev = c.anchors.device();
    let Shard { first, count: nb } = shard_within(c.shard, b)?;
    let idx = Tensor::f_arange(nk, (Kind::Int64, dev))?;
    // The image of each key row; rows past the batch belong to no image of it.
    let key_img = idx
        .f_remainder(b)?
        .f_where_scalarother(&idx.f_lt(m)?, -1i64)?;
    let img = Tensor::f_arange_start(first, first + nb, (Kind::Int64, dev))?;
    let same = img.unsqueeze(1).f_eq_tensor(&key_img.unsqueeze(0))?; // [nb, Nk]
    let support = c.support.f_narrow(1, first, nb)?;
    let labels = c.labels.map(|l| l.narrow(0, first, nb));

    // Detection, without gradient.
    let (fmask, tally, labelled) = tch::no_grad(|| -> Result<_, LossError> {
        let keys = c.keys.detach();
        let per_view = support.f_matmul(&keys.f_tr()?)?; // [|U|, nb, Nk]
        let score = match cfg.aggregate {
            Aggregate::Max => per_view.f_amax([0i64].as_slice(), false)?,
            Aggregate::Mean => per_view.f_mean_dim([0i64].as_slice(), false, keys.kind())?,
        };
        let mut candidate = same.logical_not();
        if let Some(v) = c.valid {
            candidate = candidate.f_logical_and(&v.unsqueeze(0))?;
        }
        let same_label = match (&labels, c.key_labels) {
            (Some(l), Some(kl)) => Some(l.unsqueeze(1).f_eq_tensor(&kl.unsqueeze(0))?),
            _ => None,
        };
        let f = match cfg.detect {
            Detect::Support => filter(&score, &candidate, cfg, nk)?,
            Detect::Oracle => {
                let sl = same_label.as_ref().ok_or_else(|| LossError::Option {
                    flag: "--fn-detect",
                    detail: "oracle detection needs the labels of the batch".into(),
                })?;
                let right = candidate.f_logical_and(sl)?;
                let f = if cfg.oracle_filter {
                    filter(&score, &right, cfg, nk)?
                } else {
                    right
                };
                if cfg.oracle_precision < 1.0 {
                    let wrong = candidate.f_logical_and(&sl.logical_not())?;
                    let own;
                    let draws = match c.draws {
                        Some(d) => d,
                        None => {
                            own = OracleDraws::new(b, nk, dev)?;
                            &own
                        }
                    };
                    noisy(&f, &wrong, cfg.oracle_precision, draws, first)?
                } else {
                    f
                }
            }
        };
        // Counted on the device: the host reads them once a step.
        let count = |t: &Tensor| t.f_sum(Kind::Double);
        let (same_f, same_c, all_c) = match &same_label {
            Some(same_label) => (
                count(&f.f_logical_and(same_label)?)?,
                count(&candidate.f_logical_and(same_label)?)?,
                count(&candidate)?,
            ),
            None => {
                let zero = Tensor::f_zeros([], (Kind::Double, dev))?;
                (zero.shallow_clone(), zero.shallow_clone(), zero)
            }
        };
        let images = Tensor::f_full([], nb as f64, (Kind::Double, dev))?;
        let tally = Tensor::f_stack(&[images, count(&f)?, same_f, same_c, all_c], 0)?;
        Ok((f, tally, same_label.is_some()))
    })?;

    // The shard's anchor rows: view a of images first..first+nb, per anchor view.
    // (made on the device: an upload would wait for it)
    let rows = (Tensor::f_arange(m / b, (Kind::Int64, dev))? * b)
        .unsqueeze(1)
        .f_add(&Tensor::f_arange_start(first, first + nb, (Kind::Int64, dev))?.unsqueeze(0))?
        .f_reshape([-1])?;
    let anchors = if nb == b {
        c.anchors.shallow_clone()
    } else {
        c.anchors.f_index_select(0, &rows)?
    };
    let sim = anchors.f_matmul(&c.keys.f_tr()?)? / cfg.temperature; // [rows, Nk]
    let row_img = Tensor::f_arange(rows.size()[0], (Kind::Int64, dev))?.f_remainder(nb)?;
    // The anchor's own view among the keys (itself, or its momentum embedding).
    let own = rows.unsqueeze(1).f_eq_tensor(&idx.unsqueeze(0))?;
    let positives = same
        .f_index_select(0, &row_img)?
        .f_logical_and(&own.logical_not())?;
    let f_rows = fmask.f_index_select(0, &row_img)?; // [rows, Nk]
    let mut in_denominator = own.logical_not();
    if let Some(v) = c.valid {
        in_denominator = in_denominator.f_logical_and(&v.unsqueeze(0))?;
    }
    if cfg.strategy == Strategy::Elimination {
        in_denominator = in_denominator.f_logical_and(&f_rows.logical_not())?;
    }
    let log_d = sim
        .f_masked_fill(&in_denominator.logical_not(), f64::NEG_INFINITY)?
        .f_logsumexp([1i64].as_slice(), true)?;
    let targets = match cfg.strategy {
        Strategy::Attraction => positives.f_logical_or(&f_rows)?,
        _ => positives,
    };
    let kind = sim.kind();
    let t = targets.to_kind(kind);
    let per_row = -((sim - log_d) * &t).f_sum_dim_intlist([1i64].as_slice(), false, kind)?
        / t.f_sum_dim_intlist([1i64].as_slice(), false, kind)?;
    // L = (2 / V_a) sum_a mean_i l(i, a) = 2 * mean over the V_a * B anchor
    // rows; a shard contributes its rows' share of that mean.
    let loss = if nb == b {
        per_row.f_mean(kind)? * 2.0
    } else {
        per_row.f_sum(kind)? * (2.0 / m as f64)
    };
    Ok(LossOutput::unsettled(loss, fmask, tally, labelled))
}
