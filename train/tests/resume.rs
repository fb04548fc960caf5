//! The run directory from the command line: a rerun never appends to another
//! run, `--resume` restores the last complete checkpoint and cuts the log back
//! to it (or starts over, saying so), changed flags are refused but for the
//! run length and monitoring, and a `kill -9` at any moment, mid-checkpoint
//! included, resumes with `--resume` alone to the run that was never killed.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use fnc_tests::{stderr, SMALL_MODEL};

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("fnc-train")
}

fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

fn args<'a>(data: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
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
        "--lr",
        "0.05",
    ]);
    a.extend(extra);
    a
}

/// (step, loss) of every line of a run's metrics.jsonl.
fn steps(out: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        // A line being written by a live run is skipped.
        .filter_map(|l| serde_json::from_str::<fnc_train::StepMetrics>(l).ok())
        .map(|m| (m.step, m.loss))
        .collect()
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", stderr(o));
}

/// Starts a run and kills it with SIGKILL once `lines` metrics lines are
/// written and `extra` more has passed.
fn kill_after(a: &[&str], out: &Path, lines: usize, extra: Duration) {
    let mut child = Command::new(bin())
        .args(a)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while steps(out).len() < lines {
        assert!(t0.elapsed() < Duration::from_secs(120), "no progress");
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(extra);
    let _ = child.kill();
    child.wait().unwrap();
}

#[test]
fn a_rerun_is_refused_and_a_resume_without_checkpoint_starts_over_saying_so() {
    let t = tempfile::tempdir().unwrap();
    let data = fnc_tests::synth_shards(t.path(), 4, 16, 2, 40, 3);
    let out = t.path().join("run");
    let a = args(
        &data,
        &out,
        &["--steps", "400", "--checkpoint-every", "1000"],
    );
    // Killed before its first checkpoint.
    kill_after(&a, &out, 5, Duration::ZERO);
    let before = std::fs::read(out.join("metrics.jsonl")).unwrap();
    assert!(!out.join("checkpoints").exists(), "no checkpoint yet");
    let o = run(&a);
    let e = stderr(&o);
    assert!(
        !o.status.success(),
        "a rerun into the same --out was accepted"
    );
    assert!(
        e.contains("--out") && e.contains(out.to_str().unwrap()) && e.contains("--resume"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(out.join("metrics.jsonl")).unwrap(),
        before,
        "the refused rerun touched the run"
    );
    // --resume with no checkpoint: from the beginning, said, every step once.
    let short = args(
        &data,
        &out,
        &["--steps", "6", "--checkpoint-every", "1000", "--resume"],
    );
    let o = run(&short);
    ok(&o);
    assert!(
        stderr(&o).contains("starting the run over"),
        "{}",
        stderr(&o)
    );
    let s: Vec<u64> = steps(&out).iter().map(|x| x.0).collect();
    assert_eq!(s, (1..=6).collect::<Vec<_>>());
    // A fresh run of the same flags logs the same losses.
    let fresh = t.path().join("fresh");
    ok(&run(&args(
        &data,
        &fresh,
        &["--steps", "6", "--checkpoint-every", "1000"],
    )));
    assert_eq!(steps(&out), steps(&fresh));
}

#[test]
fn resume_refuses_changed_flags_but_the_run_length_and_monitoring() {
    let t = tempfile::tempdir().unwrap();
    let data = fnc_tests::synth_shards(t.path(), 4, 16, 2, 40, 3);
    let out = t.path().join("run");
    ok(&run(&args(
        &data,
        &out,
        &["--steps", "4", "--checkpoint-every", "2"],
    )));
    for (flag, value) in [
        ("--lr", "0.2"),
        ("--seed", "9"),
        ("--fn-topk", "3"),
        ("--temperature", "0.2"),
        ("--memory", "8"),
        ("--image-size", "40"),
    ] {
        let mut a = args(&data, &out, &["--resume", "--steps", "6"]);
        a.extend([flag, value]);
        let o = run(&a);
        let e = stderr(&o);
        assert!(!o.status.success(), "{flag} {value} changed on resume");
        assert!(e.contains(&format!("invalid option {flag}")), "{flag}: {e}");
    }
    assert_eq!(steps(&out).len(), 4, "refused resumes wrote nothing");
    // The length, checkpointing, monitoring, threads, timeout and the loss's
    // block (memory, not results) may change.
    ok(&run(&args(
        &data,
        &out,
        &[
            "--resume",
            "--steps",
            "6",
            "--checkpoint-every",
            "3",
            "--knn-every",
            "5",
            "--workers",
            "2",
            "--max-bad-records",
            "1",
            "--dist-timeout",
            "30",
            "--loss-block",
            "16",
        ],
    )));
    let s: Vec<u64> = steps(&out).iter().map(|x| x.0).collect();
    assert_eq!(s, (1..=6).collect::<Vec<_>>());
    let cfg = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(
        cfg.contains("steps = 6") && cfg.contains("knn_every = 5"),
        "{cfg}"
    );
    // --resume of a directory that holds no run.
    let o = run(&args(&data, &t.path().join("none"), &["--resume"]));
    assert!(stderr(&o).contains("holds no run"), "{}", stderr(&o));
}

#[test]
fn kill_9_at_any_moment_resumes_with_resume_alone() {
    let t = tempfile::tempdir().unwrap();
    let data = fnc_tests::synth_shards(t.path(), 4, 16, 2, 40, 3);
    let flags = ["--steps", "24", "--checkpoint-every", "1"];
    let whole = t.path().join("whole");
    ok(&run(&args(&data, &whole, &flags)));
    let out = t.path().join("killed");
    let a = args(&data, &out, &flags);
    let mut resume = a.clone();
    resume.push("--resume");
    // Kills at growing depths into the run, each a little later after a step
    // (a checkpoint is written after every step, so most land in one).
    let mut kills = 0;
    for (k, micros) in [
        (2, 0),
        (5, 300),
        (8, 900),
        (11, 1500),
        (14, 2500),
        (17, 4000),
        (20, 6000),
    ] {
        let first = kills == 0;
        kill_after(
            if first { &a } else { &resume },
            &out,
            k,
            Duration::from_micros(micros),
        );
        kills += 1;
        // Whatever the moment, the directory resumes: every step once.
        let s: Vec<u64> = steps(&out).iter().map(|x| x.0).collect();
        assert_eq!(
            s,
            (1..=s.len() as u64).collect::<Vec<_>>(),
            "after kill {kills}"
        );
        let ck = fnc_train::RunDir::new(&out).latest();
        assert!(ck.is_ok(), "after kill {kills}: {:?}", ck.err());
    }
    ok(&run(&resume));
    assert_eq!(
        steps(&out),
        steps(&whole),
        "the killed run logged another run"
    );
    let ck = fnc_train::RunDir::new(&out).latest().unwrap().unwrap();
    assert_eq!(ck.state().step, 24);
}

#[test]
fn resume_from_an_older_checkpoint_cuts_the_log_back_to_it() {
    let t = tempfile::tempdir().unwrap();
    let data = fnc_tests::synth_shards(t.path(), 4, 16, 2, 40, 3);
    let out = t.path().join("run");
    ok(&run(&args(
        &data,
        &out,
        &["--steps", "6", "--checkpoint-every", "2"],
    )));
    let whole = steps(&out);
    // The latest (step 6) is damaged: --resume names it and the way on.
    let model = out.join("checkpoints/step-00000006/model.safetensors");
    let mut bytes = std::fs::read(&model).unwrap();
    let n = bytes.len();
    bytes[n - 5] ^= 1;
    std::fs::write(&model, &bytes).unwrap();
    let o = run(&args(&data, &out, &["--resume", "--steps", "8"]));
    let e = stderr(&o);
    assert!(!o.status.success(), "resumed over a damaged checkpoint");
    assert!(
        e.contains("model.safetensors")
            && e.contains("--resume-from")
            && e.contains("step-00000004"),
        "{e}"
    );
    assert_eq!(steps(&out), whole, "the refused resume touched the log");
    let older = out.join("checkpoints/step-00000004");
    let o = run(&args(
        &data,
        &out,
        &["--resume-from", older.to_str().unwrap(), "--steps", "6"],
    ));
    ok(&o);
    assert_eq!(steps(&out), whole, "steps 5 and 6 redone, once each");
    assert!(
        out.join("checkpoints/superseded-step-00000006").is_dir(),
        "kept aside"
    );
}
