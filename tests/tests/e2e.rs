//! The user's path through all four binaries, on a tiny synth dataset.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn run(bin: &str, args: &[&str]) -> String {
    let exe = assert_cmd::cargo::cargo_bin(bin);
    assert!(
        exe.exists(),
        "{} is not built (run the workspace's tests: make test)",
        exe.display()
    );
    let o = Command::new(&exe).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "{bin} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn synth_ingest_augment_train_eval() {
    let t = tempfile::tempdir().unwrap();
    let p = |name: &str| t.path().join(name).to_str().unwrap().to_string();
    run(
        "fnc-ingest",
        &[
            "synth",
            &p("synth"),
            "--classes",
            "3",
            "--per-class",
            "16",
            "--val-per-class",
            "10",
            "--size",
            "40",
        ],
    );
    run("fnc-ingest", &[&p("synth"), "--out", &p("out")]);
    run("fnc-ingest", &["verify", &p("out")]);
    run(
        "fnc-augment",
        &[
            "preview",
            "--shards",
            &p("out"),
            "--out",
            &p("preview.png"),
            "--images",
            "2",
            "--support",
            "2",
            "--size",
            "32",
            "--support-size",
            "16",
        ],
    );
    // One row per image, original + 2 main + 2 support views per row.
    let sheet = image::open(p("preview.png")).unwrap();
    assert!(
        sheet.width() > 5 * 32 && sheet.height() > 2 * 32,
        "{sheet:?}"
    );
    let (shards, run_dir) = (p("out"), p("run"));
    let mut train = fnc_tests::SMALL_MODEL.to_vec();
    train.extend([
        "--shards",
        &shards,
        "--batch-size",
        "16",
        "--steps",
        "4",
        "--device",
        "cpu",
        "--out",
        &run_dir,
    ]);
    run("fnc-train", &train);
    let j: serde_json::Value = serde_json::from_str(&run(
        "fnc-eval",
        &[
            "linear",
            "--run",
            &p("run"),
            "--baseline",
            "--epochs",
            "100",
            "--device",
            "cpu",
            "--json",
        ],
    ))
    .unwrap();
    // The encoder of the run's last checkpoint, on this dataset's images.
    assert!(
        j["checkpoint"].as_str().unwrap().ends_with("step-00000004"),
        "{j}"
    );
    assert_eq!(j["train_images"], 48, "{j}");
    assert_eq!(j["val_images"], 30, "{j}");
    // The features tell the classes apart above chance (1 in 3).
    let top1 = j["top1"].as_f64().unwrap();
    assert!(top1 > 40.0, "linear top-1 {top1}% on 3 classes: {j}");
    assert!(j["baseline"]["top1"].as_f64().is_some(), "{j}");
    let export = p("enc.safetensors");
    let out = run(
        "fnc-train",
        &["export", "--run", &run_dir, "--out", &export],
    );
    assert!(out.starts_with("wrote "), "{out}");
    assert!(std::fs::metadata(&export).unwrap().len() > 0);
}
