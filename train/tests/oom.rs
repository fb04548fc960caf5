//! Out of memory is an error, not a crash: a resumed step that cannot
//! allocate (under an address-space limit) stops with a message naming the
//! step, the bytes and `fnc-train plan`, prints no panic or C++ backtrace,
//! leaves the last checkpoint as it was, and the run resumes without the
//! limit.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use fnc_tests::stderr;

/// A resnet50 step at 160 px on 16 images needs well over a GiB more than
/// starting and restoring the run does (about 1.5 GiB on the CPU).
fn args<'a>(data: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "--arch",
        "resnet50",
        "--image-size",
        "160",
        "--support",
        "0",
        "--batch-size",
        "16",
        "--shards",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--device",
        "cpu",
        "--workers",
        "1",
        "--warmup-epochs",
        "0",
        "--checkpoint-every",
        "1",
    ];
    a.extend(extra);
    a
}

fn command(a: &[&str]) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("fnc-train"));
    c.args(a);
    c
}

/// Runs `c` to the end; with its output, the highest `VmPeak` of
/// /proc/PID/status seen while it ran (its address space's high-water mark).
fn run_measured(mut c: Command) -> (Output, u64) {
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = PathBuf::from(format!("/proc/{}/status", child.id()));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let mut peak = 0u64;
    loop {
        let text = std::fs::read_to_string(&status).unwrap_or_default();
        let kib = text
            .lines()
            .find(|l| l.starts_with("VmPeak:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok());
        peak = peak.max(kib.unwrap_or(0) * 1024);
        if let Ok(done) = rx.recv_timeout(Duration::from_millis(5)) {
            return (done.unwrap(), peak);
        }
    }
}

/// fnc-train with arguments `a`, its address space limited to `bytes` (a
/// multiple of 1024) by the shell's `ulimit -v` before it starts.
fn limited(a: &[&str], bytes: u64) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("ulimit -v {} && exec \"$0\" \"$@\"", bytes / 1024))
        .arg(assert_cmd::cargo::cargo_bin("fnc-train"))
        .args(a);
    c
}

/// Every file under `dir` and its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fnc_tests::tree(dir)
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", stderr(o));
}

#[test]
fn a_step_that_cannot_allocate_stops_with_an_error_and_the_checkpoint_stays() {
    let t = tempfile::tempdir().unwrap();
    let data = fnc_tests::synth_shards(t.path(), 4, 16, 2, 40, 3);
    let out = t.path().join("run");
    ok(&command(&args(&data, &out, &["--steps", "1"]))
        .output()
        .unwrap());
    let checkpoints = out.join("checkpoints");
    // What starting and restoring the run takes: a resume with nothing to do.
    let (o, restored) = run_measured(command(&args(&data, &out, &["--steps", "1", "--resume"])));
    ok(&o);
    assert!(restored > 0, "no VmPeak read for the child");
    let before = files(&checkpoints);
    assert!(!before.is_empty(), "the first run wrote no checkpoint");

    // Room to start and restore, not for the step.
    let limit = restored + (512 << 20);
    let o = limited(&args(&data, &out, &["--steps", "3", "--resume"]), limit)
        .output()
        .unwrap();
    let e = stderr(&o);
    assert!(!o.status.success(), "the step fit under {limit} bytes: {e}");
    assert!(
        e.contains("resuming from the checkpoint of step 1"),
        "the run did not start: {e}"
    );
    for want in [
        "out of memory at step 2 on cpu",
        "bytes",
        "fnc-train plan",
        "The last good checkpoint is",
        format!("address-space limit (ulimit -v) of {limit} bytes").as_str(),
        "step-00000001",
    ] {
        assert!(e.contains(want), "{want:?} not in: {e}");
    }
    assert!(!e.contains("panicked"), "{e}");
    assert!(!e.contains("frame #"), "{e}");
    assert_eq!(files(&checkpoints), before, "the checkpoints changed");

    // Without the limit the run goes on from the same checkpoint.
    let o = command(&args(&data, &out, &["--steps", "2", "--resume"]))
        .output()
        .unwrap();
    ok(&o);
    assert!(
        stderr(&o).contains("resuming from the checkpoint of step 1"),
        "{}",
        stderr(&o)
    );
    assert!(checkpoints.join("step-00000002").is_dir());
}
