//! Frozen-encoder features (centre crop, no augmentation) and weighted k-NN:
//! what evaluation and the training-time monitor share.

use fnc_formats::SplitReader;
use tch::{Device, Kind, Tensor};

use crate::error::TrainError;
use crate::model::{normalise, Model};

/// The centre crop of evaluation features: this fraction of the shorter side
/// (0.875, as the reference's evaluation).
pub const EVAL_CROP: f64 = 0.875;

/// The k-NN monitor's and `fnc-eval knn`'s defaults: k 20 neighbours weighted
/// by exp(sim / 0.07).
pub const KNN_K: i64 = 20;
/// See [`KNN_K`].
pub const KNN_T: f64 = 0.07;

/// Encoder features of a whole split (eval mode, no gradient) on centre crops
/// ([`EVAL_CROP`]) of side `size`, on the CPU as `[N, d]` float, with `[N]`
/// int64 labels.
pub fn extract_features(
    model: &Model,
    split: &SplitReader,
    size: u32,
    batch: usize,
    device: Device,
) -> Result<(Tensor, Tensor), TrainError> {
    let n = split.len();
    let mut feats = Vec::new();
    let mut labels = Vec::new();
    let mut start = 0u64;
    while start < n {
        let end = (start + batch as u64).min(n);
        let idx: Vec<u64> = (start..end).collect();
        let mut px = vec![0u8; idx.len() * (size * size * 3) as usize];
        let l = fnc_augment::centre_crops(split, &idx, size, EVAL_CROP, &mut px)?;
        let x = Tensor::from_slice(&px)
            .view([idx.len() as i64, size as i64, size as i64, 3])
            .to_device(device);
        let f = tch::no_grad(|| model.features(&normalise(&x), false));
        feats.push(f.to_device(Device::Cpu).to_kind(Kind::Float));
        labels.extend(l.into_iter().map(i64::from));
        start = end;
    }
    Ok((Tensor::cat(&feats, 0), Tensor::from_slice(&labels)))
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
    tch::no_grad(|| {
        let tf = train_f
            / train_f
                .norm_scalaropt_dim(2, [1i64].as_slice(), true)
                .clamp_min(1e-12);
        let vf = val_f
            / val_f
                .norm_scalaropt_dim(2, [1i64].as_slice(), true)
                .clamp_min(1e-12);
        let k = k.min(tf.size()[0]);
        let n = vf.size()[0];
        let mut correct = 0i64;
        let mut s = 0;
        while s < n {
            let m = (n - s).min(256);
            let sims = vf.narrow(0, s, m).matmul(&tf.tr());
            let (top, idx) = sims.topk(k, 1, true, true);
            let w = (top / t).exp();
            let lab = train_l.index_select(0, &idx.view([-1])).view([m, k]);
            let votes =
                Tensor::zeros([m, classes], (Kind::Float, Device::Cpu)).scatter_add(1, &lab, &w);
            let pred = votes.argmax(1, false);
            correct += pred
                .eq_tensor(&val_l.narrow(0, s, m))
                .sum(Kind::Int64)
                .int64_value(&[]);
            s += m;
        }
        100.0 * correct as f64 / n.max(1) as f64
    })
}
