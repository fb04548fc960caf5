//! fnc-train end to end on the CPU: the loss command, training, resume after
//! kill -9, export into PyTorch, and errors.
#![allow(clippy::unwrap_used)]

mod common;
mod runs;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use fnc_tests::{stderr, SMALL_MODEL};
use fnc_train::{Aggregate, Anchors, LossConfig, Strategy, SupportSet};

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("fnc-train")
}

fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

fn shards(dir: &Path) -> PathBuf {
    fnc_tests::synth_shards(dir, 4, 40, 4, 48, 2)
}

fn losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

/// SMALL_MODEL at batch 32 on the CPU, no warm-up.
fn small() -> Vec<&'static str> {
    let mut a = SMALL_MODEL.to_vec();
    a.extend([
        "--batch-size",
        "32",
        "--device",
        "cpu",
        "--workers",
        "2",
        "--warmup-epochs",
        "0",
    ]);
    a
}

/// `fnc-train loss` of the embeddings in `zp` (4 views) with the labels in `lp`.
fn loss_args<'a>(zp: &'a Path, lp: &'a Path) -> Vec<&'a str> {
    vec![
        "loss",
        "--embeddings",
        zp.to_str().unwrap(),
        "--views",
        "4",
        "--labels",
        lp.to_str().unwrap(),
    ]
}

#[test]
fn loss_command_matches_the_reference() {
    let t = tempfile::tempdir().unwrap();
    let (rows, labels) = clustered(4, 6, 8, 2, 0.5, 3);
    let z = tensor(&rows).to_kind(tch::Kind::Float);
    let zp = t.path().join("z.npy");
    z.write_npy(&zp).unwrap();
    let lp = t.path().join("l.npy");
    tch::Tensor::from_slice(&labels).write_npy(&lp).unwrap();
    for (strategy, s) in [
        (Strategy::None, "none"),
        (Strategy::Elimination, "elimination"),
        (Strategy::Attraction, "attraction"),
    ] {
        let mut args = loss_args(&zp, &lp);
        args.extend([
            "--fn-strategy",
            s,
            "--fn-topk",
            "3",
            "--fn-threshold",
            "0.6",
            "--fn-aggregate",
            "mean",
            "--json",
        ]);
        let o = run(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        // The reference sees the float32-rounded matrix the command read.
        let rows32: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| r.iter().map(|&x| x as f32 as f64).collect())
            .collect();
        let cfg = LossConfig {
            strategy,
            topk: 3,
            threshold: Some(0.6),
            aggregate: Aggregate::Mean,
            anchors: Anchors::All,
            support_set: SupportSet::All,
            temperature: 0.1,
            ..LossConfig::default()
        };
        let want = reference(&rows32, 4, &cfg);
        let got = r["loss"].as_f64().unwrap();
        assert!(
            (got - want.loss).abs() < 1e-9,
            "{s}: {got} vs {}",
            want.loss
        );
        let total: usize = want.fnc.iter().map(|f| f.len()).sum();
        assert!((r["fn_total"].as_f64().unwrap() - total as f64).abs() < 1e-9);
        assert!(r["fn_precision"].is_number());
    }
    let o = run(&["loss", "--embeddings", "/nonexistent.npy", "--views", "2"]);
    assert!(
        !o.status.success() && stderr(&o).contains("--embeddings"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn loss_block_changes_the_memory_not_the_loss_or_its_gradient() {
    let t = tempfile::tempdir().unwrap();
    let (rows, labels) = clustered(4, 6, 8, 2, 0.5, 3);
    let z = tensor(&rows).to_kind(tch::Kind::Float);
    let zp = t.path().join("z.npy");
    z.write_npy(&zp).unwrap();
    let lp = t.path().join("l.npy");
    tch::Tensor::from_slice(&labels).write_npy(&lp).unwrap();
    // The gradient's norm as autograd gives it, on what the command reads.
    let leaf = z.to_kind(tch::Kind::Double).set_requires_grad(true);
    let out = fnc_train::fnc_loss(&leaf, 4, &LossConfig::default(), None).unwrap();
    let g = tch::Tensor::run_backward(&[&out.loss], &[&leaf], false, false);
    let want = g[0].norm().double_value(&[]);
    let loss = out.loss.double_value(&[]);
    for (block, used) in [(None, 0), (Some("0"), 0), (Some("1"), 1), (Some("7"), 7)] {
        let mut args = loss_args(&zp, &lp);
        if let Some(r) = block {
            args.extend(["--loss-block", r]);
        }
        let o = run(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(r["loss_block"].as_i64(), Some(used), "{block:?}");
        let got = r["grad_norm"].as_f64().unwrap();
        assert!(
            want > 0.0 && (got - want).abs() < 1e-10,
            "{block:?}: {got} vs {want}"
        );
        let got = r["loss"].as_f64().unwrap();
        assert!((got - loss).abs() < 1e-10, "{block:?}: {got} vs {loss}");
    }
    let mut args = loss_args(&zp, &lp);
    args.extend(["--loss-block", "-4"]);
    let o = run(&args);
    assert!(
        !o.status.success() && stderr(&o).contains("invalid option --loss-block"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_small_model_learns_and_resumes_exactly_after_kill_9() {
    let t = tempfile::tempdir().unwrap();
    let data = shards(t.path());
    let mut args: Vec<String> = small().into_iter().map(String::from).collect();
    args.extend(
        [
            "--shards",
            data.to_str().unwrap(),
            "--steps",
            "40",
            "--checkpoint-every",
            "5",
            "--lr",
            "0.05",
        ]
        .map(String::from),
    );

    let full = t.path().join("full");
    let o = Command::new(bin())
        .args(&args)
        .args(["--out", full.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let want = losses(&full);
    assert_eq!(want.len(), 40);
    let first: f64 = want[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = want[35..].iter().sum::<f64>() / 5.0;
    assert!(
        last < first - 0.3,
        "loss did not go down: {first:.3} -> {last:.3}"
    );
    // The run directory holds what a person needs.
    let config = std::fs::read_to_string(full.join("config.toml")).unwrap();
    assert!(
        config.contains("arch = \"small\"") && config.contains("strategy = \"attraction\""),
        "{config}"
    );
    let m: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(full.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    for key in [
        "step",
        "epoch",
        "loss",
        "lr",
        "images_per_s",
        "data_wait",
        "mean_fn",
        "fn_precision",
        "fn_chance",
    ] {
        assert!(m.get(key).is_some(), "metrics lack {key}: {m}");
    }

    // Killed with SIGKILL after step 17 (checkpoint at 15), then resumed.
    let part = t.path().join("part");
    let mut part_args: Vec<&str> = args.iter().map(String::as_str).collect();
    part_args.extend(["--out", part.to_str().unwrap()]);
    assert_eq!(
        kill_and_resume(&part_args, &part, 17, 40),
        want,
        "resumed run logged other losses"
    );

    // A second run into the same directory without --resume is refused.
    let o = Command::new(bin()).args(&part_args).output().unwrap();
    assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));
}

#[test]
fn export_loads_into_torchvision_resnet18() {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    // `make test` always creates the venv (the build links its libtorch), so a
    // missing one is a broken set-up, not a reason to skip.
    assert!(
        python.exists(),
        "{} is absent: run the tests with `make test` (scripts/setup-python.sh --torch creates it)",
        python.display()
    );
    let t = tempfile::tempdir().unwrap();
    let data = shards(t.path());
    let runp = t.path().join("r18");
    let o = run(&[
        "--shards",
        data.to_str().unwrap(),
        "--arch",
        "resnet18",
        "--image-size",
        "32",
        "--support",
        "0",
        "--batch-size",
        "8",
        "--steps",
        "2",
        "--device",
        "cpu",
        "--out",
        runp.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let file = t.path().join("enc.safetensors");
    let o = run(&[
        "export",
        "--run",
        runp.to_str().unwrap(),
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let script = format!(
        "import torch, torchvision, safetensors.torch as st\n\
         sd = st.load_file({file:?})\n\
         m = torchvision.models.resnet18()\n\
         m.fc = torch.nn.Identity()\n\
         missing, unexpected = m.load_state_dict(sd, strict=True), None\n\
         m.eval()\n\
         y = m(torch.zeros(2, 3, 32, 32))\n\
         assert y.shape == (2, 512), y.shape\n\
         assert float(sd['conv1.weight'].abs().sum()) > 0\n\
         print('ok', len(sd))\n",
        file = file.to_str().unwrap()
    );
    let o = Command::new(&python)
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "PyTorch could not load the export: {}",
        stderr(&o)
    );
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("ok"));
}

#[test]
fn bad_input_gets_clear_errors() {
    let t = tempfile::tempdir().unwrap();
    let o = run(&[
        "--shards",
        "/nonexistent",
        "--out",
        t.path().join("x").to_str().unwrap(),
        "--arch",
        "small",
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("--shards /nonexistent"),
        "{}",
        stderr(&o)
    );
    let data = shards(t.path());
    let d = data.to_str().unwrap();
    let o = run(&[
        "--shards",
        d,
        "--arch",
        "small",
        "--batch-size",
        "100000",
        "--out",
        t.path().join("y").to_str().unwrap(),
    ]);
    assert!(stderr(&o).contains("--batch-size"), "{}", stderr(&o));
    let o = run(&["--shards", d, "--arch", "vgg"]);
    assert!(
        !o.status.success() && stderr(&o).contains("--arch"),
        "{}",
        stderr(&o)
    );
    let o = run(&[
        "--shards",
        d,
        "--arch",
        "small",
        "--device",
        "tpu",
        "--out",
        t.path().join("z").to_str().unwrap(),
    ]);
    assert!(stderr(&o).contains("--device"), "{}", stderr(&o));
    // An exploding learning rate: stop at the non-finite step, name the last
    // good checkpoint.
    let nan = t.path().join("nan");
    let mut args: Vec<&str> = small();
    args.extend([
        "--shards",
        d,
        "--steps",
        "30",
        "--checkpoint-every",
        "1",
        "--optimizer",
        "sgd",
        "--lr",
        "1e12",
        "--lr-scaling",
        "none",
        "--out",
        nan.to_str().unwrap(),
    ]);
    let o = run(&args);
    let e = stderr(&o);
    assert!(
        !o.status.success()
            && e.contains("not finite at step")
            && e.contains("last good checkpoint"),
        "{e}"
    );
}

/// Starts fnc-train with `args` (which send the run to `out`), kills it with
/// SIGKILL once `after` steps are logged, checks that it had not reached
/// `total`, resumes it, and returns every loss the run logged.
fn kill_and_resume(args: &[&str], out: &Path, after: usize, total: usize) -> Vec<f64> {
    let mut child = Command::new(bin())
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let metrics = out.join("metrics.jsonl");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&metrics)
        .map(|s| s.lines().count())
        .unwrap_or(0)
        < after
    {
        assert!(t0.elapsed().as_secs() < 120, "the run made no progress");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done = losses(out).len();
    assert!(done < total, "the kill came too late ({done} steps)");
    let o = Command::new(bin())
        .args(args)
        .arg("--resume")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    losses(out)
}

/// `small()` on the shards in `data`, into `out`, then `extra`.
fn small_args<'a>(data: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args: Vec<&str> = small();
    args.extend([
        "--shards",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    args.extend(extra);
    args
}

/// Runs fnc-train with `small()` + `extra` into `out`, asserting success.
fn train_small(data: &Path, out: &Path, extra: &[&str]) -> Vec<f64> {
    let o = run(&small_args(data, out, extra));
    assert!(o.status.success(), "{}", stderr(&o));
    losses(out)
}

#[test]
fn the_memory_variant_uses_its_bank_and_resumes_exactly_after_kill_9() {
    let t = tempfile::tempdir().unwrap();
    let data = shards(t.path());
    // V = 4 views, batch 32: a bank of 8 x 32 rows holds two batches.
    let mem = ["--memory", "8", "--lr", "0.05", "--checkpoint-every", "4"];
    let plain = train_small(
        &data,
        &t.path().join("plain"),
        &["--steps", "3", "--lr", "0.05"],
    );
    let mut long: Vec<&str> = mem.to_vec();
    long.extend(["--steps", "24"]);
    let full = t.path().join("full");
    let want = train_small(&data, &full, &long);
    assert_eq!(want.len(), 24);
    assert!(want.iter().all(|l| l.is_finite()));
    // Step 1: the bank is empty and the momentum encoder is a copy of the
    // model, so the loss is the in-batch one; afterwards it is not.
    assert!(
        (want[0] - plain[0]).abs() < 1e-4,
        "{} vs {}",
        want[0],
        plain[0]
    );
    assert!(
        (want[2] - plain[2]).abs() > 1e-3,
        "the bank changed nothing"
    );
    let ckpt = full.join("checkpoints").join("step-00000024");
    assert!(ckpt.join("momentum.safetensors").exists());

    let part = t.path().join("part");
    assert_eq!(
        kill_and_resume(&small_args(&data, &part, &long), &part, 10, 24),
        want,
        "resumed run logged other losses"
    );
}

#[test]
fn memory_formats_and_precisions_train_alike() {
    let t = tempfile::tempdir().unwrap();
    let data = shards(t.path());
    let run_steps = |name: &str, threads: &str, flags: &[&str], steps: &str| {
        let out = t.path().join(name);
        let steps = ["--steps", steps, "--lr", "0.05", "--checkpoint-every", "1"];
        let mut a = small_args(&data, &out, &steps);
        a.extend(flags);
        let o = Command::new(bin())
            .args(&a)
            .env("OMP_NUM_THREADS", threads)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        losses(&t.path().join(name))
    };
    let with = |name: &str, threads: &str, flags: &[&str]| run_steps(name, threads, flags, "4");
    let cl = with("cl", "2", &["--memory-format", "channels-last"]);
    let nchw = with("nchw", "2", &["--memory-format", "contiguous"]);
    // The noise floor: channels-last again, with another thread count.
    let noise = with("noise", "1", &["--memory-format", "channels-last"]);
    let bf16 = with("bf16", "2", &["--precision", "bf16"]);
    // Step 1 (same weights, same batch) to float precision; the steps after
    // updates within 10x the gap another summation order makes.
    assert!(
        (cl[0] - nchw[0]).abs() <= 1e-5 * cl[0].abs(),
        "{cl:?} vs {nchw:?}"
    );
    for k in 1..cl.len() {
        let floor = (cl[k] - noise[k]).abs().max(1e-6 * cl[k].abs());
        assert!(
            (cl[k] - nchw[k]).abs() <= 10.0 * floor,
            "step {}: {cl:?} vs {nchw:?} (noise {noise:?})",
            k + 1
        );
    }
    // The weights after the first update (same weights, same batch),
    // channels-last against NCHW: equal to float precision up to ReLU kinks.
    // (After more updates a kink in one pair of runs and not in the noise
    // pair moves a layer by more than 10x the noise: the losses above are
    // the later steps' check.)
    let first = |name: &str, format: &str| {
        run_steps(name, "1", &["--memory-format", format], "1");
        runs::params(&t.path().join(name))
    };
    let (c1, n1) = (
        first("cl-1", "channels-last"),
        first("nchw-1", "contiguous"),
    );
    if let Err(e) = runs::first_step_verdict(&c1, &n1, true) {
        panic!("channels-last against NCHW after one update: {e}");
    }
    // bf16 rounds every convolution: its losses track fp32's over the
    // updates, not to float precision (a broken bf16 update drifts away).
    assert!(bf16.iter().all(|l| l.is_finite()));
    for (k, (b, c)) in bf16.iter().zip(&cl).enumerate() {
        assert!(
            (b - c).abs() <= 0.02 * c.abs(),
            "step {}: {bf16:?} vs {cl:?}",
            k + 1
        );
    }
    let config = std::fs::read_to_string(t.path().join("bf16").join("config.toml")).unwrap();
    assert!(
        config.contains("precision = \"bf16\"")
            && config.contains("memory_format = \"channels-last\""),
        "{config}"
    );
    // A bank too small for one batch is refused before training.
    let o = run(&[
        "--shards",
        data.to_str().unwrap(),
        "--arch",
        "small",
        "--memory",
        "3",
        "--out",
        t.path().join("small-bank").to_str().unwrap(),
    ]);
    assert!(stderr(&o).contains("--memory"), "{}", stderr(&o));
}

/// Every numeric flag of fnc-train, with values outside its documented range
/// (negative, NaN, infinite, huge, zero where zero means nothing): a clear
/// error naming the flag as typed, no panic, nothing created.
#[test]
fn options_are_checked_before_anything_runs() {
    let t = tempfile::tempdir().unwrap();
    let data = shards(t.path());
    let d = data.to_str().unwrap();
    let oracle = ["--fn-detect", "oracle"];
    let rows: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--batch-size", "0"], "--batch-size"),
        (vec!["--batch-size", "1"], "--batch-size"),
        (vec!["--batch-size", "100000"], "--batch-size"),
        (vec!["--batch-size=-1"], "--batch-size"),
        (vec!["--image-size", "0"], "--image-size"),
        (vec!["--image-size", "4"], "--image-size"),
        (vec!["--image-size", "5000"], "--image-size"),
        (vec!["--image-size=-1"], "--image-size"),
        (vec!["--support", "65"], "--support"),
        (vec!["--support=-1"], "--support"),
        (vec!["--support-size", "5"], "--support-size"),
        (vec!["--support-size", "5000"], "--support-size"),
        (vec!["--epochs", "0"], "--epochs"),
        (vec!["--epochs=-1"], "--epochs"),
        (vec!["--epochs", "nan"], "--epochs"),
        (vec!["--epochs", "inf"], "--epochs"),
        (vec!["--epochs", "1e300"], "--epochs"),
        (vec!["--steps=-1"], "--steps"),
        (vec!["--lr", "0"], "--lr"),
        (vec!["--lr=-1"], "--lr"),
        (vec!["--lr", "nan"], "--lr"),
        (vec!["--lr", "inf"], "--lr"),
        (vec!["--weight-decay=-1"], "--weight-decay"),
        (vec!["--weight-decay", "nan"], "--weight-decay"),
        (vec!["--weight-decay", "inf"], "--weight-decay"),
        (vec!["--warmup-epochs=-1"], "--warmup-epochs"),
        (vec!["--warmup-epochs", "nan"], "--warmup-epochs"),
        (vec!["--warmup-epochs", "1e300"], "--warmup-epochs"),
        (vec!["--workers", "100000"], "--workers"),
        (vec!["--workers=-1"], "--workers"),
        (vec!["--seed=-1"], "--seed"),
        (vec!["--checkpoint-every", "0"], "--checkpoint-every"),
        (vec!["--checkpoint-every=-1"], "--checkpoint-every"),
        (vec!["--knn-every=-1"], "--knn-every"),
        (vec!["--memory", "1"], "--memory"),
        (vec!["--memory=-1"], "--memory"),
        (vec!["--memory", "1000000000000000"], "--memory"),
        (vec!["--memory", "4", "--ema-decay", "1"], "--ema-decay"),
        (vec!["--memory", "4", "--ema-decay=-0.5"], "--ema-decay"),
        (vec!["--memory", "4", "--ema-decay", "nan"], "--ema-decay"),
        (vec!["--max-bad-records=-1"], "--max-bad-records"),
        (vec!["--temperature", "0"], "--temperature"),
        (vec!["--temperature=-1"], "--temperature"),
        (vec!["--temperature", "nan"], "--temperature"),
        (vec!["--temperature", "inf"], "--temperature"),
        (vec!["--fn-topk=-1"], "--fn-topk"),
        (vec!["--fn-threshold", "2"], "--fn-threshold"),
        (vec!["--fn-threshold=-2"], "--fn-threshold"),
        (vec!["--fn-threshold", "nan"], "--fn-threshold"),
        (
            [&oracle[..], &["--fn-oracle-precision=-0.1"]].concat(),
            "--fn-oracle-precision",
        ),
        (
            [&oracle[..], &["--fn-oracle-precision", "1.5"]].concat(),
            "--fn-oracle-precision",
        ),
        (
            [&oracle[..], &["--fn-oracle-precision", "nan"]].concat(),
            "--fn-oracle-precision",
        ),
        (vec!["--nproc-per-node", "0"], "--nproc-per-node"),
        (vec!["--nproc-per-node", "100000"], "--nproc-per-node"),
        (vec!["--nproc-per-node=-1"], "--nproc-per-node"),
        (
            vec!["--nproc-per-node", "2", "--master-port", "0"],
            "--master-port",
        ),
        (
            vec!["--nproc-per-node", "2", "--master-port", "70000"],
            "--master-port",
        ),
        (vec!["--master-port", "29400"], "--master-port"),
        (vec!["--dist-timeout", "0"], "--dist-timeout"),
        (vec!["--dist-timeout=-1"], "--dist-timeout"),
        (vec!["--dist-timeout", "nan"], "--dist-timeout"),
        (vec!["--dist-timeout", "inf"], "--dist-timeout"),
        (vec!["--dist-timeout", "1e300"], "--dist-timeout"),
        (
            vec!["--support", "0", "--fn-support", "support"],
            "--fn-support",
        ),
    ];
    for (extra, flag) in &rows {
        let out = t.path().join("never");
        let mut args = small();
        args.extend(["--shards", d, "--out", out.to_str().unwrap()]);
        args.extend(extra);
        let o = run(&args);
        let e = stderr(&o);
        assert!(!o.status.success(), "{extra:?}: accepted");
        assert!(e.contains(flag), "{extra:?}: the error names {flag}: {e}");
        assert!(!e.contains("panicked"), "{e}");
        assert!(!out.exists(), "{extra:?}: nothing is created");
    }
    // Ours (not clap's parse errors) say which option and why.
    let o = run(&["--shards", d, "--lr", "nan", "--out", "/nonexistent/x"]);
    assert!(stderr(&o).contains("invalid option --lr"), "{}", stderr(&o));
    // The subcommands' numeric flags.
    let zp = t.path().join("z.npy");
    tch::Tensor::randn([8, 4], (tch::Kind::Float, tch::Device::Cpu))
        .write_npy(&zp)
        .unwrap();
    let z = zp.to_str().unwrap();
    for (args, flag) in [
        (vec!["loss", "--embeddings", z, "--views", "0"], "--views"),
        (vec!["loss", "--embeddings", z, "--views", "1"], "--views"),
        (vec!["loss", "--embeddings", z, "--views=-2"], "--views"),
        (vec!["loss", "--embeddings", z, "--views", "3"], "--views"),
        (
            vec![
                "loss",
                "--embeddings",
                z,
                "--views",
                "2",
                "--temperature",
                "nan",
            ],
            "--temperature",
        ),
        (vec!["bench", "--arch", "small", "--timed", "0"], "--timed"),
        (vec!["bench", "--arch", "small", "--warmup=-1"], "--warmup"),
        (vec!["bench", "--arch", "small", "--out", "x"], "--out"),
        (vec!["bench", "--arch", "small", "--steps", "3"], "--steps"),
    ] {
        let o = run(&args);
        let e = stderr(&o);
        assert!(!o.status.success(), "{args:?}: accepted");
        assert!(e.contains(flag), "{args:?}: the error names {flag}: {e}");
        assert!(!e.contains("panicked"), "{e}");
    }
}

/// Flips one byte in the middle of the first train shard (inside some
/// record's data, which only that record's checksum notices); returns the shard.
fn corrupt_a_record(data: &Path) -> PathBuf {
    let shard = data.join("train-00000.fncs");
    let mut bytes = std::fs::read(&shard).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&shard, bytes).unwrap();
    shard
}

#[test]
fn a_bad_record_stops_the_run_or_is_replaced_and_named_once() {
    let t = tempfile::tempdir().unwrap();
    let data = shards(t.path());
    let shard = corrupt_a_record(&data);
    let name = shard.file_name().unwrap().to_str().unwrap();
    // 160 records, batch 32: every record is read in each of 3 epochs.
    let args = |out: &Path, extra: &[&'static str]| -> Vec<String> {
        let mut a: Vec<String> = small().iter().map(|s| s.to_string()).collect();
        a.extend(
            ["--steps", "15", "--shards", data.to_str().unwrap(), "--out"]
                .iter()
                .map(|s| s.to_string()),
        );
        a.push(out.to_str().unwrap().to_string());
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let stop = t.path().join("stop");
    let o = Command::new(bin()).args(args(&stop, &[])).output().unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("checksum mismatch"), "{e}");
    assert_eq!(e.matches(name).count(), 1, "the shard is named once: {e}");

    let go = t.path().join("go");
    let o = Command::new(bin())
        .args(args(&go, &["--max-bad-records", "1", "--json"]))
        .output()
        .unwrap();
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert_eq!(
        e.matches("bad record replaced").count(),
        1,
        "named once over 3 epochs: {e}"
    );
    assert_eq!(e.matches(name).count(), 1, "{e}");
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        summary["bad_records"].as_array().unwrap().len(),
        1,
        "{summary}"
    );
    let m = fnc_train::read_metrics(&go.join("metrics.jsonl")).unwrap();
    assert_eq!(m.len(), 15);
    assert_eq!(m.last().unwrap().bad_records, 1);
    assert!(m.iter().all(|s| s.loss.is_finite()));

    // A second bad record in another shard exceeds --max-bad-records 1.
    let shard1 = data.join("train-00001.fncs");
    if shard1.exists() {
        let mut bytes = std::fs::read(&shard1).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&shard1, bytes).unwrap();
        let o = Command::new(bin())
            .args(args(&t.path().join("two"), &["--max-bad-records", "1"]))
            .output()
            .unwrap();
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{e}");
        assert!(e.contains("more than --max-bad-records 1"), "{e}");
    }
}

#[test]
fn labels_that_do_not_fit_are_an_error() {
    let t = tempfile::tempdir().unwrap();
    let z = tch::Tensor::randn([4 * 6, 8], (tch::Kind::Float, tch::Device::Cpu));
    let zp = t.path().join("z.npy");
    z.write_npy(&zp).unwrap();
    for shape in [&[6i64, 2][..], &[5]] {
        let lp = t.path().join("l.npy");
        tch::Tensor::zeros(shape, (tch::Kind::Int64, tch::Device::Cpu))
            .write_npy(&lp)
            .unwrap();
        let o = run(&loss_args(&zp, &lp));
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{shape:?}: {e}");
        assert!(e.contains("--labels") && e.contains("want [6]"), "{e}");
        assert!(!e.contains("panicked"), "{e}");
    }
}

#[test]
fn checkpoints_that_do_not_fit_are_named_not_panicked_on() {
    let t = tempfile::tempdir().unwrap();
    let data = shards(t.path());
    let out = t.path().join("r");
    // (With the reference initialisation, whose head shift is not trained.)
    train_small(
        &data,
        &out,
        &["--steps", "2", "--optimizer", "sgd", "--init", "reference"],
    );
    let ck = out.join("checkpoints").join("step-00000002");
    let mut args = small();
    args.extend([
        "--shards",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--resume",
        "--steps",
        "4",
    ]);
    // Another optimiser on resume is refused, naming the flag.
    let mut adamw = args.clone();
    adamw.extend(["--optimizer", "adamw"]);
    let e = stderr(&run(&adamw));
    assert!(
        e.contains("invalid option --optimizer") && e.contains("sgd"),
        "{e}"
    );
    // An optimiser entry of the wrong shape.
    let file = ck.join("optimizer.safetensors");
    let mut named = tch::Tensor::read_safetensors(&file).unwrap();
    let (name, t0) = named
        .iter_mut()
        .find(|(n, t)| n.starts_with("opt.m.") && t.dim() == 4)
        .unwrap();
    *t0 = tch::Tensor::zeros([3], (tch::Kind::Float, tch::Device::Cpu));
    let name = name.clone();
    tch::Tensor::write_safetensors(&named, &file).unwrap();
    // The checksum in state.json finds the changed file.
    let e = stderr(&run(&args));
    assert!(
        e.contains("optimizer.safetensors") && e.contains("damaged"),
        "{e}"
    );
    // Without checksums (a checkpoint of an earlier version), the shape is named.
    let state = ck.join("state.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    json.as_object_mut().unwrap().remove("files");
    std::fs::write(&state, json.to_string()).unwrap();
    let o = run(&args);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains(&name) && e.contains("in the checkpoint but"),
        "{e}"
    );
    assert!(!e.contains("panicked"), "{e}");
    // export checks the architecture as resume does.
    let cfg = std::fs::read_to_string(out.join("config.toml")).unwrap();
    std::fs::write(
        out.join("config.toml"),
        cfg.replace("arch = \"small\"", "arch = \"resnet18\""),
    )
    .unwrap();
    let o = run(&["export", "--run", out.to_str().unwrap()]);
    let e = stderr(&o);
    assert!(
        e.contains("holds a small encoder and cannot be loaded into a resnet18 encoder"),
        "{e}"
    );
}

#[test]
fn oracle_runs_log_their_precision_and_the_noisy_one_resumes_exactly() {
    let t = tempfile::tempdir().unwrap();
    let data = shards(t.path());
    let metrics = |run: &Path| fnc_train::read_metrics(&run.join("metrics.jsonl")).unwrap();
    let exact = t.path().join("exact");
    train_small(&data, &exact, &["--steps", "3", "--fn-detect", "oracle"]);
    for m in metrics(&exact) {
        assert_eq!(m.fn_precision, Some(1.0));
        assert_eq!(m.fn_recall, Some(1.0));
    }
    let noisy = [
        "--steps",
        "40",
        "--checkpoint-every",
        "5",
        "--fn-detect",
        "oracle",
        "--fn-oracle-precision",
        "0.5",
    ];
    let full = t.path().join("full");
    let want = train_small(&data, &full, &noisy);
    let m = metrics(&full);
    let p: f64 = m.iter().map(|s| s.fn_precision.unwrap()).sum::<f64>() / m.len() as f64;
    assert!((p - 0.5).abs() < 0.05, "mean precision {p}");
    let part = t.path().join("part");
    assert_eq!(
        kill_and_resume(&small_args(&data, &part, &noisy), &part, 17, 40),
        want,
        "the noisy oracle's draws repeat after a resume"
    );
}

#[test]
fn presets_print_every_official_flag_and_configs_read_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let paper = root.join("configs/fnc-paper.toml");
    let o = run(&[
        "--config",
        paper.to_str().unwrap(),
        "--print-config",
        "--device",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let cfg: fnc_train::TrainConfig = toml::from_str(&text).unwrap();
    assert_eq!(cfg.arch, fnc_train::Arch::Resnet50);
    assert_eq!(
        (cfg.batch_size, cfg.support, cfg.support_side()),
        (4096, 8, 224)
    );
    assert_eq!((cfg.epochs, cfg.warmup_epochs, cfg.lr), (100.0, 10.0, 0.1));
    assert_eq!(cfg.lr_scaling, fnc_train::LrScaling::Sqrt);
    assert_eq!(cfg.optimizer, fnc_train::OptimizerKind::Lars);
    assert_eq!(
        (cfg.weight_decay, cfg.memory, cfg.ema_decay),
        (1e-4, 16, 0.999)
    );
    assert_eq!(cfg.init, fnc_train::InitScheme::Reference);
    assert_eq!(cfg.loss.temperature, 0.1);
    assert_eq!((cfg.loss.topk, cfg.loss.threshold), (10, Some(0.7)));
    assert_eq!(cfg.loss.strategy, Strategy::Attraction);
    assert_eq!(cfg.loss.aggregate, Aggregate::Max);
    assert_eq!(cfg.augment_impl, fnc_augment::AugmentImpl::Reference);
    assert_eq!(cfg.randaugment, Some(fnc_augment::RandAugment::REFERENCE));
    // The SimCLR baseline differs in the loss, support views and memory only.
    let simclr = root.join("configs/simclr-v2.toml");
    let o = run(&["--config", simclr.to_str().unwrap(), "--print-config"]);
    let base: fnc_train::TrainConfig = toml::from_str(&String::from_utf8_lossy(&o.stdout)).unwrap();
    assert_eq!(base.loss.strategy, Strategy::None);
    assert_eq!((base.support, base.memory), (0, 0));
    assert_eq!(
        (base.arch, base.batch_size, base.lr, base.init),
        (cfg.arch, cfg.batch_size, cfg.lr, cfg.init)
    );
    assert_eq!(
        (base.augment_impl, base.randaugment),
        (cfg.augment_impl, cfg.randaugment)
    );
    // Flags override the file; "none" thresholds and following support sizes
    // survive the round trip through a config file.
    let o = run(&[
        "--config",
        paper.to_str().unwrap(),
        "--fn-threshold",
        "none",
        "--image-size",
        "96",
        "--print-config",
    ]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains("threshold = \"none\""), "{text}");
    let again: fnc_train::TrainConfig = toml::from_str(&text).unwrap();
    assert_eq!(again.loss.threshold, None);
    assert_eq!(again.support_side(), 224, "the preset sets support_size");
    // RandAugment is turned off, reset or refused by its flag.
    for (value, want) in [
        ("off", None),
        (
            "1,3",
            Some(fnc_augment::RandAugment {
                layers: 1,
                magnitude: 3.0,
            }),
        ),
    ] {
        let o = run(&[
            "--config",
            paper.to_str().unwrap(),
            "--randaugment",
            value,
            "--print-config",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let c: fnc_train::TrainConfig =
            toml::from_str(&String::from_utf8_lossy(&o.stdout)).unwrap();
        assert_eq!(c.randaugment, want);
    }
    let o = run(&["--randaugment", "2,15", "--print-config"]);
    assert!(stderr(&o).contains("--randaugment"), "{}", stderr(&o));
    assert_eq!(o.status.code(), Some(1));
    let o = run(&["--image-size", "96", "--print-config"]);
    let follow: fnc_train::TrainConfig =
        toml::from_str(&String::from_utf8_lossy(&o.stdout)).unwrap();
    assert_eq!(
        follow.support_side(),
        96,
        "support views follow --image-size"
    );
    // A misspelt key is an error naming it, not silently ignored.
    let t = tempfile::tempdir().unwrap();
    let bad = t.path().join("bad.toml");
    std::fs::write(&bad, "batch_sise = 64\n").unwrap();
    let o = run(&["--config", bad.to_str().unwrap(), "--print-config"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("batch_sise"), "{e}");
}

#[test]
fn the_reference_view_recipe_trains_reproducibly_and_is_recorded() {
    let t = tempfile::tempdir().unwrap();
    let data = shards(t.path());
    let recipe = [
        "--augment-impl",
        "reference",
        "--randaugment",
        "2,7",
        "--steps",
        "6",
    ];
    let a = train_small(&data, &t.path().join("a"), &recipe);
    let b = train_small(&data, &t.path().join("b"), &recipe);
    assert_eq!(a, b, "one seed, one run");
    assert!(a.iter().all(|l| l.is_finite()));
    let plain = train_small(&data, &t.path().join("plain"), &["--steps", "6"]);
    assert_ne!(a, plain, "other views, other losses");
    // The run's config keeps the recipe, so --resume uses it.
    let cfg: fnc_train::TrainConfig =
        toml::from_str(&std::fs::read_to_string(t.path().join("a").join("config.toml")).unwrap())
            .unwrap();
    assert_eq!(cfg.augment_impl, fnc_augment::AugmentImpl::Reference);
    assert_eq!(cfg.randaugment, Some(fnc_augment::RandAugment::REFERENCE));
}

#[test]
fn plan_fits_the_papers_batch_on_eight_gpus_and_names_bad_flags() {
    let preset = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/fnc-paper.toml");
    let preset = preset.to_str().unwrap();
    let args = [
        "plan",
        "--config",
        preset,
        "--nproc",
        "8",
        "--device-memory",
        "141G",
    ];
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(text.contains("512 images x 10 views per device"), "{text}");
    assert!(text.contains("\nuse: "), "{text}");
    let mut json = args.to_vec();
    json.push("--json");
    let o = run(&json);
    assert!(o.status.success(), "{}", stderr(&o));
    let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let est = p["estimates"].as_array().unwrap();
    assert_eq!(
        est[0]["fits"], false,
        "the plain step of 5,120 views fits 141 GB?"
    );
    let chosen = &est[p["chosen"].as_u64().unwrap() as usize];
    assert!(chosen["total"].as_f64().unwrap() <= 0.9 * 141e9);
    // The line names the flags of the chosen setting.
    let flags = if chosen["setting"]["recompute"] == true {
        "use: --recompute"
    } else {
        "use: --micro-batch"
    };
    assert!(text.contains(flags), "{text}");
    for (bad, flag) in [
        (vec!["--nproc", "3"], "--nproc"),
        (vec!["--nproc", "0"], "--nproc"),
        (vec!["--device-memory", "80X"], "--device-memory"),
        (vec!["--device-memory", "0"], "--device-memory"),
    ] {
        let mut a = vec!["plan", "--config", preset];
        a.extend(bad);
        let o = run(&a);
        assert!(!o.status.success(), "{a:?}");
        assert!(stderr(&o).contains(flag), "{a:?}: {}", stderr(&o));
    }
}
