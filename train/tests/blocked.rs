//! The loss in blocks of anchor rows (`fnc_loss_grad`, `fnc_loss_memory_grad`)
//! against the unblocked loss and its autograd gradient: same value (1e-10),
//! same gradient (1e-10; keys detached or a block dropped would break it),
//! same counts and false negatives, for every strategy, anchor and support
//! set, detection and the (noisy) oracle, with and without shards, block sizes
//! that do and do not divide the batch.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use fnc_train::{
    fnc_loss_grad, fnc_loss_memory_grad, fnc_loss_memory_shard, fnc_loss_shard, Anchors, Detect,
    LossConfig, LossOutput, MemoryBank, Shard, Strategy, SupportSet,
};
use tch::{Device, Kind, Tensor};

const OPTS: (Kind, Device) = (Kind::Double, Device::Cpu);

/// Block sizes in anchor rows: one image a block (1), blocks that do not
/// divide the batch (5, 7 rows: 1 image of 4 anchor views, 2 or 3 of 2; 20:
/// 5 images), and one block (0).
const BLOCKS: [i64; 5] = [1, 5, 7, 20, 0];

/// libtorch's generator is global and tests run on parallel threads: each
/// test holds this while it seeds and draws.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// Strategies x anchors x support sets x (detection, oracle, noisy oracle).
fn configs() -> Vec<LossConfig> {
    let mut out = Vec::new();
    for strategy in [Strategy::None, Strategy::Elimination, Strategy::Attraction] {
        for anchors in [Anchors::All, Anchors::Main] {
            for support_set in [SupportSet::All, SupportSet::Support] {
                for (detect, oracle_precision) in [
                    (Detect::Support, 1.0),
                    (Detect::Oracle, 1.0),
                    (Detect::Oracle, 0.6),
                ] {
                    out.push(LossConfig {
                        strategy,
                        anchors,
                        support_set,
                        detect,
                        oracle_precision,
                        topk: 4,
                        threshold: Some(0.5),
                        ..LossConfig::default()
                    });
                }
            }
        }
    }
    out
}

/// The blocked result equals the unblocked one: value and gradient to 1e-10,
/// counts, statistics and false negatives exactly; its loss is detached.
fn assert_same(got: &(LossOutput, Tensor), want: &(LossOutput, Tensor), what: &str) {
    let (g, w) = (got.0.loss.double_value(&[]), want.0.loss.double_value(&[]));
    assert!((g - w).abs() <= 1e-10, "{what}: loss {g} vs {w}");
    assert!(!got.0.loss.requires_grad(), "{what}: the loss is detached");
    assert_eq!(got.1.size(), want.1.size(), "{what}");
    assert_eq!(got.1.kind(), want.1.kind(), "{what}");
    let d = (&got.1 - &want.1).abs().max().double_value(&[]);
    assert!(d <= 1e-10, "{what}: gradients differ by {d}");
    assert_eq!(got.0.counts, want.0.counts, "{what}");
    assert_eq!(
        (
            got.0.mean_fn,
            got.0.fn_precision,
            got.0.fn_chance,
            got.0.fn_recall
        ),
        (
            want.0.mean_fn,
            want.0.fn_precision,
            want.0.fn_chance,
            want.0.fn_recall
        ),
        "{what}"
    );
    assert!(
        got.0.false_negatives.equal(&want.0.false_negatives),
        "{what}: false negatives"
    );
}

/// The unblocked loss of `loss` (a closure of the leaf) and its autograd
/// gradient, the generator seeded first.
fn unblocked(z: &Tensor, loss: impl Fn(&Tensor) -> LossOutput) -> (LossOutput, Tensor) {
    let leaf = z.detach().copy().set_requires_grad(true);
    tch::manual_seed(7);
    let out = loss(&leaf);
    let g = Tensor::run_backward(&[&out.loss], &[&leaf], false, false);
    (out, g[0].shallow_clone())
}

#[test]
fn blocks_give_the_unblocked_loss_and_gradient() {
    let _rng = rng_lock();
    let v = 4usize;
    let mut checked = 0;
    let mut with_fn = 0;
    for b in [12usize, 11] {
        let (rows, labels) = clustered(v, b, 8, 3, 0.5, 21);
        let z = tensor(&rows);
        let labels = Tensor::from_slice(&labels);
        // B = 11 (prime: no block size divides it) on a third of the configs.
        let step = if b == 11 { 3 } else { 1 };
        for cfg in configs().into_iter().step_by(step) {
            for shard in [None, Some(Shard { first: 3, count: 7 })] {
                let want = unblocked(&z, |leaf| {
                    fnc_loss_shard(leaf, v as i64, &cfg, Some(&labels), shard).unwrap()
                });
                with_fn += usize::from(want.0.counts.detected > 0.0);
                for rows_per_block in BLOCKS {
                    tch::manual_seed(7);
                    let got =
                        fnc_loss_grad(&z, v as i64, &cfg, Some(&labels), shard, rows_per_block)
                            .unwrap();
                    let what = format!("B {b} {cfg:?} {shard:?} block {rows_per_block}");
                    assert_same(&got, &want, &what);
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, (36 + 12) * 2 * BLOCKS.len());
    assert!(
        with_fn > 60,
        "false negatives should be found in most cases ({with_fn})"
    );
}

#[test]
fn blocks_of_the_memory_variant_give_its_loss_and_gradient() {
    let _rng = rng_lock();
    let (v, b, d) = (4usize, 12usize, 8usize);
    let (rows, labels) = clustered(v, b, d, 3, 0.5, 31);
    let (jitter, _) = clustered(v, b, d, 3, 0.5, 32);
    let (earlier, earlier_labels) = clustered(v, b, d, 3, 0.5, 33);
    let z = tensor(&rows);
    let zm = &z + tensor(&jitter) * 0.05;
    let labels = Tensor::from_slice(&labels);
    let mut checked = 0;
    for cfg in configs() {
        // Room for three batches, one of them pushed: partly filled.
        let m = cfg.anchor_views(v as i64) * b as i64;
        let mut bank = MemoryBank::new(3 * m, d as i64, OPTS);
        bank.push(
            &tensor(&earlier),
            &Tensor::from_slice(&earlier_labels),
            v as i64,
            &cfg,
        )
        .unwrap();
        assert!(bank.filled() < 2 * m);
        for shard in [None, Some(Shard { first: 2, count: 9 })] {
            let want = unblocked(&z, |leaf| {
                fnc_loss_memory_shard(
                    leaf,
                    &zm,
                    &bank.view(),
                    v as i64,
                    &cfg,
                    Some(&labels),
                    shard,
                )
                .unwrap()
            });
            for rows_per_block in BLOCKS {
                tch::manual_seed(7);
                let got = fnc_loss_memory_grad(
                    &z,
                    &zm,
                    &bank.view(),
                    v as i64,
                    &cfg,
                    Some(&labels),
                    shard,
                    rows_per_block,
                )
                .unwrap();
                let what = format!("memory {cfg:?} {shard:?} block {rows_per_block}");
                assert_same(&got, &want, &what);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 36 * 2 * BLOCKS.len());
}

#[test]
fn without_labels_and_in_float32_the_blocks_agree_too() {
    let _rng = rng_lock();
    let (v, b) = (3usize, 10usize);
    let (rows, _) = clustered(v, b, 6, 2, 0.5, 41);
    let z = tensor(&rows).to_kind(Kind::Float);
    let cfg = LossConfig {
        topk: 3,
        threshold: Some(0.5),
        ..LossConfig::default()
    };
    let want = unblocked(&z, |leaf| {
        fnc_loss_shard(leaf, v as i64, &cfg, None, None).unwrap()
    });
    let got = fnc_loss_grad(&z, v as i64, &cfg, None, None, 4).unwrap();
    assert_eq!(got.1.kind(), Kind::Float);
    assert_eq!(got.0.fn_precision, None);
    let (g, w) = (got.0.loss.double_value(&[]), want.0.loss.double_value(&[]));
    assert!((g - w).abs() <= 1e-5 * w.abs(), "{g} vs {w}");
    let dg = (&got.1 - &want.1).abs().max().double_value(&[]);
    assert!(dg <= 1e-5, "gradients differ by {dg}");
    assert!(got.0.false_negatives.equal(&want.0.false_negatives));
}

#[test]
fn a_negative_block_and_a_shard_outside_the_batch_are_refused() {
    let (rows, _) = clustered(2, 4, 4, 2, 0.5, 51);
    let z = tensor(&rows);
    let cfg = LossConfig::default();
    let e = fnc_loss_grad(&z, 2, &cfg, None, None, -1).unwrap_err();
    assert!(e.to_string().contains("--loss-block"), "{e}");
    let bad = LossConfig {
        block: Some(-3),
        ..LossConfig::default()
    };
    let e = bad.validate(2).unwrap_err();
    assert!(e.to_string().contains("--loss-block"), "{e}");
    let e = fnc_loss_grad(&z, 2, &cfg, None, Some(Shard { first: 3, count: 2 }), 1);
    assert!(e.is_err());
}
