#![allow(dead_code, clippy::unwrap_used)]
//! An independent FNC loss written plainly (double precision, loops) and the
//! clustered embeddings the tests feed it.

use fnc_train::{Aggregate, Anchors, LossConfig, Strategy, SupportSet};
use tch::Tensor;

/// Deterministic pseudo-random numbers (no RNG crate needed).
pub fn noise(seed: u64, n: usize) -> Vec<f64> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

/// V views of B images in `clusters` clusters, view-major rows; and labels.
pub fn clustered(
    v: usize,
    b: usize,
    d: usize,
    clusters: usize,
    spread: f64,
    seed: u64,
) -> (Vec<Vec<f64>>, Vec<i64>) {
    let centers: Vec<Vec<f64>> = (0..clusters)
        .map(|c| noise(seed + 100 + c as u64, d))
        .collect();
    let labels: Vec<i64> = (0..b).map(|i| (i % clusters) as i64).collect();
    let mut rows = Vec::new();
    for view in 0..v {
        for i in 0..b {
            let image_offset = noise(seed + 1000 + i as u64, d);
            let n = noise(seed + 5000 + (view * b + i) as u64, d);
            rows.push(
                (0..d)
                    .map(|k| {
                        centers[labels[i] as usize][k]
                            + 0.6 * spread * image_offset[k]
                            + 0.3 * spread * n[k]
                    })
                    .collect(),
            );
        }
    }
    (rows, labels)
}

pub struct Reference {
    pub loss: f64,
    /// fnc[i] = sorted candidate rows detected for image i.
    pub fnc: Vec<Vec<usize>>,
}

/// The in-batch loss: the memory variant's reference with the batch as its
/// own keys and an empty bank (the keys are then exactly the anchor rows).
pub fn reference(z: &[Vec<f64>], v: usize, cfg: &LossConfig) -> Reference {
    reference_memory(z, z, &[], v, cfg)
}

/// The loss agrees to 1e-9 (relative) and detection exactly.
pub fn assert_matches(got: &fnc_train::LossOutput, want: &Reference, b: usize, cfg: &LossConfig) {
    let loss = got.loss.double_value(&[]);
    assert!(
        (loss - want.loss).abs() < 1e-9 * want.loss.abs().max(1.0),
        "{cfg:?}: {loss} vs {}",
        want.loss
    );
    assert_eq!(detected(&got.false_negatives, b), want.fnc, "{cfg:?}");
}

/// Every combination of the loss options (96), temperature 0.1.
pub fn every_config() -> Vec<LossConfig> {
    let mut out = Vec::new();
    for strategy in [Strategy::None, Strategy::Elimination, Strategy::Attraction] {
        for aggregate in [Aggregate::Max, Aggregate::Mean] {
            for topk in [0i64, 3] {
                for threshold in [None, Some(0.7)] {
                    for anchors in [Anchors::All, Anchors::Main] {
                        for support_set in [SupportSet::All, SupportSet::Support] {
                            out.push(LossConfig {
                                temperature: 0.1,
                                strategy,
                                aggregate,
                                topk,
                                threshold,
                                anchors,
                                support_set,
                                ..LossConfig::default()
                            });
                        }
                    }
                }
            }
        }
    }
    out
}

pub fn tensor(rows: &[Vec<f64>]) -> Tensor {
    let flat: Vec<f64> = rows.iter().flatten().copied().collect();
    Tensor::from_slice(&flat).view([rows.len() as i64, rows[0].len() as i64])
}

pub fn detected(f: &Tensor, b: usize) -> Vec<Vec<usize>> {
    let n = f.size()[1] as usize;
    (0..b)
        .map(|i| {
            (0..n)
                .filter(|&c| f.int64_value(&[i as i64, c as i64]) != 0)
                .collect()
        })
        .collect()
}

fn unit(rows: &[Vec<f64>]) -> Vec<Vec<f64>> {
    rows.iter()
        .map(|r| {
            let norm = r.iter().map(|x| x * x).sum::<f64>().sqrt();
            r.iter().map(|x| x / norm).collect()
        })
        .collect()
}

/// The loss written plainly, in its memory form: anchors `z` (online), keys =
/// the anchor views of `zm` (momentum, this batch) followed by `older` (the
/// bank's real rows, newest first, already cut to what fits).
pub fn reference_memory(
    z: &[Vec<f64>],
    zm: &[Vec<f64>],
    older: &[Vec<f64>],
    v: usize,
    cfg: &LossConfig,
) -> Reference {
    let b = z.len() / v;
    let z = unit(z);
    let zm = unit(zm);
    let va = if cfg.anchors == Anchors::Main { 2 } else { v };
    let m = va * b;
    let mut keys: Vec<Vec<f64>> = zm[..m].to_vec();
    keys.extend(unit(older));
    let dot = |a: &[f64], c: &[f64]| -> f64 { a.iter().zip(c).map(|(x, y)| x * y).sum() };
    let support: Vec<usize> = if cfg.support_set == SupportSet::Support {
        (2..v).collect()
    } else {
        (0..v).collect()
    };
    let image_of = |c: usize| (c < m).then_some(c % b);
    let mut fnc = Vec::new();
    for i in 0..b {
        let mut cands: Vec<(f64, usize)> = Vec::new();
        for (c, key) in keys.iter().enumerate() {
            if image_of(c) == Some(i) {
                continue;
            }
            let sims: Vec<f64> = support.iter().map(|&u| dot(&zm[u * b + i], key)).collect();
            let score = match cfg.aggregate {
                Aggregate::Max => sims.iter().cloned().fold(f64::MIN, f64::max),
                Aggregate::Mean => sims.iter().sum::<f64>() / sims.len() as f64,
            };
            cands.push((score, c));
        }
        cands.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap());
        let k = if cfg.topk > 0 {
            cfg.topk as usize
        } else {
            cands.len()
        };
        let mut f: Vec<usize> = cands
            .iter()
            .take(k)
            .filter(|(s, _)| cfg.threshold.map(|t| *s > t).unwrap_or(true))
            .map(|&(_, c)| c)
            .collect();
        f.sort();
        fnc.push(f);
    }
    let tau = cfg.temperature;
    let mut total = 0.0;
    for (r, anchor) in z.iter().enumerate().take(m) {
        let i = r % b;
        let f = &fnc[i];
        let mut d = 0.0;
        for (c, key) in keys.iter().enumerate() {
            if c == r || (cfg.strategy == Strategy::Elimination && f.contains(&c)) {
                continue;
            }
            d += (dot(anchor, key) / tau).exp();
        }
        let mut targets: Vec<usize> = (0..m).filter(|&c| c != r && c % b == i).collect();
        if cfg.strategy == Strategy::Attraction {
            targets.extend(f.iter().copied());
        }
        let l = -targets
            .iter()
            .map(|&p| dot(anchor, &keys[p]) / tau - d.ln())
            .sum::<f64>()
            / targets.len() as f64;
        total += l;
    }
    Reference {
        loss: 2.0 * total / m as f64,
        fnc,
    }
}
