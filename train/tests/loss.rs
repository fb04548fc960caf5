//! The FNC loss against an independent implementation written plainly in
//! `common/` (double precision, loops), on clustered embeddings where false
//! negatives are really found; hand-checkable cases; a finite-difference check.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use fnc_train::{fnc_loss, LossConfig, Strategy, SupportSet};
use tch::{Device, Kind, Tensor};

#[test]
fn every_option_combination_matches_the_reference() {
    let (v, b) = (5usize, 9usize);
    let (rows, labels) = clustered(v, b, 12, 3, 0.5, 1);
    let z = tensor(&rows);
    let labels_t = Tensor::from_slice(&labels);
    let mut combos = 0;
    let mut with_fn = 0;
    for cfg in every_config() {
        let want = reference(&rows, v, &cfg);
        let got = fnc_loss(&z, v as i64, &cfg, Some(&labels_t)).unwrap();
        assert_matches(&got, &want, b, &cfg);
        let mean_fn = want.fnc.iter().map(|f| f.len()).sum::<usize>() as f64 / b as f64;
        assert!((got.mean_fn - mean_fn).abs() < 1e-12);
        combos += 1;
        if mean_fn > 0.0 && cfg.threshold.is_some() {
            with_fn += 1;
            // Clustered data: detections mostly share the label.
            assert!(
                got.fn_precision.unwrap() > got.fn_chance.unwrap(),
                "{cfg:?}"
            );
        }
    }
    assert_eq!(combos, 96);
    assert!(
        with_fn >= 40,
        "false negatives were found in only {with_fn} thresholded combinations"
    );
}

#[test]
fn simclr_case_checks_by_hand() {
    // V = 2, B = 2, both views of image k equal to e_k; tau = 1; strategy none.
    // Anchor (0,0): positive (0,1) at similarity 1; the denominator has the
    // positive e^1 and two negatives e^0: l = ln(2 + e) - 1 for every anchor.
    let z = Tensor::from_slice(&[1.0f64, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0]).view([4, 2]);
    let cfg = LossConfig {
        temperature: 1.0,
        strategy: Strategy::None,
        ..LossConfig::default()
    };
    let got = fnc_loss(&z, 2, &cfg, None).unwrap().loss.double_value(&[]);
    let want = 2.0 * ((2.0 + std::f64::consts::E).ln() - 1.0);
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    // Elimination with every other image detected: negatives leave the
    // denominator, so l = ln(e) - 1 = 0.
    let cfg = LossConfig {
        temperature: 1.0,
        strategy: Strategy::Elimination,
        topk: 0,
        threshold: None,
        ..LossConfig::default()
    };
    let got = fnc_loss(&z, 2, &cfg, None).unwrap().loss.double_value(&[]);
    assert!(got.abs() < 1e-12, "{got}");
    // Attraction with the same detections: targets are all three other rows,
    // D = e + 2: l = -(1/3) (1 + 0 + 0 - 3 ln(2 + e)).
    let cfg = LossConfig {
        strategy: Strategy::Attraction,
        ..cfg
    };
    let got = fnc_loss(&z, 2, &cfg, None).unwrap().loss.double_value(&[]);
    let want = 2.0 * ((2.0 + std::f64::consts::E).ln() - 1.0 / 3.0);
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
}

#[test]
fn gradient_matches_finite_differences() {
    let (v, b) = (4usize, 6usize);
    let (rows, _) = clustered(v, b, 8, 2, 0.5, 7);
    let cfg = LossConfig {
        strategy: Strategy::Attraction,
        topk: 4,
        threshold: Some(0.6),
        ..LossConfig::default()
    };
    let z = tensor(&rows).set_requires_grad(true);
    let out = fnc_loss(&z, v as i64, &cfg, None).unwrap();
    assert!(
        out.mean_fn > 0.0,
        "the check should cover detected false negatives"
    );
    out.loss.backward();
    let grad = z.grad();
    let eps = 1e-6;
    for k in [0usize, 5, 17, 40, 77, 120, 191] {
        let (r, c) = ((k / 8) as i64, (k % 8) as i64);
        let f = |delta: f64| {
            let zz = tensor(&rows);
            let _ = zz.get(r).get(c).f_add_scalar_(delta).unwrap();
            fnc_loss(&zz, v as i64, &cfg, None)
                .unwrap()
                .loss
                .double_value(&[])
        };
        let numeric = (f(eps) - f(-eps)) / (2.0 * eps);
        let analytic = grad.double_value(&[r, c]);
        assert!(
            (numeric - analytic).abs() < 1e-5 * analytic.abs().max(1.0),
            "z[{r},{c}]: {analytic} vs {numeric}"
        );
    }
}

#[test]
fn bad_shapes_and_options_are_named() {
    let z = Tensor::zeros([7, 4], (Kind::Float, Device::Cpu));
    let e = fnc_loss(&z, 2, &LossConfig::default(), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--views"), "{e}");
    let z = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
    let cfg = LossConfig {
        support_set: SupportSet::Support,
        ..LossConfig::default()
    };
    assert!(fnc_loss(&z, 2, &cfg, None)
        .unwrap_err()
        .to_string()
        .contains("--fn-support"));
}

#[test]
fn shards_of_the_anchors_sum_to_the_loss_and_its_gradient() {
    use fnc_train::{fnc_loss_shard, Shard};
    let (v, b) = (5usize, 9usize);
    let (rows, labels) = clustered(v, b, 12, 3, 0.5, 1);
    let labels_t = Tensor::from_slice(&labels);
    for cfg in every_config().into_iter().step_by(7) {
        let z = tensor(&rows).set_requires_grad(true);
        let full = fnc_loss(&z, v as i64, &cfg, Some(&labels_t)).unwrap();
        let g_full = Tensor::run_backward(&[&full.loss], &[&z], false, false);
        let mut sum = 0.0;
        let mut grad = z.zeros_like();
        let mut detected = 0.0;
        for (first, count) in [(0, 4), (4, 1), (5, 4)] {
            let z = tensor(&rows).set_requires_grad(true);
            let part = fnc_loss_shard(
                &z,
                v as i64,
                &cfg,
                Some(&labels_t),
                Some(Shard { first, count }),
            )
            .unwrap();
            sum += part.loss.double_value(&[]);
            detected += part.counts.detected;
            grad += &Tensor::run_backward(&[&part.loss], &[&z], false, false)[0];
        }
        let want = full.loss.double_value(&[]);
        assert!(
            (sum - want).abs() <= 1e-12 * want.abs().max(1.0),
            "{cfg:?}: {sum} vs {want}"
        );
        assert_eq!(detected, full.counts.detected, "{cfg:?}");
        let d = (&grad - &g_full[0]).abs().max().double_value(&[]);
        assert!(d < 1e-12, "{cfg:?}: gradients differ by {d}");
    }
    let z = tensor(&rows);
    let bad = fnc_loss_shard(
        &z,
        v as i64,
        &LossConfig::default(),
        None,
        Some(Shard { first: 7, count: 3 }),
    );
    assert!(bad.is_err());
}
