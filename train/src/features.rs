//! Frozen-encoder features (the evaluation view, no augmentation) and weighted k-NN:
//! what evaluation and the training-time monitor share.

use fnc_formats::SplitReader;
use tch::{Device, Kind, Tensor};

use crate::error::TrainError;
use crate::model::{normalise, Model};

/// The centre crop of evaluation features: this fraction of the shorter side
/// (0.875, as the reference's evaluation).
pub const EVAL_CROP: f64 = 0.875;

/// The evaluation view of images of side `size`: the reference's centre crop
/// ([`EVAL_CROP`]), except at 32 px and below, where the reference takes the
/// whole image (its `data.py` turns the test crop off there: CIFAR).
pub fn eval_view(size: u32) -> fnc_augment::EvalView {
    if size <= 32 {
        fnc_augment::EvalView::Whole
    } else {
        fnc_augment::EvalView::Centre(EVAL_CROP)
    }
}

/// The k-NN monitor's and `fnc-eval knn`'s defaults: k 20 neighbours weighted
/// by exp(sim / 0.07).
pub const KNN_K: i64 = 20;
/// See [`KNN_K`].
pub const KNN_T: f64 = 0.07;

/// Encoder features of a whole split (eval mode, no gradient) on the
/// evaluation views ([`eval_view`]) of side `size`, on the CPU as `[N, d]` float, with `[N]`
/// int64 labels.
pub fn extract_features(
    model: &Model,
    split: &SplitReader,
    size: u32,
    batch: usize,
    device: Device,
) -> Result<(Tensor, Tensor), TrainError> {
    extract_range(model, split, 0..split.len(), size, batch, device)
}

/// [`extract_features`] of the records `range` of a split.
pub fn extract_range(
    model: &Model,
    split: &SplitReader,
    range: std::ops::Range<u64>,
    size: u32,
    batch: usize,
    device: Device,
) -> Result<(Tensor, Tensor), TrainError> {
    let mut feats = Vec::new();
    let mut labels = Vec::new();
    let mut start = range.start;
    let end_all = range.end.min(split.len());
    while start < end_all {
        let end = (start + batch.max(1) as u64).min(end_all);
        let idx: Vec<u64> = (start..end).collect();
        let mut px = vec![0u8; idx.len() * (size * size * 3) as usize];
        let l = fnc_augment::eval_views(split, &idx, size, eval_view(size), &mut px)?;
        let x = Tensor::from_slice(&px)
            .view([idx.len() as i64, size as i64, size as i64, 3])
            .to_device(device);
        let f = tch::no_grad(|| model.features(&normalise(&x), false));
        feats.push(f.to_device(Device::Cpu).to_kind(Kind::Float));
        labels.extend(l.into_iter().map(i64::from));
        start = end;
    }
    if feats.is_empty() {
        let d = model.feature_dim();
        return Ok((
            Tensor::zeros([0, d], (Kind::Float, Device::Cpu)),
            Tensor::zeros([0], (Kind::Int64, Device::Cpu)),
        ));
    }
    Ok((Tensor::cat(&feats, 0), Tensor::from_slice(&labels)))
}

fn unit_rows(f: &Tensor) -> Tensor {
    f / f
        .norm_scalaropt_dim(2, [1i64].as_slice(), true)
        .clamp_min(1e-12)
}

/// The `k` nearest training rows of every val row by cosine similarity:
/// `([Nv, k] similarities, [Nv, k] labels)`, most similar first; rows past the
/// training set's size have similarity -inf and label 0. The neighbours of a
/// split training set are those of the shards' neighbours merged
/// ([`merge_neighbours`]).
pub fn knn_neighbours(
    train_f: &Tensor,
    train_l: &Tensor,
    val_f: &Tensor,
    k: i64,
) -> (Tensor, Tensor) {
    tch::no_grad(|| {
        let tf = unit_rows(train_f);
        let vf = unit_rows(val_f);
        let n = vf.size()[0];
        let have = k.min(tf.size()[0]);
        let (mut sims, mut labs) = (Vec::new(), Vec::new());
        let mut s = 0;
        while s < n {
            let m = (n - s).min(256);
            if have > 0 {
                let (top, idx) = vf
                    .narrow(0, s, m)
                    .matmul(&tf.tr())
                    .topk(have, 1, true, true);
                sims.push(top);
                labs.push(train_l.index_select(0, &idx.view([-1])).view([m, have]));
            }
            s += m;
        }
        let opts = |kind| (kind, Device::Cpu);
        let (mut sim, mut lab) = if have > 0 && n > 0 {
            (Tensor::cat(&sims, 0), Tensor::cat(&labs, 0))
        } else {
            (
                Tensor::zeros([n, 0], opts(Kind::Float)),
                Tensor::zeros([n, 0], opts(Kind::Int64)),
            )
        };
        if have < k {
            sim = Tensor::cat(
                &[
                    sim,
                    Tensor::full([n, k - have], f64::NEG_INFINITY, opts(Kind::Float)),
                ],
                1,
            );
            lab = Tensor::cat(&[lab, Tensor::zeros([n, k - have], opts(Kind::Int64))], 1);
        }
        (sim, lab)
    })
}

/// The `k` nearest of several shards' neighbour lists (`[Nv, S * k]` side by
/// side).
pub fn merge_neighbours(sims: &Tensor, labels: &Tensor, k: i64) -> (Tensor, Tensor) {
    let (top, idx) = sims.topk(k.min(sims.size()[1]), 1, true, true);
    (top, labels.gather(1, &idx, false))
}

/// Weighted k-NN top-1 in percent from each val row's neighbours: votes
/// exp(sim / t) per class.
pub fn knn_vote(sims: &Tensor, labels: &Tensor, val_l: &Tensor, t: f64, classes: i64) -> f64 {
    tch::no_grad(|| {
        let n = sims.size()[0];
        if n == 0 {
            return 0.0;
        }
        let w = (sims / t).exp();
        // Room for every label present, whatever the manifest's class list
        // says (a label past it must not index out of the votes). Labels are
        // never negative (u32 in the shards; padding rows carry 0).
        let most = labels
            .max()
            .int64_value(&[])
            .max(val_l.max().int64_value(&[]));
        let classes = classes.max(most + 1).max(1);
        let votes =
            Tensor::zeros([n, classes], (Kind::Float, Device::Cpu)).scatter_add(1, labels, &w);
        let correct = votes
            .argmax(1, false)
            .eq_tensor(val_l)
            .sum(Kind::Int64)
            .int64_value(&[]);
        100.0 * correct as f64 / n as f64
    })
}

/// Weighted k-NN top-1 accuracy in percent (cosine similarity, weights
/// exp(sim / t), as in InstDisc / the usual SSL monitors).
pub fn knn_top1(
    train_f: &Tensor,
    train_l: &Tensor,
    val_f: &Tensor,
    val_l: &Tensor,
    k: i64,
    t: f64,
    classes: i64,
) -> f64 {
    let k = k.min(train_f.size()[0]);
    let (sims, labels) = knn_neighbours(train_f, train_l, val_f, k);
    knn_vote(&sims, &labels, val_l, t, classes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluation_is_uncropped_at_32_px_and_below_as_the_reference() {
        assert_eq!(eval_view(32), fnc_augment::EvalView::Whole);
        assert_eq!(eval_view(24), fnc_augment::EvalView::Whole);
        assert_eq!(eval_view(33), fnc_augment::EvalView::Centre(EVAL_CROP));
        assert_eq!(eval_view(224), fnc_augment::EvalView::Centre(0.875));
    }
}
