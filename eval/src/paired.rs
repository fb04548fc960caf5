//! `fnc-eval compare --paired`: each arm against a baseline arm, run by run
//! paired by seed. Per metric: the per-seed differences, their mean and
//! standard error, a two-sided paired t-test over the seeds; for the linear
//! probe also a paired bootstrap over the evaluation images (the same images
//! resampled for both runs of every pair) and McNemar's exact test per pair.
//! The tests are fixed here, before any result is seen.

use serde::Serialize;

use crate::compare::{arm_index, Comparison, Group};
use crate::error::EvalError;

/// Bootstrap resamples of the evaluation images.
pub const BOOTSTRAP: usize = 2000;

/// One arm against the baseline on one metric.
#[derive(Debug, Clone, Serialize)]
pub struct PairedDiff {
    pub arm: String,
    pub metric: &'static str,
    /// The seeds present in both arms, and arm minus baseline per seed
    /// (percentage points).
    pub seeds: Vec<u64>,
    pub diffs: Vec<f64>,
    pub mean: f64,
    /// Standard error of the mean difference (sample sd / sqrt(n)); 0 for one pair.
    pub se: f64,
    /// Paired t statistic and its two-sided p (n - 1 degrees of freedom);
    /// absent for fewer than two pairs, and when every pair differs by the
    /// same nonzero amount (no spread to test against).
    pub t: Option<f64>,
    pub p: Option<f64>,
    /// 95% interval of the mean difference from resampling the evaluation
    /// images, the trained encoders held fixed (test-set sampling only, not
    /// training's seed-to-seed spread; linear probe only).
    pub bootstrap_ci95: Option<(f64, f64)>,
    /// McNemar's exact two-sided test per pair (linear probe only): seed,
    /// images only the baseline got right, only the arm got right, p.
    pub mcnemar: Vec<(u64, u64, u64, f64)>,
}

/// Every arm against the baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Paired {
    pub baseline: String,
    pub diffs: Vec<PairedDiff>,
}

// The bootstrap interval and McNemar's test resample the evaluation images
// with the trained encoders held fixed: they measure the test set's sampling,
// not the seed-to-seed spread of training, which only the t-test over seeds
// sees. The t-test is the primary one.

/// Pairs the runs of every group with the baseline group's by seed.
/// `baseline`: a group's label, or a `key=value` among its flags; default the
/// group of the first run.
pub fn paired(c: &Comparison, baseline: Option<&str>) -> Result<Paired, EvalError> {
    let labels: Vec<String> = c.groups.iter().map(Group::label).collect();
    let base = match baseline {
        None => 0,
        Some(name) => arm_index(&labels, name)?,
    };
    for g in &c.groups {
        let mut seeds: Vec<u64> = g.runs.iter().map(|r| r.seed).collect();
        seeds.sort_unstable();
        if let Some(w) = seeds.windows(2).find(|w| w[0] == w[1]) {
            return Err(EvalError::Input {
                what: "fnc-eval compare --paired".into(),
                detail: format!(
                    "arm {} has two runs of seed {}: runs pair by seed, one each",
                    g.label(),
                    w[0]
                ),
            });
        }
    }
    let b = &c.groups[base];
    let mut diffs = Vec::new();
    for (k, g) in c.groups.iter().enumerate() {
        if k == base {
            continue;
        }
        let pairs: Vec<_> = g
            .runs
            .iter()
            .filter_map(|r| b.runs.iter().find(|x| x.seed == r.seed).map(|x| (x, r)))
            .collect();
        for (x, r) in &pairs {
            if x.dataset_id != r.dataset_id || x.linear_correct.len() != r.linear_correct.len() {
                return Err(EvalError::Input {
                    what: format!("{} and {}", x.run.display(), r.run.display()),
                    detail: "were evaluated on other datasets: a pair needs the same images".into(),
                });
            }
        }
        if pairs.is_empty() {
            continue;
        }
        let seeds: Vec<u64> = pairs.iter().map(|(x, _)| x.seed).collect();
        for metric in ["linear_top1", "knn_top1"] {
            let d: Vec<f64> = pairs
                .iter()
                .map(|(x, r)| match metric {
                    "linear_top1" => r.linear_top1 - x.linear_top1,
                    _ => r.knn_top1 - x.knn_top1,
                })
                .collect();
            let (mean, se) = mean_se(&d);
            let (t, p) = paired_t(&d);
            let (bootstrap_ci95, mcnemar) = if metric == "linear_top1" {
                let correct: Vec<(&[bool], &[bool])> = pairs
                    .iter()
                    .map(|(x, r)| (&x.linear_correct[..], &r.linear_correct[..]))
                    .collect();
                let mc = pairs
                    .iter()
                    .zip(&correct)
                    .map(|((x, _), (cb, ca))| {
                        let (only_b, only_a) = discordant(cb, ca);
                        (x.seed, only_b, only_a, mcnemar_exact(only_b, only_a))
                    })
                    .collect();
                (bootstrap(&correct, BOOTSTRAP, 0x0b00_75ee), mc)
            } else {
                (None, Vec::new())
            };
            diffs.push(PairedDiff {
                arm: g.label(),
                metric,
                seeds: seeds.clone(),
                diffs: d,
                mean,
                se,
                t,
                p,
                bootstrap_ci95,
                mcnemar,
            });
        }
    }
    Ok(Paired {
        baseline: b.label(),
        diffs,
    })
}

/// The paired t statistic of differences `d` and its two-sided p (n - 1
/// degrees of freedom). None for fewer than two pairs, and when every pair
/// differs by the same nonzero amount: accuracies lie on a grid of one image
/// (0.01 points on 10,000), so with few seeds equal differences happen by
/// chance, and a t that divides by their zero spread would claim certainty.
/// All differences 0: t 0, p 1.
fn paired_t(d: &[f64]) -> (Option<f64>, Option<f64>) {
    if d.len() < 2 {
        return (None, None);
    }
    let (mean, se) = mean_se(d);
    let (lo, hi) = d
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let size = d.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    if hi - lo <= 1e-9 * size {
        return if mean.abs() <= 1e-9 * size {
            (Some(0.0), Some(1.0))
        } else {
            (None, None)
        };
    }
    let t = mean / se;
    (Some(t), Some(t_two_sided(t, (d.len() - 1) as f64)))
}

fn mean_se(d: &[f64]) -> (f64, f64) {
    let n = d.len() as f64;
    let mean = d.iter().sum::<f64>() / n.max(1.0);
    if d.len() < 2 {
        return (mean, 0.0);
    }
    let var = d.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

/// Images only the baseline got right, and only the arm.
fn discordant(base: &[bool], arm: &[bool]) -> (u64, u64) {
    base.iter()
        .zip(arm)
        .fold((0, 0), |(b, a), (&x, &y)| match (x, y) {
            (true, false) => (b + 1, a),
            (false, true) => (b, a + 1),
            _ => (b, a),
        })
}

/// The 2.5th and 97.5th percentiles of the mean over pairs of the accuracy
/// difference (percentage points), the images resampled with replacement
/// (the same draw for both runs of a pair and for every pair).
fn bootstrap(pairs: &[(&[bool], &[bool])], resamples: usize, seed: u64) -> Option<(f64, f64)> {
    let n = pairs.first().map(|p| p.0.len())?;
    if n == 0 || pairs.iter().any(|(a, b)| a.len() != n || b.len() != n) {
        return None;
    }
    // Per image: the arm's wins minus the baseline's, summed over the pairs.
    let gain: Vec<i64> = (0..n)
        .map(|i| {
            pairs
                .iter()
                .map(|(b, a)| i64::from(a[i]) - i64::from(b[i]))
                .sum()
        })
        .collect();
    let mut state = seed | 1;
    let mut next = || {
        // xorshift64*: enough for drawing image indices.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let scale = 100.0 / (n as f64 * pairs.len() as f64);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| {
            let s: i64 = (0..n).map(|_| gain[(next() % n as u64) as usize]).sum();
            s as f64 * scale
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    Some((at(0.025), at(0.975)))
}

/// McNemar's exact test: two-sided binomial p of `b` against `a` discordant
/// images at 1/2.
fn mcnemar_exact(b: u64, a: u64) -> f64 {
    let n = a + b;
    if n == 0 {
        return 1.0;
    }
    let k = a.min(b);
    // P(X <= k) for X ~ Bin(n, 1/2), in logs.
    let ln_half_n = -(n as f64) * std::f64::consts::LN_2;
    let mut term = ln_half_n; // ln C(n, 0) / 2^n
    let mut cdf = term.exp();
    for i in 1..=k {
        term += ((n - i + 1) as f64).ln() - (i as f64).ln();
        cdf += term.exp();
    }
    (2.0 * cdf).min(1.0)
}

/// Two-sided p of Student's t with `df` degrees of freedom:
/// I_{df / (df + t^2)}(df / 2, 1 / 2).
fn t_two_sided(t: f64, df: f64) -> f64 {
    if !t.is_finite() {
        return 0.0;
    }
    incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
}

/// The regularised incomplete beta function I_x(a, b), by its continued
/// fraction (evaluated with the modified Lentz method), using the symmetry
/// I_x(a, b) = 1 - I_{1-x}(b, a) where the fraction converges slowly.
fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_fraction(a, b, x) / a
    } else {
        1.0 - ln_front.exp() * beta_fraction(b, a, 1.0 - x) / b
    }
}

fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    d = 1.0 / if d.abs() < TINY { TINY } else { d };
    let mut h = d;
    for m in 1..300 {
        let m = m as f64;
        for coef in [
            m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0)),
        ] {
            d = 1.0 + coef * d;
            d = 1.0 / if d.abs() < TINY { TINY } else { d };
            c = 1.0 + coef / c;
            if c.abs() < TINY {
                c = TINY;
            }
            h *= d * c;
        }
        if (d * c - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, nine terms).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 - x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut s = G[0];
    for (i, g) in G.iter().enumerate().skip(1) {
        s += g / (x + i as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + s.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn students_t_matches_its_tables() {
        // Two-sided critical values: p = 0.05 at t = 12.706 (1 df), 4.303
        // (2 df), 2.228 (10 df); p = 0.01 at 9.925 (2 df).
        for (t, df, p) in [
            (12.706, 1.0, 0.05),
            (4.303, 2.0, 0.05),
            (2.228, 10.0, 0.05),
            (9.925, 2.0, 0.01),
        ] {
            let got = t_two_sided(t, df);
            assert!((got - p).abs() < 2e-4, "t {t} df {df}: {got} vs {p}");
        }
        assert!((t_two_sided(0.0, 5.0) - 1.0).abs() < 1e-12);
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn the_paired_t_needs_a_spread() {
        // Mean 1.5, sd 0.707, SE 0.5: t 3 on 1 df.
        let (t, p) = paired_t(&[1.0, 2.0]);
        assert!((t.unwrap() - 3.0).abs() < 1e-12);
        assert!((p.unwrap() - t_two_sided(3.0, 1.0)).abs() < 1e-12);
        // Equal differences, as accuracies in percent subtract them: no t.
        let d: [f64; 2] = [55.10 - 54.91, 50.0 - 49.81];
        assert!(d[0] != d[1] && (d[0] - d[1]).abs() < 1e-12, "{d:?}");
        assert_eq!(paired_t(&d), (None, None));
        assert_eq!(paired_t(&[0.0, 0.0, 0.0]), (Some(0.0), Some(1.0)));
        assert_eq!(paired_t(&[0.5]), (None, None));
    }

    #[test]
    fn mcnemar_is_the_two_sided_binomial() {
        // 0 vs 6 discordant: 2 / 64.
        assert!((mcnemar_exact(0, 6) - 2.0 / 64.0).abs() < 1e-12);
        assert!((mcnemar_exact(3, 3) - 1.0).abs() < 1e-12);
        // 1 vs 9: 2 * (1 + 10) / 1024.
        assert!((mcnemar_exact(9, 1) - 22.0 / 1024.0).abs() < 1e-12);
    }

    #[test]
    fn the_bootstrap_brackets_the_observed_difference() {
        // The arm gets 60 of 100 right, the baseline 50: +10 points.
        let base: Vec<bool> = (0..100).map(|i| i < 50).collect();
        let arm: Vec<bool> = (0..100).map(|i| i < 60).collect();
        let (lo, hi) = bootstrap(&[(&base, &arm)], 2000, 7).unwrap();
        assert!(lo < 10.0 && 10.0 < hi && lo > 0.0, "{lo} {hi}");
        let same = bootstrap(&[(&base, &base)], 200, 7).unwrap();
        assert_eq!(same, (0.0, 0.0));
    }
}
