//! The memory variant's loss against a plain double-precision implementation
//! (`common/`), on clustered embeddings with a partly filled bank; the FIFO
//! bank's order, capacity and state; and what gradients reach.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;

use common::*;
use fnc_train::{fnc_loss, fnc_loss_memory, Anchors, LossConfig, MemoryBank, Strategy};
use tch::{Device, Kind, Tensor};

const OPTS: (Kind, Device) = (Kind::Double, Device::Cpu);

fn rows_of(t: &Tensor) -> Vec<Vec<f64>> {
    let (n, d) = (t.size()[0], t.size()[1]);
    (0..n)
        .map(|r| (0..d).map(|c| t.double_value(&[r, c])).collect())
        .collect()
}

#[test]
fn every_option_combination_matches_the_reference() {
    let (v, b, d) = (4usize, 6usize, 10usize);
    let (z, labels) = clustered(v, b, d, 2, 0.5, 11);
    // The momentum encoder sees nearly what the online one sees.
    let (jitter, _) = clustered(v, b, d, 2, 0.5, 12);
    let zm: Vec<Vec<f64>> = z
        .iter()
        .zip(&jitter)
        .map(|(a, j)| a.iter().zip(j).map(|(x, y)| x + 0.05 * y).collect())
        .collect();
    // An earlier batch of other images from the same clusters fills the bank.
    let (earlier, earlier_labels) = clustered(v, b, d, 2, 0.5, 13);
    let labels_t = Tensor::from_slice(&labels);
    let mut combos = 0;
    let mut bank_hits = 0;
    for cfg in every_config() {
        let m = if cfg.anchors == Anchors::Main {
            2 * b
        } else {
            v * b
        };
        // Room for this batch and half of the earlier one.
        let capacity = m + m / 2;
        let mut bank = MemoryBank::new(capacity as i64, d as i64, OPTS);
        bank.push(
            &tensor(&earlier),
            &Tensor::from_slice(&earlier_labels),
            v as i64,
            &cfg,
        )
        .unwrap();
        assert_eq!(bank.filled(), m as i64);
        let older = &earlier[..m / 2];
        let want = reference_memory(&z, &zm, older, v, &cfg);
        let got = fnc_loss_memory(
            &tensor(&z),
            &tensor(&zm),
            &bank.view(),
            v as i64,
            &cfg,
            Some(&labels_t),
        )
        .unwrap();
        assert_matches(&got, &want, b, &cfg);
        if want.fnc.iter().flatten().any(|&c| c >= m) {
            bank_hits += 1;
        }
        combos += 1;
    }
    assert_eq!(combos, 96);
    assert!(
        bank_hits > 20,
        "detection should find false negatives among the bank's rows ({bank_hits})"
    );
}

#[test]
fn with_an_empty_bank_and_no_momentum_it_is_the_in_batch_loss() {
    let (v, b) = (4usize, 5usize);
    let (z, _) = clustered(v, b, 8, 2, 0.5, 3);
    let z = tensor(&z);
    for strategy in [Strategy::None, Strategy::Elimination, Strategy::Attraction] {
        let cfg = LossConfig {
            strategy,
            topk: 4,
            threshold: Some(0.6),
            ..LossConfig::default()
        };
        let bank = MemoryBank::new((16 * b) as i64, 8, OPTS);
        let a = fnc_loss(&z, v as i64, &cfg, None).unwrap();
        let m = fnc_loss_memory(&z, &z, &bank.view(), v as i64, &cfg, None).unwrap();
        let (a, m) = (a.loss.double_value(&[]), m.loss.double_value(&[]));
        assert!((a - m).abs() < 1e-12, "{strategy:?}: {a} vs {m}");
    }
}

#[test]
fn gradients_reach_the_online_embeddings_only() {
    let (v, b) = (4usize, 5usize);
    let (z, _) = clustered(v, b, 8, 2, 0.5, 5);
    let z = tensor(&z).set_requires_grad(true);
    let zm = (&z.detach() + 0.01).set_requires_grad(true);
    let bank = MemoryBank::new((8 * b) as i64, 8, OPTS);
    let out = fnc_loss_memory(
        &z,
        &zm,
        &bank.view(),
        v as i64,
        &LossConfig::default(),
        None,
    )
    .unwrap();
    out.loss.backward();
    assert!(z.grad().defined() && z.grad().abs().sum(Kind::Double).double_value(&[]) > 0.0);
    assert!(
        !zm.grad().defined(),
        "the momentum side must carry no gradient"
    );
}

#[test]
fn the_bank_is_a_fifo_with_its_labels_and_state() {
    let (v, b, d) = (2usize, 3usize, 4usize);
    let cfg = LossConfig::default();
    let mut bank = MemoryBank::new(10, d as i64, OPTS);
    let batch = |k: f64| Tensor::full([(v * b) as i64, d as i64], k, OPTS);
    let labels = |k: i64| Tensor::from_slice(&[k, k, k]);
    bank.push(&batch(1.0), &labels(1), v as i64, &cfg).unwrap();
    bank.push(&batch(2.0), &labels(2), v as i64, &cfg).unwrap();
    assert_eq!(bank.filled(), 10);
    let state: HashMap<String, Tensor> = bank.state().into_iter().collect();
    let keys = rows_of(&state["memory.keys"]);
    // Newest first: 6 rows of batch 2, then the 4 newest rows of batch 1
    // (rows are normalised: 4 equal components of 0.5).
    assert!(keys
        .iter()
        .all(|r| r.iter().all(|x| (x - 0.5).abs() < 1e-12)));
    let l: Vec<i64> = (0..10)
        .map(|i| state["memory.labels"].int64_value(&[i]))
        .collect();
    assert_eq!(l, [2, 2, 2, 2, 2, 2, 1, 1, 1, 1]);

    let mut restored = MemoryBank::new(10, d as i64, OPTS);
    restored.load_state(&state).unwrap();
    assert_eq!(restored.filled(), 10);
    let again: HashMap<String, Tensor> = restored.state().into_iter().collect();
    assert!(again["memory.keys"].equal(&state["memory.keys"]));

    let mut other = MemoryBank::new(12, d as i64, OPTS);
    let err = other.load_state(&state).unwrap_err();
    assert!(err.contains("memory.keys"), "{err}");
    let err = other.load_state(&HashMap::new()).unwrap_err();
    assert!(err.contains("--memory"), "{err}");
}

#[test]
fn a_bank_smaller_than_a_batch_is_refused_naming_the_flag() {
    let (v, b) = (4usize, 5usize);
    let (z, _) = clustered(v, b, 8, 2, 0.5, 5);
    let z = tensor(&z);
    let bank = MemoryBank::new((3 * b) as i64, 8, OPTS);
    let err = fnc_loss_memory(&z, &z, &bank.view(), v as i64, &LossConfig::default(), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--memory"), "{err}");
}
