//! Statistics of the random draws, with tolerances that catch a wrong range or
//! probability (n = 40 000 draws: a rate's standard error is <= 0.0025).
#![allow(clippy::unwrap_used)]

use fnc_augment::{draw_view, Recipe, ViewRng};

const N: u64 = 40_000;

fn draws(w: u32, h: u32, recipe: &Recipe) -> Vec<fnc_augment::ViewDraw> {
    (0..N)
        .map(|i| draw_view(&mut ViewRng::new(11, 0, i / 10, i % 10), w, h, recipe))
        .collect()
}

fn rate(n: usize) -> f64 {
    n as f64 / N as f64
}

#[test]
fn probabilities_match_the_recipe() {
    let d = draws(500, 375, &Recipe::default());
    let flip = rate(d.iter().filter(|v| v.flip).count());
    let jit = rate(d.iter().filter(|v| v.jitter.is_some()).count());
    let grey = rate(d.iter().filter(|v| v.grey).count());
    let blur = rate(d.iter().filter(|v| v.blur_sigma.is_some()).count());
    let sol = rate(d.iter().filter(|v| v.solarize).count());
    for (name, got, want) in [
        ("flip", flip, 0.5),
        ("jitter", jit, 0.8),
        ("grey", grey, 0.2),
        ("blur", blur, 0.5),
        ("solarize", sol, 0.0),
    ] {
        assert!(
            (got - want).abs() < 0.012,
            "{name}: rate {got:.4}, expected {want}"
        );
    }
    let d = draws(
        500,
        375,
        &Recipe {
            solarize_p: 0.2,
            ..Recipe::default()
        },
    );
    let sol = rate(d.iter().filter(|v| v.solarize).count());
    assert!((sol - 0.2).abs() < 0.012, "solarize {sol}");
}

#[test]
fn jitter_factors_cover_their_ranges_uniformly() {
    let d = draws(500, 375, &Recipe::default());
    let js: Vec<_> = d.iter().filter_map(|v| v.jitter).collect();
    let check = |name: &str, xs: Vec<f64>, lo: f64, hi: f64| {
        let min = xs.iter().cloned().fold(f64::MAX, f64::min);
        let max = xs.iter().cloned().fold(f64::MIN, f64::max);
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let span = hi - lo;
        assert!(
            min >= lo && max <= hi,
            "{name}: [{min}, {max}] outside [{lo}, {hi}]"
        );
        assert!(
            min < lo + 0.01 * span && max > hi - 0.01 * span,
            "{name}: [{min}, {max}] does not reach [{lo}, {hi}]"
        );
        assert!(
            (mean - (lo + hi) / 2.0).abs() < 0.01 * span,
            "{name}: mean {mean}"
        );
        // Uniform: a quarter of the draws in each quarter of the range.
        let q = xs.iter().filter(|&&x| x < lo + span / 4.0).count() as f64 / xs.len() as f64;
        assert!((q - 0.25).abs() < 0.015, "{name}: {q} in the first quarter");
    };
    check(
        "brightness",
        js.iter().map(|j| j.brightness as f64).collect(),
        0.2,
        1.8,
    );
    check(
        "contrast",
        js.iter().map(|j| j.contrast as f64).collect(),
        0.2,
        1.8,
    );
    check(
        "saturation",
        js.iter().map(|j| j.saturation as f64).collect(),
        0.2,
        1.8,
    );
    check("hue", js.iter().map(|j| j.hue as f64).collect(), -0.2, 0.2);
    // Every one of the 24 orders, about equally often.
    let mut counts = std::collections::HashMap::new();
    for j in &js {
        let mut o = j.order;
        o.sort();
        assert_eq!(o, [0, 1, 2, 3]);
        *counts.entry(j.order).or_insert(0usize) += 1;
    }
    assert_eq!(counts.len(), 24);
    let expect = js.len() as f64 / 24.0;
    for (o, c) in counts {
        assert!(
            (c as f64 - expect).abs() < 0.15 * expect,
            "order {o:?}: {c} vs {expect}"
        );
    }
    let sigmas: Vec<f64> = d
        .iter()
        .filter_map(|v| v.blur_sigma)
        .map(|s| s as f64)
        .collect();
    check("blur sigma", sigmas, 0.1, 2.0);
}

#[test]
fn crops_follow_torchvision_semantics() {
    let (w, h) = (500u32, 375u32);
    let d = draws(w, h, &Recipe::default());
    let area = (w * h) as f64;
    let mut fracs = Vec::new();
    let mut log_ratios = Vec::new();
    for v in &d {
        let c = v.crop;
        assert!(
            c.w >= 1 && c.h >= 1 && c.x + c.w <= w && c.y + c.h <= h,
            "{c:?}"
        );
        fracs.push((c.w * c.h) as f64 / area);
        log_ratios.push((c.w as f64 / c.h as f64).ln());
    }
    // Rounding of sides moves the area a little outside [0.08, 1].
    let min = fracs.iter().cloned().fold(1.0, f64::min);
    assert!(min > 0.075 && min < 0.085, "smallest area fraction {min}");
    // Below 0.5 every aspect fits a 4:3 image, so the first attempt is taken and
    // the density there is flat; large areas are often rejected and redrawn, which
    // only adds mass below.
    let small: Vec<f64> = fracs.iter().cloned().filter(|&f| f < 0.5).collect();
    let p_small = small.len() as f64 / N as f64;
    assert!(
        p_small > 0.42 / 0.92 - 0.01 && p_small < 0.75,
        "P(area < 0.5) = {p_small}"
    );
    let lower = small.iter().filter(|&&f| f < 0.29).count() as f64 / small.len() as f64;
    assert!(
        (lower - 0.5).abs() < 0.02,
        "area not flat over [0.08, 0.5): {lower} below 0.29"
    );
    let top = fracs.iter().cloned().fold(0.0, f64::max);
    assert!(top > 0.95, "largest area fraction {top}");
    let lr = log_ratios;
    let (lo, hi) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
    // Accepted crops keep the sampled ratio up to side rounding.
    let inside = lr
        .iter()
        .filter(|&&r| r >= lo - 0.05 && r <= hi + 0.05)
        .count();
    assert!(inside as f64 / N as f64 > 0.995, "{inside} ratios in range");
    // Among crops that always fit (area < 0.5) the log ratio is uniform: mean 0,
    // a quarter of them in the lowest quarter of the range.
    let lr_small: Vec<f64> = lr
        .iter()
        .zip(&fracs)
        .filter(|(_, &f)| f < 0.45)
        .map(|(&r, _)| r)
        .collect();
    let mean = lr_small.iter().sum::<f64>() / lr_small.len() as f64;
    assert!(mean.abs() < 0.01, "mean log ratio {mean}");
    let q = lr_small
        .iter()
        .filter(|&&r| r < lo + (hi - lo) / 4.0)
        .count() as f64
        / lr_small.len() as f64;
    assert!(
        (q - 0.25).abs() < 0.02,
        "{q} of log ratios in the lowest quarter"
    );
    // Crops land everywhere: centres spread over the image.
    let left = d
        .iter()
        .filter(|v| (v.crop.x + v.crop.w / 2) < w / 2)
        .count() as f64
        / N as f64;
    assert!(
        (left - 0.5).abs() < 0.02,
        "{left} of crop centres in the left half"
    );
}

#[test]
fn the_fallback_is_a_centre_crop_clamped_to_the_ratio() {
    // A 1000x10 strip: no sampled crop fits, so every draw falls back.
    let d = draws(1000, 10, &Recipe::default());
    for v in d.iter().take(100) {
        assert_eq!((v.crop.w, v.crop.h), (13, 10), "{:?}", v.crop);
        assert_eq!(v.crop.x, (1000 - 13) / 2);
    }
}
