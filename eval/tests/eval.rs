//! fnc-eval on the CPU: the probe and k-NN on features with known structure, and
//! the commands end to end on a tiny synth run.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fnc_eval::{accuracy, linear_probe, LinearConfig};
use fnc_tests::{stderr, SMALL_MODEL};
use tch::{Device, Kind, Tensor};

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("fnc-eval")
}

fn eval(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

/// Features = a class direction plus noise (informative), or noise alone.
fn features(n: i64, classes: i64, informative: bool, seed: i64) -> (Tensor, Tensor) {
    tch::manual_seed(seed);
    let labels = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(classes);
    let noise = Tensor::randn([n, 32], (Kind::Float, Device::Cpu));
    let f = if informative {
        labels.one_hot(32).to_kind(Kind::Float) * 5.0 + noise
    } else {
        noise
    };
    (f, labels)
}

#[test]
fn the_probe_separates_informative_features_and_not_noise() {
    let cfg = LinearConfig {
        epochs: 30,
        ..LinearConfig::default()
    };
    let good = linear_probe(
        &features(600, 5, true, 1),
        &features(200, 5, true, 2),
        5,
        &cfg,
    )
    .unwrap();
    assert!(good.top1 > 90.0, "{good:?}");
    let noise = linear_probe(
        &features(600, 5, false, 1),
        &features(200, 5, false, 2),
        5,
        &cfg,
    )
    .unwrap();
    assert!(noise.top1 < 35.0, "{noise:?}");
    assert!(
        (noise.top5 - 100.0).abs() < 1e-9,
        "top-5 of 5 classes is everything"
    );
    let (tf, tl) = features(600, 5, true, 1);
    let (vf, vl) = features(200, 5, true, 2);
    assert!(fnc_train::knn_top1(&tf, &tl, &vf, &vl, 20, 0.07, 5) > 90.0);
}

#[test]
fn accuracy_counts_by_hand() {
    let logits = Tensor::from_slice(&[0.9f32, 0.1, 0.0, 0.2, 0.3, 0.5, 0.6, 0.3, 0.1]).view([3, 3]);
    let labels = Tensor::from_slice(&[0i64, 1, 2]);
    let a = accuracy(&logits, &labels);
    assert!((a.top1 - 100.0 / 3.0).abs() < 1e-9, "{a:?}");
    assert!((a.top5 - 100.0).abs() < 1e-9);
}

fn tiny_run(dir: &Path) -> (PathBuf, PathBuf) {
    let out = fnc_tests::synth_shards(dir, 3, 24, 6, 40, 4);
    let run = dir.join("run");
    let mut args = SMALL_MODEL.to_vec();
    args.extend([
        "--shards",
        out.to_str().unwrap(),
        "--batch-size",
        "16",
        "--steps",
        "6",
        "--knn-every",
        "3",
        "--device",
        "cpu",
        "--out",
        run.to_str().unwrap(),
        // Trained as 2 data-parallel ranks: what fnc-eval reads is rank 0's run.
        "--nproc-per-node",
        "2",
    ]);
    let o = Command::new(assert_cmd::cargo::cargo_bin("fnc-train"))
        .args(&args)
        .output();
    let ok = o.as_ref().map(|o| o.status.success()).unwrap_or(false);
    assert!(ok, "fnc-train failed: {:?}", o.map(|o| stderr(&o)));
    (out, run)
}

#[test]
fn commands_end_to_end_and_their_errors() {
    let t = tempfile::tempdir().unwrap();
    let (shards, run) = tiny_run(t.path());
    let r = run.to_str().unwrap();
    let lin = json(&eval(&[
        "linear",
        "--run",
        r,
        "--baseline",
        "--epochs",
        "20",
        "--device",
        "cpu",
        "--json",
    ]));
    for (key, b) in [("top1", &lin), ("top5", &lin), ("top1", &lin["baseline"])] {
        let v = b[key].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&v), "{lin}");
    }
    assert!(lin["top5"].as_f64() >= lin["top1"].as_f64(), "{lin}");
    // 3 classes x 24 train and x 6 val images.
    assert_eq!(lin["train_images"], 72, "{lin}");
    assert_eq!(lin["val_images"], 18, "{lin}");
    // The weight decay was chosen on a held-out fifth of train (never on
    // val), recorded with every candidate's held-out top-1.
    let choice = &lin["weight_decay_choice"];
    assert_eq!(choice["held_out"], 14, "{lin}");
    assert_eq!(choice["fitted_on"], 58, "{lin}");
    let tried = choice["tried"].as_array().unwrap();
    assert_eq!(tried.len(), fnc_eval::WEIGHT_DECAYS.len());
    let best = tried
        .iter()
        .map(|c| c[1].as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    let chosen = lin["weight_decay"].as_f64().unwrap();
    let first_best = tried
        .iter()
        .find(|c| c[1].as_f64().unwrap() == best)
        .unwrap()[0]
        .as_f64()
        .unwrap();
    assert_eq!(chosen, first_best, "{lin}");
    assert_eq!(lin["eval_split"], "val");
    // A 32 px run is evaluated on whole images, as the reference does.
    assert_eq!(lin["eval_view"], "whole image, no crop", "{lin}");
    let fixed = json(&eval(&[
        "linear",
        "--run",
        r,
        "--epochs",
        "5",
        "--weight-decay",
        "0.001",
        "--device",
        "cpu",
        "--json",
    ]));
    assert_eq!(fixed["weight_decay"], 0.001);
    assert!(fixed["weight_decay_choice"].is_null());
    let o = eval(&["linear", "--run", r, "--weight-decay", "lots"]);
    assert!(stderr(&o).contains("--weight-decay"), "{}", stderr(&o));
    let cached = |run: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(run.join("features"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let files = cached(&run);
    assert!(
        files.iter().any(|f| f.starts_with("step-00000006-")
            && f.contains("-train-")
            && f.ends_with(".safetensors")),
        "features are cached next to the run: {files:?}"
    );
    // SimCLR's linear protocol: a zero-initialised classifier on the frozen
    // encoder over augmented views; seeded, so it repeats.
    let reference = |seed: &str| {
        json(&eval(&[
            "linear",
            "--run",
            r,
            "--protocol",
            "reference",
            "--epochs",
            "3",
            "--batch-size",
            "24",
            "--seed",
            seed,
            "--device",
            "cpu",
            "--json",
        ]))
    };
    let ref0 = reference("0");
    assert_eq!(ref0["protocol"], "reference", "{ref0}");
    assert_eq!(ref0["batch_size"], 24, "{ref0}");
    let top1 = ref0["top1"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&top1) && ref0["top5"].as_f64() >= ref0["top1"].as_f64());
    assert_eq!(
        reference("0")["top1"],
        ref0["top1"],
        "the same seed repeats"
    );
    // k-NN of the final checkpoint is what the training monitor logged for it
    // (same features, k and temperature).
    let knn = json(&eval(&["knn", "--run", r, "--device", "cpu", "--json"]));
    let metrics = fnc_train::read_metrics(&run.join("metrics.jsonl")).unwrap();
    let logged = metrics.last().unwrap().knn_top1.unwrap();
    assert!(
        (knn["top1"]["k20"].as_f64().unwrap() - logged).abs() < 1e-9,
        "fnc-eval knn {knn} vs the monitor's {logged}"
    );

    // Another dataset through --shards: its images are evaluated, with their
    // own cache entries, not the run's own shards' features.
    let other_dir = t.path().join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = fnc_tests::synth_shards(&other_dir, 3, 10, 4, 40, 9);
    let lin_b = json(&eval(&[
        "linear",
        "--run",
        r,
        "--shards",
        other.to_str().unwrap(),
        "--epochs",
        "5",
        "--device",
        "cpu",
        "--json",
    ]));
    assert_eq!(lin_b["train_images"], 30, "{lin_b}");
    assert_eq!(lin_b["val_images"], 12, "{lin_b}");
    let after = cached(&run);
    assert_eq!(
        after.len(),
        files.len() + 2,
        "new train and val cache entries for the other dataset: {files:?} -> {after:?}"
    );
    // And the run's own shards still use their own cache.
    // --batch-size is the fast probe's mini-batch too, not dropped.
    let again = json(&eval(&[
        "linear",
        "--run",
        r,
        "--epochs",
        "20",
        "--batch-size",
        "16",
        "--device",
        "cpu",
        "--json",
    ]));
    assert_eq!(again["val_images"], 18, "{again}");
    assert_eq!(again["batch_size"], 16, "{again}");
    assert_eq!(lin["batch_size"], 256, "the fast default: {lin}");
    assert_eq!(
        cached(&run).len(),
        after.len(),
        "a cache hit writes nothing"
    );
    let ft = json(&eval(&[
        "finetune",
        "--run",
        r,
        "--fraction",
        "0.25",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "--json",
    ]));
    assert_eq!(ft["labelled"], 18, "a quarter of 24 per class, 3 classes");
    // A subset file by image names.
    let list = t.path().join("subset.txt");
    std::fs::write(&list, "n90000000_0.JPEG\nn90000001_3\nn90000002_5.JPEG\n").unwrap();
    let ft = json(&eval(&[
        "finetune",
        "--run",
        r,
        "--subset",
        list.to_str().unwrap(),
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--json",
    ]));
    assert_eq!(ft["labelled"], 3);
    assert_eq!(ft["protocol"], "fast");
    // The reference's semi-supervised protocol: from the head's first layer,
    // 60 epochs for a subset under 5% of the labels (3 of 72 here).
    let ft = json(&eval(&[
        "finetune",
        "--run",
        r,
        "--subset",
        list.to_str().unwrap(),
        "--protocol",
        "reference",
        "--device",
        "cpu",
        "--json",
    ]));
    assert_eq!(ft["protocol"], "reference", "{ft}");
    assert_eq!(
        (ft["from_head_layer"].as_u64(), ft["epochs"].as_u64()),
        (Some(1), Some(60)),
        "{ft}"
    );
    let top1 = ft["top1"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&top1), "{ft}");
    let o = eval(&[
        "finetune",
        "--run",
        r,
        "--from-head-layer",
        "2",
        "--device",
        "cpu",
    ]);
    assert!(stderr(&o).contains("--from-head-layer"), "{}", stderr(&o));
    // The report.
    let png = t.path().join("report.png");
    let o = eval(&["report", "--run", r, "--out", png.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let img = image::open(&png).unwrap();
    assert_eq!((img.width(), img.height()), (900, 1500), "six panels");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(
        metrics.matches("knn_top1").count(),
        2,
        "k-NN logged at steps 3 and 6"
    );

    // Errors name what is wrong.
    let o = eval(&["linear", "--run", t.path().join("nope").to_str().unwrap()]);
    assert!(
        !o.status.success() && stderr(&o).contains("nope"),
        "{}",
        stderr(&o)
    );
    let cfg = std::fs::read_to_string(run.join("config.toml")).unwrap();
    std::fs::write(
        run.join("config.toml"),
        cfg.replace("arch = \"small\"", "arch = \"resnet18\""),
    )
    .unwrap();
    let o = eval(&["linear", "--run", r, "--device", "cpu"]);
    assert!(
        stderr(&o).contains("holds a small encoder and cannot be loaded into a resnet18 encoder"),
        "{}",
        stderr(&o)
    );
    // A run config edited out of range is named by its key, not by a flag
    // of fnc-train's that fnc-eval does not have.
    assert!(cfg.contains("image_size = 32"), "{cfg}");
    std::fs::write(
        run.join("config.toml"),
        cfg.replace("image_size = 32", "image_size = 0"),
    )
    .unwrap();
    let o = eval(&["linear", "--run", r, "--device", "cpu"]);
    let err = stderr(&o);
    assert!(
        !o.status.success()
            && err.contains("config.toml")
            && err.contains("image_size")
            && !err.contains("--image-size")
            && !err.contains("panicked"),
        "{err}"
    );
    std::fs::write(run.join("config.toml"), &cfg).unwrap();
    // Shards without a val split.
    let noval = t.path().join("noval");
    std::fs::create_dir_all(&noval).unwrap();
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(shards.join("manifest.json")).unwrap())
            .unwrap();
    m["splits"].as_object_mut().unwrap().remove("val");
    std::fs::write(noval.join("manifest.json"), m.to_string()).unwrap();
    let o = eval(&["linear", "--run", r, "--shards", noval.to_str().unwrap()]);
    assert!(
        stderr(&o).contains("no val or test split"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn compare_groups_runs_that_differ_only_in_the_seed() {
    let t = tempfile::tempdir().unwrap();
    let shards = fnc_tests::synth_shards(t.path(), 3, 16, 6, 40, 4);
    let mut runs = Vec::new();
    for strategy in ["none", "attraction"] {
        for seed in ["0", "1"] {
            let run = t.path().join(format!("{strategy}-{seed}"));
            let mut args = SMALL_MODEL.to_vec();
            args.extend([
                "--shards",
                shards.to_str().unwrap(),
                "--batch-size",
                "16",
                "--steps",
                "3",
                "--knn-every",
                "3",
                "--device",
                "cpu",
                "--fn-strategy",
                strategy,
                "--seed",
                seed,
                "--out",
                run.to_str().unwrap(),
            ]);
            let o = Command::new(assert_cmd::cargo::cargo_bin("fnc-train"))
                .args(&args)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", stderr(&o));
            runs.push(run.to_str().unwrap().to_string());
        }
    }
    let png = t.path().join("cmp.png");
    let mut args = vec!["compare"];
    args.extend(runs.iter().map(String::as_str));
    args.extend([
        "--out",
        png.to_str().unwrap(),
        "--epochs",
        "10",
        "--device",
        "cpu",
        "--json-out",
    ]);
    // One evaluation prints the table and writes the JSON.
    let json_path = t.path().join("cmp.json");
    args.push(json_path.to_str().unwrap());
    let o = eval(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        table.contains("loss.strategy") && table.contains("curves:"),
        "{table}"
    );
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(c["differing"], serde_json::json!(["loss.strategy"]), "{c}");
    let groups = c["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{c}");
    for (g, strategy) in groups.iter().zip(["none", "attraction"]) {
        assert_eq!(g["flags"]["loss.strategy"], strategy);
        let seeds: Vec<u64> = g["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["seed"].as_u64().unwrap())
            .collect();
        assert_eq!(seeds, [0, 1]);
        // Mean and sample std of the runs' own values.
        let v: Vec<f64> = g["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["linear_top1"].as_f64().unwrap())
            .collect();
        let mean = (v[0] + v[1]) / 2.0;
        let std = ((v[0] - mean).powi(2) + (v[1] - mean).powi(2)).sqrt();
        assert!((g["linear_top1"]["mean"].as_f64().unwrap() - mean).abs() < 1e-9);
        assert!((g["linear_top1"]["std"].as_f64().unwrap() - std).abs() < 1e-9);
        // k-NN of each run equals what its monitor logged at the last step.
        for r in g["runs"].as_array().unwrap() {
            let m = fnc_train::read_metrics(
                &Path::new(r["run"].as_str().unwrap()).join("metrics.jsonl"),
            )
            .unwrap();
            let logged = m.last().unwrap().knn_top1.unwrap();
            assert!(
                (r["knn_top1"].as_f64().unwrap() - logged).abs() < 1e-9,
                "{r}"
            );
        }
    }
    // SimCLR detects nothing; FNC's detection statistics are reported.
    assert!(groups[1]["fn_recall"]["mean"].as_f64().is_some(), "{c}");
    let img = image::open(&png).unwrap();
    assert_eq!((img.width(), img.height()), (1000, 1200));
    // The table names the groups.
    assert!(
        table.contains("loss.strategy=attraction") && table.contains("2 (0, 1)"),
        "{table}"
    );

    // Paired by seed against SimCLR: the differences are the runs' own.
    let mut args = vec!["compare"];
    args.extend(runs.iter().map(String::as_str));
    args.extend([
        "--out",
        png.to_str().unwrap(),
        "--epochs",
        "10",
        "--device",
        "cpu",
        "--json",
        "--paired",
        "--baseline",
        "loss.strategy=none",
    ]);
    let p = json(&eval(&args));
    assert_eq!(p["paired"]["baseline"], "loss.strategy=none", "{p}");
    let diffs = p["paired"]["diffs"].as_array().unwrap();
    assert_eq!(diffs.len(), 2, "linear and k-NN of the one other arm: {p}");
    let lin = &diffs[0];
    assert_eq!(lin["metric"], "linear_top1");
    let runs_of = |g: usize| -> Vec<f64> {
        p["groups"][g]["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["linear_top1"].as_f64().unwrap())
            .collect()
    };
    let (base, arm) = (runs_of(0), runs_of(1));
    for k in 0..2 {
        let d = lin["diffs"][k].as_f64().unwrap();
        assert!((d - (arm[k] - base[k])).abs() < 1e-9, "{lin}");
    }
    match lin["p"].as_f64() {
        Some(pv) => assert!((0.0..=1.0).contains(&pv), "{lin}"),
        // Only equal nonzero differences (no spread) go without a t-test.
        None => {
            let (d0, d1) = (lin["diffs"][0].as_f64(), lin["diffs"][1].as_f64());
            assert!(
                (d0.unwrap() - d1.unwrap()).abs() < 1e-9 && d0.unwrap().abs() > 1e-9,
                "{lin}"
            );
        }
    }
    let ci = lin["bootstrap_ci95"].as_array().unwrap();
    assert!(ci[0].as_f64() <= ci[1].as_f64(), "{lin}");
    assert_eq!(lin["mcnemar"].as_array().unwrap().len(), 2, "{lin}");
    // A baseline that names no arm is refused before anything is evaluated.
    let stray = t.path().join("stray.png");
    let o = eval(&[
        "compare",
        runs[0].as_str(),
        "--paired",
        "--baseline",
        "nope=1",
        "--device",
        "cpu",
        "--out",
        stray.to_str().unwrap(),
    ]);
    assert!(stderr(&o).contains("--baseline nope=1"), "{}", stderr(&o));
    assert!(!stray.exists());
}
