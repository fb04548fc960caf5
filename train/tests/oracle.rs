//! Oracle detection (`--fn-detect oracle`): exactly the same-label candidates,
//! the filtered oracle, the noisy oracle's precision and |F_i|, FN recall, the
//! memory variant, and the options' checks.
#![allow(clippy::unwrap_used)]

use fnc_train::{fnc_loss, fnc_loss_memory, Detect, LossConfig, MemoryBank, Strategy};
use tch::{Device, Kind, Tensor};

const OPTS: (Kind, Device) = (Kind::Double, Device::Cpu);

/// `v` views of `b` images with labels `i % classes`, random embeddings.
/// libtorch's generator is global and tests run on parallel threads: each test
/// holds this while it seeds and draws, so draws repeat exactly.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

fn batch(v: i64, b: i64, classes: i64, seed: i64) -> (Tensor, Tensor) {
    tch::manual_seed(seed);
    let z = Tensor::randn([v * b, 16], OPTS);
    let labels = Tensor::arange(b, (Kind::Int64, Device::Cpu)).remainder(classes);
    (z, labels)
}

/// `[B, V*B]`: key (v, j) is a same-label candidate of image i.
fn same_label_candidates(labels: &Tensor, v: i64) -> Tensor {
    let b = labels.size()[0];
    let keys = labels.repeat([v]);
    let same = labels.unsqueeze(1).eq_tensor(&keys.unsqueeze(0));
    let img = Tensor::arange(b, (Kind::Int64, Device::Cpu));
    let key_img = Tensor::arange(v * b, (Kind::Int64, Device::Cpu)).remainder(b);
    let other = img.unsqueeze(1).ne_tensor(&key_img.unsqueeze(0));
    same.logical_and(&other)
}

fn oracle(precision: f64, filter: bool) -> LossConfig {
    LossConfig {
        detect: Detect::Oracle,
        oracle_precision: precision,
        oracle_filter: filter,
        ..LossConfig::default()
    }
}

fn count(t: &Tensor) -> i64 {
    t.sum(Kind::Int64).int64_value(&[])
}

#[test]
fn the_oracle_finds_exactly_the_same_label_candidates() {
    let _rng = rng_lock();
    let (v, b) = (4, 12);
    let (z, labels) = batch(v, b, 3, 1);
    let out = fnc_loss(&z, v, &oracle(1.0, false), Some(&labels)).unwrap();
    let want = same_label_candidates(&labels, v);
    assert!(out.false_negatives.equal(&want));
    assert_eq!(out.fn_precision, Some(1.0));
    assert_eq!(out.fn_recall, Some(1.0));
    // 3 other images of the same label, 4 views each.
    assert!((out.mean_fn - 12.0).abs() < 1e-12, "{}", out.mean_fn);
    // Attraction with the true false negatives is another loss than SimCLR's.
    let none = LossConfig {
        strategy: Strategy::None,
        ..oracle(1.0, false)
    };
    let simclr = fnc_loss(&z, v, &none, Some(&labels)).unwrap();
    assert!(
        (out.loss.double_value(&[]) - simclr.loss.double_value(&[])).abs() > 1e-3,
        "F_i must enter the loss"
    );
    // Detection from the support set finds some of them at best.
    let support = fnc_loss(&z, v, &LossConfig::default(), Some(&labels)).unwrap();
    assert!(support.fn_recall.unwrap() < 1.0);
}

#[test]
fn the_filtered_oracle_keeps_the_top_k_same_label_candidates() {
    let _rng = rng_lock();
    let (v, b) = (4, 12);
    let (z, labels) = batch(v, b, 3, 2);
    let cfg = LossConfig {
        topk: 5,
        threshold: None,
        ..oracle(1.0, true)
    };
    let out = fnc_loss(&z, v, &cfg, Some(&labels)).unwrap();
    let f = &out.false_negatives;
    let same = same_label_candidates(&labels, v);
    assert_eq!(
        count(&f.logical_and(&same.logical_not())),
        0,
        "only right ones"
    );
    let per_row = f.sum_dim_intlist([1i64].as_slice(), false, Kind::Int64);
    assert!(per_row.eq(5).all().int64_value(&[]) == 1, "{per_row}");
    assert_eq!(out.fn_precision, Some(1.0));
    assert!((out.fn_recall.unwrap() - 5.0 / 12.0).abs() < 1e-12);
}

#[test]
fn the_noisy_oracle_has_precision_p_and_keeps_the_size_of_f() {
    let _rng = rng_lock();
    let (v, b) = (4, 64);
    let (z, labels) = batch(v, b, 4, 3);
    let exact = same_label_candidates(&labels, v);
    let sizes = exact.sum_dim_intlist([1i64].as_slice(), false, Kind::Int64);
    for p in [0.0, 0.3, 0.7, 0.9] {
        tch::manual_seed(7);
        let out = fnc_loss(&z, v, &oracle(p, false), Some(&labels)).unwrap();
        let f = &out.false_negatives;
        let got = f.sum_dim_intlist([1i64].as_slice(), false, Kind::Int64);
        assert!(got.equal(&sizes), "p {p}: |F_i| changed");
        // 64 x 60 members: the standard error of the precision is < 0.008.
        let prec = out.fn_precision.unwrap();
        assert!((prec - p).abs() < 0.03, "p {p}: measured {prec}");
        let right = count(&f.logical_and(&exact));
        assert!((right as f64 / count(f) as f64 - prec).abs() < 1e-12);
        // Never the image itself.
        let img = Tensor::arange(b, (Kind::Int64, Device::Cpu));
        let key_img = Tensor::arange(v * b, (Kind::Int64, Device::Cpu)).remainder(b);
        let own = img.unsqueeze(1).eq_tensor(&key_img.unsqueeze(0));
        assert_eq!(count(&f.logical_and(&own)), 0);
    }
    // The same generator state gives the same draws.
    tch::manual_seed(9);
    let a = fnc_loss(&z, v, &oracle(0.5, false), Some(&labels)).unwrap();
    tch::manual_seed(9);
    let b2 = fnc_loss(&z, v, &oracle(0.5, false), Some(&labels)).unwrap();
    assert!(a.false_negatives.equal(&b2.false_negatives));
}

#[test]
fn the_oracle_finds_same_label_rows_of_the_memory_bank() {
    let _rng = rng_lock();
    let (v, b) = (4, 8);
    let (z, labels) = batch(v, b, 2, 4);
    let (earlier, earlier_labels) = batch(v, b, 2, 5);
    let mut bank = MemoryBank::new(4 * v * b, 16, OPTS);
    let cfg = oracle(1.0, false);
    bank.push(&earlier, &earlier_labels, v, &cfg).unwrap();
    let zm = &z + 0.01;
    let out = fnc_loss_memory(&z, &zm, &bank.view(), v, &cfg, Some(&labels)).unwrap();
    assert_eq!(out.fn_precision, Some(1.0));
    assert_eq!(out.fn_recall, Some(1.0));
    // In-batch: 3 other same-label images x 4 views; bank: 4 x 4 rows.
    assert!(
        (out.mean_fn - (12.0 + 16.0)).abs() < 1e-12,
        "{}",
        out.mean_fn
    );
}

#[test]
fn oracle_options_are_checked() {
    let _rng = rng_lock();
    let (z, labels) = batch(4, 6, 2, 6);
    let e = fnc_loss(&z, 4, &oracle(1.0, false), None).unwrap_err();
    assert!(e.to_string().contains("--fn-detect"), "{e}");
    let noisy_support = LossConfig {
        oracle_precision: 0.5,
        ..LossConfig::default()
    };
    let e = fnc_loss(&z, 4, &noisy_support, Some(&labels)).unwrap_err();
    assert!(e.to_string().contains("--fn-oracle-precision"), "{e}");
    let e = fnc_loss(&z, 4, &oracle(1.5, false), Some(&labels)).unwrap_err();
    assert!(e.to_string().contains("--fn-oracle-precision"), "{e}");
}

#[test]
fn the_noisy_oracle_of_shards_is_the_noisy_oracle_of_the_whole_batch() {
    use fnc_train::{fnc_loss_shard, Shard};
    let _rng = rng_lock();
    let (v, b) = (4, 12);
    let (z, labels) = batch(v, b, 3, 5);
    for cfg in [oracle(0.5, false), oracle(0.3, true)] {
        tch::manual_seed(11);
        let full = fnc_loss(&z, v, &cfg, Some(&labels)).unwrap();
        let mut sum = 0.0;
        for (first, count) in [(0, 6), (6, 6)] {
            // Every rank seeds the same and draws for the global batch.
            tch::manual_seed(11);
            let part =
                fnc_loss_shard(&z, v, &cfg, Some(&labels), Some(Shard { first, count })).unwrap();
            assert!(
                part.false_negatives
                    .equal(&full.false_negatives.narrow(0, first, count)),
                "{cfg:?}: the shard's F_i are the whole batch's rows {first}.."
            );
            sum += part.loss.double_value(&[]);
        }
        let want = full.loss.double_value(&[]);
        assert!(
            (sum - want).abs() <= 1e-12 * want.abs(),
            "{cfg:?}: {sum} vs {want}"
        );
    }
}
