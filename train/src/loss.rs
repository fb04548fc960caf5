//! The FNC loss (SPEC §4), on a view-major embedding matrix.
//!
//! Rows `[v*B, (v+1)*B)` of Z are view v of images 0..B-1. Similarities are
//! `z_u . z_w / tau` of L2-normalised rows. False negatives of image i are the
//! candidates (j, v), j != i, whose score — the max (or mean) over i's support set
//! of cosine similarities — is in the top-k of i's scores and above the
//! threshold; detection carries no gradient.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// What to do with detected false negatives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Multi-view NT-Xent (SimCLR when S = 0): no cancellation.
    None,
    /// Remove detected false negatives from the denominator.
    Elimination,
    /// Treat them as extra positives (the reference code's FNC).
    Attraction,
}

/// How a candidate's similarities to the support set are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Aggregate {
    Max,
    Mean,
}

/// Which views are anchors (and positives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Anchors {
    /// Every view (the reference's multi-crop setting).
    All,
    /// Views 0 and 1 only; support views serve detection only.
    Main,
}

/// Which views of image i form its support set for detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SupportSet {
    /// All V views.
    All,
    /// The S support views only.
    Support,
}

/// Loss options; defaults are SPEC §4's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossConfig {
    pub temperature: f64,
    pub strategy: Strategy,
    pub aggregate: Aggregate,
    /// 0 disables the top-k filter.
    pub topk: i64,
    /// None disables the threshold filter.
    pub threshold: Option<f64>,
    pub anchors: Anchors,
    pub support_set: SupportSet,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            temperature: 0.1,
            strategy: Strategy::Attraction,
            aggregate: Aggregate::Max,
            topk: 10,
            threshold: Some(0.7),
            anchors: Anchors::All,
            support_set: SupportSet::All,
        }
    }
}

/// The loss and what detection found.
#[derive(Debug)]
pub struct LossOutput {
    /// Scalar loss (differentiable).
    pub loss: Tensor,
    /// `[B, N]` boolean: candidate rows detected as false negatives of image i.
    pub false_negatives: Tensor,
    /// Mean |F_i| over images.
    pub mean_fn: f64,
    /// Share of detected false negatives with the anchor's label (labels given).
    pub fn_precision: Option<f64>,
    /// Share of all candidates with the anchor's label: precision by chance.
    pub fn_chance: Option<f64>,
}

/// Errors of the loss's inputs.
#[derive(Debug, thiserror::Error)]
pub enum LossError {
    #[error("--views {views}: the embedding matrix has {rows} rows, not a multiple of V")]
    Shape { views: i64, rows: i64 },
    #[error("invalid option {flag}: {detail}")]
    Option { flag: &'static str, detail: String },
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// Computes the FNC loss of `z` (`[V*B, d]`, view-major). `labels` (`[B]`, int64)
/// only feed the FN precision statistic.
pub fn fnc_loss(
    z: &Tensor,
    views: i64,
    cfg: &LossConfig,
    labels: Option<&Tensor>,
) -> Result<LossOutput, LossError> {
    let size = z.size();
    let n = size.first().copied().unwrap_or(0);
    if views < 2 || n == 0 || n % views != 0 || size.len() != 2 {
        return Err(LossError::Shape { views, rows: n });
    }
    if cfg.temperature <= 0.0 {
        return Err(LossError::Option {
            flag: "--temperature",
            detail: "must be positive".into(),
        });
    }
    if cfg.support_set == SupportSet::Support && views < 3 {
        return Err(LossError::Option {
            flag: "--fn-support",
            detail: "'support' needs support views (V > 2)".into(),
        });
    }
    let b = n / views;
    let dev = z.device();
    let z = z / z
        .f_norm_scalaropt_dim(2, [1i64].as_slice(), true)?
        .clamp_min(1e-12);
    let loss_views = match cfg.anchors {
        Anchors::All => views,
        Anchors::Main => 2,
    };
    let m = loss_views * b;

    // Detection, without gradient.
    let (fmask, mean_fn, fn_precision, fn_chance) = tch::no_grad(|| -> Result<_, LossError> {
        let zd = z.detach();
        let cos = zd.f_matmul(&zd.f_tr()?)?; // [N, N]
        let support: Vec<i64> = match cfg.support_set {
            SupportSet::All => (0..views).collect(),
            SupportSet::Support => (2..views).collect(),
        };
        let sel = Tensor::from_slice(&support).to_device(dev);
        let per_view = cos.f_view([views, b, n])?.f_index_select(0, &sel)?; // [|U|, B, N]
        let score = match cfg.aggregate {
            Aggregate::Max => per_view.f_amax([0i64].as_slice(), false)?,
            Aggregate::Mean => per_view.f_mean_dim([0i64].as_slice(), false, zd.kind())?,
        };
        let img = Tensor::f_arange(b, (Kind::Int64, dev))?;
        let col_img = Tensor::f_arange(n, (Kind::Int64, dev))?.f_remainder(b)?;
        let same = img.unsqueeze(1).f_eq_tensor(&col_img.unsqueeze(0))?; // [B, N]
        let in_loss = Tensor::f_arange(n, (Kind::Int64, dev))?
            .f_lt(m)?
            .unsqueeze(0); // [1, N]
        let candidate = same.logical_not().f_logical_and(&in_loss)?; // [B, N]
        let score = score.f_masked_fill(&candidate.logical_not(), f64::NEG_INFINITY)?;
        let mut f = candidate.shallow_clone();
        let candidates_per_image = (loss_views - 1) * b;
        if cfg.topk > 0 {
            let k = cfg.topk.min(candidates_per_image);
            let (_, idx) = score.f_topk(k, 1, true, false)?;
            let top = Tensor::f_zeros([b, n], (Kind::Bool, dev))?.f_scatter_value(1, &idx, 1)?;
            f = f.f_logical_and(&top)?;
        }
        if let Some(t) = cfg.threshold {
            f = f.f_logical_and(&score.f_gt(t)?)?;
        }
        let total = f.f_sum(Kind::Float)?.double_value(&[]);
        let mean_fn = total / b as f64;
        let (precision, chance) = match labels {
            Some(l) => {
                let l = l.to_device(dev).to_kind(Kind::Int64);
                let same_label = l
                    .unsqueeze(1)
                    .f_eq_tensor(&l.f_index_select(0, &col_img)?.unsqueeze(0))?;
                let hit = f
                    .f_logical_and(&same_label)?
                    .f_sum(Kind::Float)?
                    .double_value(&[]);
                let c_hit = candidate
                    .f_logical_and(&same_label)?
                    .f_sum(Kind::Float)?
                    .double_value(&[]);
                let c_all = candidate.f_sum(Kind::Float)?.double_value(&[]);
                (
                    (total > 0.0).then(|| hit / total),
                    (c_all > 0.0).then(|| c_hit / c_all),
                )
            }
            None => (None, None),
        };
        Ok((f, mean_fn, precision, chance))
    })?;

    let zl = z.f_narrow(0, 0, m)?;
    let sim = zl.f_matmul(&zl.f_tr()?)? / cfg.temperature; // [m, m]
    let row_img = Tensor::f_arange(m, (Kind::Int64, dev))?.f_remainder(b)?;
    let same_img = row_img.unsqueeze(1).f_eq_tensor(&row_img.unsqueeze(0))?;
    let eye = Tensor::f_eye(m, (Kind::Bool, dev))?;
    let positives = same_img.f_logical_and(&eye.logical_not())?;
    let f_rows = fmask.f_narrow(1, 0, m)?.f_index_select(0, &row_img)?; // [m, m]
    let mut in_denominator = eye.logical_not();
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
    // L = (2 / V_a) sum_a mean_i l(i, a) = 2 * mean over the V_a * B anchor rows.
    let loss = per_row.f_mean(kind)? * 2.0;
    Ok(LossOutput {
        loss,
        false_negatives: fmask,
        mean_fn,
        fn_precision,
        fn_chance,
    })
}
