#![allow(dead_code, clippy::unwrap_used)]
//! Training runs of the small model on synthetic shards, and how two runs'
//! metrics and checkpoints are compared: the first step to float precision,
//! later steps against the noise floor of another thread count.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fnc_tests::{stderr, SMALL_MODEL};
use tch::Tensor;

mod first_step;
pub use first_step::first_step_verdict;

pub fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("fnc-train")
}

pub fn shards(dir: &Path) -> PathBuf {
    fnc_tests::synth_shards(dir, 4, 16, 2, 40, 3)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The small model at global batch 16 with detection on (top-k 2).
pub fn args<'a>(data: &'a Path, out: &'a Path, steps: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = SMALL_MODEL.to_vec();
    a.extend([
        "--shards",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--batch-size",
        "16",
        "--device",
        "cpu",
        "--workers",
        "1",
        "--warmup-epochs",
        "0",
        "--fn-topk",
        "2",
        "--seed",
        "3",
        "--lr",
        "0.05",
        "--steps",
        steps,
        "--checkpoint-every",
        "3",
        "--dist-timeout",
        "60",
    ]);
    a.extend(extra);
    a
}

pub fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

pub fn train(args: &[&str]) {
    let o = run(args);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// (loss, mean |F_i|, FN precision) per step of a run.
pub fn metrics(out: &Path) -> Vec<(f64, f64, Option<f64>)> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let m: fnc_train::StepMetrics = serde_json::from_str(l).unwrap();
            (m.loss, m.mean_fn, m.fn_precision)
        })
        .collect()
}

/// `host_syncs` of each step of a run.
pub fn host_syncs(out: &Path) -> Vec<u64> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<fnc_train::StepMetrics>(l)
                .unwrap()
                .host_syncs
        })
        .collect()
}

/// The model tensors of a run's latest checkpoint, by name.
pub fn params(out: &Path) -> Vec<(String, Tensor)> {
    let ck = fnc_train::RunDir::new(out).latest().unwrap().unwrap();
    let mut v = Tensor::read_safetensors(ck.dir().join("model.safetensors")).unwrap();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Per model tensor of two runs' latest checkpoints: (name, max |a - b|,
/// max |a|).
pub fn gaps(one: &Path, two: &Path) -> Vec<(String, f64, f64)> {
    let (pa, pb) = (params(one), params(two));
    assert_eq!(pa.len(), pb.len());
    pa.iter()
        .zip(&pb)
        .map(|((na, ta), (nb, tb))| {
            assert_eq!(na, nb);
            let diff = (ta - tb).abs().max().double_value(&[]);
            let scale = ta.abs().max().double_value(&[]).max(1e-3);
            (na.clone(), diff, scale)
        })
        .collect()
}

/// The first step of two runs (same weights, same batch, other summation
/// orders): losses and FN statistics agree to float precision, and so do the
/// parameters after the one update, up to ReLU kinks ([`first_step_verdict`]).
pub fn assert_same_first_step(one: &Path, two: &Path, what: &str) {
    let (a, b) = (metrics(one), metrics(two));
    assert_eq!((a.len(), b.len()), (1, 1), "{what}");
    assert!(
        (a[0].0 - b[0].0).abs() <= 1e-6 * a[0].0.abs(),
        "{what}: first loss {} vs {}",
        a[0].0,
        b[0].0
    );
    assert_eq!((a[0].1, a[0].2), (b[0].1, b[0].2), "{what}: FN statistics");
    if let Err(e) = first_step_verdict(&params(one), &params(two), true) {
        panic!("{what}: {e}");
    }
}

/// Later steps: ReLU masks flip on 1e-7 differences and runs that sum in
/// another order part ~10x per step, so `two` is compared with `one` against
/// the gap between `one` and `noise` (the same run with another thread
/// count): per step loss, and per tensor against the run's largest relative
/// gap, at most 10x that measured floor.
pub fn assert_within_noise(one: &Path, two: &Path, noise: &Path, what: &str) {
    let (a, b, n) = (metrics(one), metrics(two), metrics(noise));
    assert_eq!((a.len(), b.len()), (n.len(), n.len()), "{what}");
    for (k, ((x, y), z)) in a.iter().zip(&b).zip(&n).enumerate() {
        let floor = (x.0 - z.0).abs().max(1e-6 * x.0.abs());
        assert!(
            (x.0 - y.0).abs() <= 10.0 * floor,
            "{what}: step {} loss {} vs {} (noise floor {floor})",
            k + 1,
            x.0,
            y.0
        );
    }
    // The noise is the run's, not each tensor's: a ReLU kink crossed in one
    // run and not in the other moves some tensors far more than others, and
    // which ones differs from pair to pair. So each tensor's floor is the
    // largest relative gap any tensor shows between the two thread counts, at
    // this tensor's scale (and never below its own gap).
    let floors = gaps(one, noise);
    let relative = floors
        .iter()
        .map(|(_, d, scale)| d / scale)
        .fold(1e-6, f64::max);
    for ((name, diff, scale), (_, noise_diff, _)) in gaps(one, two).into_iter().zip(floors) {
        let floor = noise_diff.max(relative * scale);
        assert!(
            diff <= 10.0 * floor,
            "{what}: {name} differs by {diff} (scale {scale}; noise floor {floor}, \
             the run's relative noise {relative})"
        );
    }
}

/// Runs the 1-process arm with libtorch's thread count set to `threads`.
pub fn train_threads(args: &[&str], threads: &str) {
    let o = Command::new(bin())
        .args(args)
        .env("OMP_NUM_THREADS", threads)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}
