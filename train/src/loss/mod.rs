//! The FNC loss (SPEC §4), on a view-major embedding matrix.
//!
//! Rows `[v*B, (v+1)*B)` of Z are view v of images 0..B-1. Similarities are
//! `z_u . z_w / tau` of L2-normalised rows. False negatives of image i are the
//! candidates (j, v), j != i, whose score — the max (or mean) over i's support set
//! of cosine similarities — is in the top-k of i's scores and above the
//! threshold; detection carries no gradient.
//!
//! Homes: `options` (LossConfig and its enums), `stats` (what a loss returns),
//! `contrast` (one contrast of anchors and keys), `detect` (the filter and
//! the noisy oracle), `memory` (the memory variant's keys), `blocked` (the
//! loss and its gradient in blocks of anchor rows, to bound its memory); the
//! bank itself lives beside the momentum encoder (`momentum::MemoryBank`).

mod blocked;
mod contrast;
mod detect;
mod memory;
mod options;
mod stats;

use tch::{Kind, Tensor};

pub use blocked::{
    fnc_loss_grad, fnc_loss_memory_grad, loss_block_bytes, loss_block_rows, LOSS_BUDGET,
};
pub(crate) use blocked::{in_batch_grad, memory_grad};
use contrast::{contrast, Contrast};
use detect::OracleDraws;
pub use memory::{fnc_loss_memory, fnc_loss_memory_shard, BankView};
pub use options::{Aggregate, Anchors, Detect, LossConfig, Strategy, SupportSet};
pub use stats::{FnCounts, LossOutput, Shard};

/// Errors of the loss's inputs.
#[derive(Debug, thiserror::Error)]
pub enum LossError {
    #[error("--views {views}: the embedding matrix has {rows} rows, not a multiple of V")]
    Shape { views: i64, rows: i64 },
    #[error("--labels: shape {shape:?}, but the embeddings hold {images} images: want [{images}] (one label per image)")]
    Labels { shape: Vec<i64>, images: i64 },
    #[error("invalid option {flag}: {detail}")]
    Option { flag: &'static str, detail: String },
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// Checks `z` (`[V*B, d]`), `labels` (`[B]`) and the options; returns B.
pub(crate) fn images_in(
    z: &Tensor,
    views: i64,
    cfg: &LossConfig,
    labels: Option<&Tensor>,
) -> Result<i64, LossError> {
    let size = z.size();
    let n = size.first().copied().unwrap_or(0);
    if views < 2 || n == 0 || n % views != 0 || size.len() != 2 {
        return Err(LossError::Shape { views, rows: n });
    }
    cfg.validate(views)?;
    let b = n / views;
    if let Some(l) = labels {
        if l.size() != [b] {
            return Err(LossError::Labels {
                shape: l.size(),
                images: b,
            });
        }
    }
    Ok(b)
}

pub(crate) fn l2_normalise(z: &Tensor) -> Result<Tensor, LossError> {
    Ok(z / z
        .f_norm_scalaropt_dim(2, [1i64].as_slice(), true)?
        .clamp_min(1e-12))
}

/// `[|U|, B, d]`: the support set of every image, from view-major `z`.
pub(crate) fn support_rows(
    z: &Tensor,
    views: i64,
    b: i64,
    cfg: &LossConfig,
) -> Result<Tensor, LossError> {
    // A range of views: a narrow, nothing uploaded.
    let first = match cfg.support_set {
        SupportSet::All => 0,
        SupportSet::Support => 2,
    };
    Ok(z.f_view([views, b, -1])?
        .f_narrow(0, first, views - first)?)
}

/// Computes the FNC loss of `z` (`[V*B, d]`, view-major). `labels` (`[B]`, int64)
/// only feed the FN precision statistic.
pub fn fnc_loss(
    z: &Tensor,
    views: i64,
    cfg: &LossConfig,
    labels: Option<&Tensor>,
) -> Result<LossOutput, LossError> {
    fnc_loss_shard(z, views, cfg, labels, None)
}

/// [`fnc_loss`] of the anchors of `shard`'s images only (all when `None`),
/// against every key of `z`: one rank's part of a data-parallel step.
pub fn fnc_loss_shard(
    z: &Tensor,
    views: i64,
    cfg: &LossConfig,
    labels: Option<&Tensor>,
    shard: Option<Shard>,
) -> Result<LossOutput, LossError> {
    let parts = in_batch_parts(z, views, cfg, labels)?;
    let anchors = l2_normalise(z)?.f_narrow(0, 0, parts.m)?;
    let mut out = parts.contrast(&anchors, cfg, shard, None)?;
    out.settle()?;
    Ok(out)
}

/// What the contrasts of one loss share besides the anchors (which carry the
/// gradient, so each caller makes its own): the support sets, the labels and,
/// in the memory variant, the keys.
pub(crate) struct Parts {
    /// Images of the batch.
    pub b: i64,
    /// Anchor rows: the anchor views of the batch.
    pub m: i64,
    /// `[|U|, B, d]`, normalised, without gradient.
    pub support: Tensor,
    pub labels: Option<Tensor>,
    pub key_labels: Option<Tensor>,
    /// The memory variant's keys (normalised, without gradient) and the mask
    /// of their real rows; `None`: in-batch, the keys are the anchors.
    pub bank_keys: Option<(Tensor, Tensor)>,
}

impl Parts {
    /// Rows of keys each anchor is scored against.
    pub fn keys(&self) -> i64 {
        self.bank_keys.as_ref().map_or(self.m, |(k, _)| k.size()[0])
    }

    /// The contrast of `anchors` (`[m, d]`, normalised) for `shard`'s images.
    pub fn contrast(
        &self,
        anchors: &Tensor,
        cfg: &LossConfig,
        shard: Option<Shard>,
        draws: Option<&OracleDraws>,
    ) -> Result<LossOutput, LossError> {
        let (keys, valid) = match &self.bank_keys {
            Some((k, v)) => (k, Some(v)),
            None => (anchors, None),
        };
        contrast(&Contrast {
            anchors,
            keys,
            valid,
            support: &self.support,
            b: self.b,
            cfg,
            labels: self.labels.as_ref(),
            key_labels: self.key_labels.as_ref(),
            shard,
            draws,
        })
    }
}

/// The in-batch loss's [`Parts`]: keys are the anchor views themselves.
pub(crate) fn in_batch_parts(
    z: &Tensor,
    views: i64,
    cfg: &LossConfig,
    labels: Option<&Tensor>,
) -> Result<Parts, LossError> {
    let b = images_in(z, views, cfg, labels)?;
    let m = cfg.anchor_views(views) * b;
    let support = support_rows(&l2_normalise(&z.detach())?, views, b, cfg)?;
    let labels = labels.map(|l| l.to_device(z.device()).to_kind(Kind::Int64));
    let key_labels = labels.as_ref().map(|l| l.repeat([m / b]));
    Ok(Parts {
        b,
        m,
        support,
        labels,
        key_labels,
        bank_keys: None,
    })
}
