#![allow(clippy::unwrap_used)]
//! A run's TensorBoard events, read back by the `tensorboard` Python package's
//! event reader: every scalar of `metrics.jsonl` under its tag, each step once
//! after a resume from an older checkpoint, the config, the sheet and reports,
//! and fnc-eval's results at the checkpoint's step.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use fnc_tests::{stderr, SMALL_MODEL};

/// The tag of each key of a `metrics.jsonl` line (every key but `step`).
const TAGS: [(&str, &str); 13] = [
    ("loss", "train/loss"),
    ("lr", "train/lr"),
    ("epoch", "train/epoch"),
    ("images_per_s", "perf/images_per_s"),
    ("data_wait", "perf/data_wait"),
    ("host_syncs", "perf/host_syncs"),
    ("comm", "perf/comm"),
    ("mean_fn", "fn/mean_size"),
    ("fn_precision", "fn/precision"),
    ("fn_chance", "fn/chance"),
    ("fn_recall", "fn/recall"),
    ("knn_top1", "monitor/knn_top1"),
    ("bad_records", "data/bad_records"),
];

/// Reads every event file of `run` with tensorboard's EventAccumulator
/// (keeping all events, purging nothing) and prints JSON: scalars as
/// {tag: [[step, value]]}, and the steps of each image and text tag.
const READER: &str = r#"
import json, sys
from tensorboard.backend.event_processing import event_accumulator as ea
acc = ea.EventAccumulator(sys.argv[1], size_guidance={ea.SCALARS: 0, ea.IMAGES: 0, ea.TENSORS: 0},
                          purge_orphaned_data=False)
acc.Reload()
tags = acc.Tags()
out = {"scalars": {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]},
       "images": {t: [[e.step, e.width, e.height] for e in acc.Images(t)] for t in tags["images"]},
       "texts": {t: [[e.step, e.tensor_proto.string_val[0].decode()] for e in acc.Tensors(t)]
                 for t in tags["tensors"]}}
print(json.dumps(out))
"#;

fn python() -> std::path::PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    // `make test` always creates the venv (the build links its libtorch and
    // installs tensorboard), so a missing one is a broken set-up, not a skip.
    assert!(
        python.exists(),
        "{} is absent: run the tests with `make test`",
        python.display()
    );
    python
}

fn read_events(run: &Path) -> serde_json::Value {
    let o = Command::new(python())
        .args(["-c", READER, run.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "tensorboard's reader: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Trains the small model on `data` into `run` for `steps` steps, with `extra`.
fn train_small(data: &Path, run: &Path, steps: &str, extra: &[&str]) {
    let mut a: Vec<&str> = SMALL_MODEL.to_vec();
    a.extend([
        "--shards",
        data.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--batch-size",
        "16",
        "--device",
        "cpu",
        "--workers",
        "1",
        "--fn-topk",
        "2",
        "--steps",
        steps,
    ]);
    a.extend(extra);
    train(&a);
}

fn train(args: &[&str]) {
    let o = Command::new(assert_cmd::cargo::cargo_bin("fnc-train"))
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn tensorboard_reads_every_scalar_of_metrics_once_after_a_resume() {
    let t = tempfile::tempdir().unwrap();
    let data = fnc_tests::synth_shards(t.path(), 4, 16, 4, 40, 3);
    let run = t.path().join("run");
    let every = ["--checkpoint-every", "2", "--knn-every", "2"];
    train_small(&data, &run, "4", &every);
    // Back to step 2 and on to 6: steps 3 and 4 are redone, and must not
    // appear twice in the events either.
    let older = run.join("checkpoints/step-00000002");
    let resume = [&every[..], &["--resume-from", older.to_str().unwrap()]].concat();
    train_small(&data, &run, "6", &resume);

    let o = Command::new(assert_cmd::cargo::cargo_bin("fnc-eval"))
        .args(["knn", "--run", run.to_str().unwrap(), "--device", "cpu"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    let ev = read_events(&run);
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    let tags: BTreeMap<&str, &str> = TAGS.into_iter().collect();
    let mut want: BTreeMap<String, Vec<(u64, f32)>> = BTreeMap::new();
    for l in &lines {
        let step = l["step"].as_u64().unwrap();
        for (k, v) in l.as_object().unwrap() {
            if k == "step" || v.is_null() {
                continue;
            }
            let tag = tags
                .get(k.as_str())
                .unwrap_or_else(|| panic!("metrics.jsonl key {k} has no TensorBoard tag"));
            want.entry(tag.to_string())
                .or_default()
                .push((step, v.as_f64().unwrap() as f32));
        }
    }
    assert!(want.contains_key("monitor/knn_top1") && want.contains_key("fn/precision"));
    for (tag, values) in &want {
        let got: Vec<(u64, f32)> = ev["scalars"][tag]
            .as_array()
            .unwrap_or_else(|| panic!("no events of {tag}"))
            .iter()
            .map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap() as f32))
            .collect();
        assert_eq!(&got, values, "{tag}: events against metrics.jsonl");
    }
    // The sheet at the start, the report at each checkpoint, the config text.
    assert_eq!(ev["images"]["augment/views"][0][0], 0);
    let reports: Vec<u64> = ev["images"]["report"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_u64().unwrap())
        .collect();
    assert_eq!(reports, vec![2, 4, 6]);
    let config = ev["texts"]["config"].to_string();
    assert!(
        config.contains("fn_topk") || config.contains("topk"),
        "{config}"
    );
    // fnc-eval's result at the latest checkpoint's step.
    let knn = &ev["scalars"]["eval/knn/top1_k20"];
    assert_eq!(knn[0][0], 6, "{knn}");
    let v = knn[0][1].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&v));
}

#[test]
fn tensorboard_false_writes_no_events() {
    let t = tempfile::tempdir().unwrap();
    let data = fnc_tests::synth_shards(t.path(), 4, 16, 4, 40, 3);
    let run = t.path().join("run");
    train_small(&data, &run, "2", &["--tensorboard", "false"]);
    let names: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n == "metrics.jsonl"));
    assert!(!names.iter().any(|n| n.contains("tfevents")), "{names:?}");
}

/// A dataset whose labelled held-out split is `test/` (no `val/`), as CIFAR-10
/// ships: the k-NN monitor and fnc-eval evaluate on it.
#[test]
fn a_test_split_is_evaluated_when_there_is_no_val() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    let opts = fnc_ingest::SynthOptions {
        classes: 4,
        per_class: 16,
        val_per_class: 4,
        size: 40,
        seed: 3,
    };
    fnc_ingest::synth(&src, &opts).unwrap();
    std::fs::rename(src.join("val"), src.join("test")).unwrap();
    let data = t.path().join("shards");
    let report = fnc_ingest::ingest(
        &fnc_ingest::IngestOptions::new(&src, &data),
        &fnc_ingest::NoProgress,
    )
    .unwrap();
    assert_eq!(report.splits["test"].records, 16);
    assert!(!report.splits.contains_key("val"));
    let run = t.path().join("run");
    train_small(&data, &run, "2", &["--knn-every", "2"]);
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(metrics.contains("knn_top1"), "{metrics}");
    let o = Command::new(assert_cmd::cargo::cargo_bin("fnc-eval"))
        .args([
            "knn",
            "--run",
            run.to_str().unwrap(),
            "--device",
            "cpu",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(j["top1"]["k20"].as_f64().is_some(), "{j}");
}
