//! Data-parallel training on the CPU over Gloo and loopback: 2 ranks train as
//! one process holding the global batch, resume exactly, fail clearly and in
//! bounded time, and start the same under torchrun.
#![cfg(feature = "dist")]
#![allow(clippy::unwrap_used)]

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use fnc_tests::stderr;
use tch::Tensor;

mod runs;
use runs::*;

#[test]
fn two_ranks_train_as_one_process_on_the_global_batch() {
    let t = tempfile::tempdir().unwrap();
    let data = shards(t.path());
    let arms: [(&str, Vec<&str>); 3] = [
        ("in-batch", vec![]),
        ("memory", vec!["--memory", "4"]),
        // The noisy oracle draws for the global batch: each rank its rows.
        (
            "noisy-oracle",
            vec!["--fn-detect", "oracle", "--fn-oracle-precision", "0.5"],
        ),
    ];
    for (name, extra) in arms {
        let dir = |s: &str| t.path().join(format!("{name}-{s}"));
        let mut ranks = extra.clone();
        ranks.extend(["--nproc-per-node", "2"]);
        let mut each_step = extra.clone();
        each_step.extend(["--checkpoint-every", "1"]);
        let mut ranks_each = ranks.clone();
        ranks_each.extend(["--checkpoint-every", "1"]);
        // One step: equal to float precision, up to ReLU kinks; one thread
        // in every process, so that only the ranks' sums are in other orders.
        train_threads(&args(&data, &dir("1-first"), "1", &each_step), "1");
        train_threads(&args(&data, &dir("2-first"), "1", &ranks_each), "1");
        assert_same_first_step(&dir("1-first"), &dir("2-first"), name);
        // Three steps: within the noise of another thread count.
        train_threads(&args(&data, &dir("1"), "3", &extra), "2");
        train_threads(&args(&data, &dir("1-noise"), "3", &extra), "1");
        train(&args(&data, &dir("2"), "3", &ranks));
        assert_within_noise(&dir("1"), &dir("2"), &dir("1-noise"), name);
        // One process reads the device once a step (the loss and the FN
        // counts together); ranks also wait for Gloo's collectives.
        assert_eq!(host_syncs(&dir("1")), vec![1, 1, 1], "{name}");
        assert!(host_syncs(&dir("2")).iter().all(|&n| n > 2), "{name}");
    }
    // Per-rank BatchNorm statistics are another computation.
    let own = t.path().join("own-bn");
    train(&args(
        &data,
        &own,
        "3",
        &["--nproc-per-node", "2", "--sync-bn", "false"],
    ));
    let (a, b) = (metrics(&t.path().join("in-batch-1")), metrics(&own));
    assert!(
        (a[0].0 - b[0].0).abs() > 1e-4,
        "per-rank BatchNorm gave the global loss {} = {}",
        a[0].0,
        b[0].0
    );
}

/// A first step's parameters, as `first_step_verdict` reads them: each
/// tensor of a 2-block model plus a head, `a` and `b` with `b` moved by `moves`
/// (name, first element, count, by).
fn first_steps(moves: &[(&str, i64, i64, f64)]) -> Vec<Vec<(String, Tensor)>> {
    let shapes: [(&str, &[i64]); 11] = [
        ("features.0.weight", &[4, 3, 3, 3]),
        ("features.1.bias", &[4]),
        ("features.1.running_mean", &[4]),
        ("features.1.weight", &[4]),
        ("features.3.weight", &[4, 4, 3, 3]),
        ("features.4.bias", &[4]),
        ("features.4.running_mean", &[4]),
        ("features.4.weight", &[4]),
        ("head.0.weight", &[8, 4]),
        ("head.1.bias", &[8]),
        ("head.1.running_mean", &[8]),
    ];
    tch::manual_seed(0);
    let a: Vec<(String, Tensor)> = shapes
        .iter()
        .map(|(n, s)| {
            (
                n.to_string(),
                Tensor::randn(*s, (tch::Kind::Float, tch::Device::Cpu)) * 0.1,
            )
        })
        .collect();
    let b = a
        .iter()
        .map(|(n, t)| {
            let t = t.copy();
            for &(name, first, count, by) in moves {
                if name == n {
                    let _ = t.flatten(0, -1).narrow(0, first, count).g_add_scalar_(by);
                }
            }
            (n.clone(), t)
        })
        .collect();
    vec![a, b]
}

#[test]
fn the_first_step_check_takes_a_kink_and_refuses_an_error() {
    let verdict = |moves: &[(&str, i64, i64, f64)]| {
        let v = first_steps(moves);
        first_step_verdict(&v[0], &v[1], true)
    };
    assert_eq!(verdict(&[]), Ok(()));
    // A kink after features.4 in channel 2, spread back upstream.
    let kink = [
        ("features.4.bias", 2, 1, 1e-3),
        ("features.3.weight", 0, 144, 2e-4),
        ("features.1.bias", 0, 4, 3e-4),
        ("features.0.weight", 0, 108, 1e-4),
    ];
    assert_eq!(verdict(&kink), Ok(()));
    // The same kink with a second one upstream, larger than the first.
    let mut two = kink.to_vec();
    two.push(("features.1.weight", 3, 1, 3e-3));
    assert_eq!(verdict(&two), Ok(()));
    // Running statistics are not compared where they may differ.
    let v = first_steps(&[("features.1.running_mean", 0, 4, 1e-2)]);
    assert_eq!(first_step_verdict(&v[0], &v[1], false), Ok(()));
    // Errors: a deeper weight in every element; a BatchNorm in every channel;
    // upstream of a kink, a share of a step (a gradient left unreduced); the
    // forward pass; a deep weight by 1e-4 of its scale in one element.
    for (moves, name) in [
        (vec![("head.0.weight", 0, 32, 1e-3)], "head.0.weight"),
        (vec![("head.1.bias", 0, 8, 1e-3)], "head.1.bias"),
        (
            vec![
                ("features.4.bias", 2, 1, 1e-3),
                ("features.1.bias", 0, 4, 2e-2),
            ],
            "features.1.bias",
        ),
        (
            vec![("features.1.running_mean", 0, 1, 1e-4)],
            "features.1.running_mean",
        ),
        (vec![("head.0.weight", 5, 1, 3e-5)], "head.0.weight"),
    ] {
        let e = verdict(&moves).unwrap_err();
        assert!(e.starts_with(name), "{moves:?}: {e}");
    }
}

#[test]
fn a_two_rank_run_resumes_exactly_and_only_with_two_ranks() {
    let t = tempfile::tempdir().unwrap();
    let data = shards(t.path());
    let full = t.path().join("full");
    train(&args(&data, &full, "12", &["--nproc-per-node", "2"]));
    let part = t.path().join("part");
    let a = args(&data, &part, "12", &["--nproc-per-node", "2"]);
    // The launcher and its ranks in one process group, killed together.
    let mut child = Command::new(bin())
        .args(&a)
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while std::fs::read_to_string(part.join("metrics.jsonl"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
        < 5
    {
        assert!(t0.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    let pgid = format!("-{}", child.id());
    Command::new("kill")
        .args(["-9", "--", &pgid])
        .status()
        .unwrap();
    child.wait().unwrap();
    assert!(metrics(&part).len() < 12, "the kill came too late");
    // Resuming with another world size is refused, naming both.
    let mut one = args(&data, &part, "12", &[]);
    one.push("--resume");
    let o = run(&one);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("2 process") && stderr(&o).contains("not 1"),
        "{}",
        stderr(&o)
    );
    let mut again = a.clone();
    again.push("--resume");
    train(&again);
    let (x, y) = (metrics(&full), metrics(&part));
    assert_eq!(
        x, y,
        "the resumed 2-rank run logs what the uninterrupted one does"
    );
}

/// Starts rank `rank` of `world` by hand with torchrun's variables.
fn rank(args: &[&str], rank: usize, world: usize, addr: &str, port: u16) -> std::process::Child {
    Command::new(bin())
        .args(args)
        .env("RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("LOCAL_RANK", rank.to_string())
        .env("MASTER_ADDR", addr)
        .env("MASTER_PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_dead_rank_stops_the_other_in_bounded_time_naming_it() {
    let t = tempfile::tempdir().unwrap();
    let data = shards(t.path());
    let out = t.path().join("run");
    let mut a = args(&data, &out, "500", &[]);
    a.extend(["--dist-timeout", "10", "--checkpoint-every", "2"]);
    let port = free_port();
    let r0 = rank(&a, 0, 2, "127.0.0.1", port);
    let mut r1 = rank(&a, 1, 2, "127.0.0.1", port);
    let t0 = Instant::now();
    while metrics_len(&out) < 4 {
        assert!(t0.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    r1.kill().unwrap();
    r1.wait().unwrap();
    let killed = Instant::now();
    let o = r0.wait_with_output().unwrap();
    let waited = killed.elapsed();
    assert!(!o.status.success());
    assert!(waited < Duration::from_secs(45), "rank 0 took {waited:?}");
    let e = stderr(&o);
    assert!(e.contains("rank 0 of 2") && e.contains("failed"), "{e}");
    assert!(e.contains("rank 1 stopped"), "the dead rank is named: {e}");
    // The last checkpoint is whole: it opens and names its step.
    let ck = fnc_train::RunDir::new(&out).latest().unwrap().unwrap();
    assert!(ck.state().step >= 2 && ck.dir().join("model.safetensors").exists());
}

#[test]
fn a_hung_rank_stops_the_other_after_the_timeout() {
    let t = tempfile::tempdir().unwrap();
    let data = shards(t.path());
    let out = t.path().join("run");
    let mut a = args(&data, &out, "500", &[]);
    a.extend(["--dist-timeout", "5"]);
    let port = free_port();
    let r0 = rank(&a, 0, 2, "127.0.0.1", port);
    let mut r1 = rank(&a, 1, 2, "127.0.0.1", port);
    let t0 = Instant::now();
    while metrics_len(&out) < 3 {
        assert!(t0.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Stopped, not dead: its sockets stay open, so only the timeout can tell.
    let pid = r1.id().to_string();
    Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    let stopped = Instant::now();
    let o = r0.wait_with_output().unwrap();
    let waited = stopped.elapsed();
    Command::new("kill").args(["-9", &pid]).status().unwrap();
    r1.wait().unwrap();
    assert!(!o.status.success());
    assert!(waited < Duration::from_secs(40), "rank 0 took {waited:?}");
    let e = stderr(&o);
    assert!(
        e.contains("rank 0 of 2") && e.to_lowercase().contains("timed out"),
        "{e}"
    );
    assert!(e.contains("rank 1 stopped"), "the hung rank is named: {e}");
    assert!(!e.contains("frame #"), "no C++ backtrace: {e}");
}

#[test]
fn ranks_stop_when_their_launcher_is_killed() {
    let t = tempfile::tempdir().unwrap();
    let data = shards(t.path());
    let out = t.path().join("run");
    let a = args(&data, &out, "500", &["--nproc-per-node", "2"]);
    let mut launcher = Command::new(bin())
        .args(&a)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while metrics_len(&out) < 2 {
        assert!(t0.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Only the launcher: its ranks must notice and stop.
    launcher.kill().unwrap();
    launcher.wait().unwrap();
    let killed = Instant::now();
    let marker = out.to_str().unwrap().to_string();
    while !processes_naming(&marker).is_empty() {
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "ranks still running: {:?}",
            processes_naming(&marker)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Pids of live processes whose command line mentions `text` (from /proc).
fn processes_naming(text: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        let zombie = status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'));
        if !zombie && String::from_utf8_lossy(&cmd).contains(text) {
            pids.push(pid);
        }
    }
    pids
}

fn metrics_len(out: &Path) -> usize {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[test]
fn rendezvous_and_batch_errors_are_clear_and_bounded() {
    let t = tempfile::tempdir().unwrap();
    let data = shards(t.path());
    let out = t.path().join("run");
    let mut a = args(&data, &out, "4", &[]);
    a.extend(["--dist-timeout", "3"]);
    // A world of 2 where only rank 0 arrives.
    let t0 = Instant::now();
    let o = rank(&a, 0, 2, "127.0.0.1", free_port())
        .wait_with_output()
        .unwrap();
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    assert!(e.contains("rank 0 of 2") && e.contains("rendezvous"), "{e}");
    // A rank that cannot reach MASTER_ADDR:MASTER_PORT (nothing listens).
    let port = free_port();
    let t0 = Instant::now();
    let o = rank(&a, 1, 2, "127.0.0.1", port)
        .wait_with_output()
        .unwrap();
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    assert!(
        e.contains("rank 1 of 2") && e.contains(&format!("MASTER_PORT={port}")),
        "{e}"
    );
    // A global batch that does not divide among the ranks.
    let mut b = args(&data, &out, "4", &["--nproc-per-node", "2"]);
    b.extend(["--batch-size", "15"]);
    let o = run(&b);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--batch-size"), "{}", stderr(&o));
    // A rank beyond the world.
    let o = rank(&a, 2, 2, "127.0.0.1", free_port())
        .wait_with_output()
        .unwrap();
    assert!(stderr(&o).contains("rank 2 is not below the world size 2"));
}

#[test]
fn torchrun_starts_the_same_two_rank_run() {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/torchrun");
    assert!(
        venv.exists(),
        "{} is missing: `make setup` creates the venv with torch",
        venv.display()
    );
    let t = tempfile::tempdir().unwrap();
    let data = shards(t.path());
    let ours = t.path().join("ours");
    let o = Command::new(bin())
        .args(args(&data, &ours, "3", &["--nproc-per-node", "2"]))
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let theirs = t.path().join("torchrun");
    let port = free_port().to_string();
    let bin = bin();
    let mut cmd = vec![
        "--no-python",
        "--nproc-per-node",
        "2",
        "--master-port",
        &port,
        bin.to_str().unwrap(),
    ];
    let a = args(&data, &theirs, "3", &[]);
    cmd.extend(a.iter());
    let o = Command::new(&venv)
        .args(&cmd)
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // One OpenMP thread per rank on both sides: the same computation.
    assert_eq!(metrics(&ours), metrics(&theirs), "torchrun");
    for (name, diff, _) in gaps(&ours, &theirs) {
        assert_eq!(diff, 0.0, "torchrun: {name}");
    }
}

/// Starts both ranks by hand (rank r with `args[r]`), waits for both.
fn both(a0: &[&str], a1: &[&str]) -> (Output, Output) {
    let port = free_port();
    let r0 = rank(a0, 0, 2, "127.0.0.1", port);
    let r1 = rank(a1, 1, 2, "127.0.0.1", port);
    (
        r0.wait_with_output().unwrap(),
        r1.wait_with_output().unwrap(),
    )
}

#[test]
fn ranks_that_see_other_files_resume_rank_0s_checkpoint() {
    let t = tempfile::tempdir().unwrap();
    let data = shards(t.path());
    // The reference: 3 steps, then resumed to 6, both ranks seeing the run
    // (with per-rank BatchNorm, which rank 1 below is not told).
    let full = t.path().join("full");
    let first = ["--sync-bn", "false", "--nproc-per-node", "2"];
    train(&args(&data, &full, "3", &first));
    train(&args(
        &data,
        &full,
        "6",
        &["--nproc-per-node", "2", "--resume"],
    ));
    let part = t.path().join("part");
    train(&args(&data, &part, "3", &first));
    // Rank 1 has no shared file system: its --out is empty, and it is given
    // only --resume, its --out and its device; rank 0 gives it the config.
    let elsewhere = t.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let a0 = args(&data, &part, "6", &["--resume"]);
    let e = elsewhere.to_str().unwrap();
    let a1 = vec![
        "--resume",
        "--out",
        e,
        "--device",
        "cpu",
        "--dist-timeout",
        "60",
    ];
    let (o0, o1) = both(&a0, &a1);
    assert!(o0.status.success(), "{}", stderr(&o0));
    assert!(o1.status.success(), "{}", stderr(&o1));
    assert_eq!(
        metrics(&full),
        metrics(&part),
        "rank 1 trained rank 0's model"
    );
    assert!(
        std::fs::read_dir(&elsewhere).unwrap().next().is_none(),
        "rank 1 wrote nothing"
    );
    // A rank that resolved another config is refused, naming the flag, and
    // rank 0 names it.
    let fresh = t.path().join("fresh");
    let a0 = args(&data, &fresh, "3", &[]);
    let a1 = args(&data, &fresh, "3", &["--temperature", "0.2"]);
    let t0 = Instant::now();
    let (o0, o1) = both(&a0, &a1);
    assert!(!o0.status.success() && !o1.status.success());
    assert!(
        stderr(&o1).contains("invalid option --temperature") && stderr(&o1).contains("rank 0"),
        "{}",
        stderr(&o1)
    );
    assert!(
        stderr(&o0).contains("resolved another config than rank 0's"),
        "{}",
        stderr(&o0)
    );
    assert!(t0.elapsed() < Duration::from_secs(40), "{:?}", t0.elapsed());
}

#[test]
fn bad_records_are_counted_over_the_ranks_and_every_rank_stops_alike() {
    let t = tempfile::tempdir().unwrap();
    let data = shards(t.path());
    let shard = data.join("train-00000.fncs");
    let mut bytes = std::fs::read(&shard).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&shard, bytes).unwrap();
    let out = t.path().join("run");
    let a = args(&data, &out, "40", &[]);
    let t0 = Instant::now();
    let (o0, o1) = both(&a, &a);
    // Neither waits out the other: both stop at the same step, at once.
    assert!(t0.elapsed() < Duration::from_secs(50), "{:?}", t0.elapsed());
    let (e0, e1) = (stderr(&o0), stderr(&o1));
    assert!(!o0.status.success() && !o1.status.success(), "{e0}\n{e1}");
    let said = |e: &str| -> String {
        e.lines()
            .find(|l| l.contains("more than --max-bad-records 0"))
            .map(|l| l.split("more than").nth(1).unwrap_or_default().to_string())
            .unwrap_or_else(|| panic!("no bad-record error: {e}"))
    };
    assert_eq!(said(&e0), said(&e1), "the same message on every rank");
    assert!(said(&e0).contains("train-00000.fncs"), "{e0}");
    // With a budget of one, the run goes on over both ranks and counts it once.
    let out = t.path().join("budget");
    let a = args(&data, &out, "12", &["--max-bad-records", "1"]);
    let (o0, o1) = both(&a, &a);
    assert!(o0.status.success(), "{}", stderr(&o0));
    assert!(o1.status.success(), "{}", stderr(&o1));
    let last = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let last: fnc_train::StepMetrics = serde_json::from_str(last.lines().last().unwrap()).unwrap();
    assert_eq!(last.bad_records, 1);
}

/// The k-NN monitor's value at each step it ran.
fn knn(out: &Path) -> Vec<f64> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let m: fnc_train::StepMetrics = serde_json::from_str(l).unwrap();
            m.knn_top1
        })
        .collect()
}

#[test]
fn the_knn_monitor_is_split_over_the_ranks_and_holds_none_in_a_collective() {
    let t = tempfile::tempdir().unwrap();
    // 2,400 images: on one thread a ResNet-18 takes well over 5 s to embed
    // them all, which a rank waiting in the next step's collective would not
    // survive at --dist-timeout 5.
    let data = fnc_tests::synth_shards(t.path(), 4, 500, 100, 64, 3);
    let run = |out: &Path, extra: &[&str]| {
        let mut a = vec![
            "--arch",
            "resnet18",
            "--image-size",
            "64",
            "--support",
            "0",
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
            "--seed",
            "3",
            // Updates a hundred-millionth of the usual: a ReLU kink (a
            // pre-activation within float noise of 0, on either side in the
            // two runs) moves one BatchNorm channel's step by ~1e-3 of its
            // gradient, which at lr 0.05 shifts enough features to change a
            // few k-NN votes; here it moves nothing the monitor can see.
            "--lr",
            "1e-7",
            "--steps",
            "2",
            "--knn-every",
            "1",
            "--dist-timeout",
            "5",
        ];
        a.extend(extra);
        let o = Command::new(bin())
            .args(&a)
            .env("OMP_NUM_THREADS", "1")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    };
    let one = t.path().join("one");
    let two = t.path().join("two");
    run(&one, &[]);
    run(&two, &["--nproc-per-node", "2"]);
    let (a, b) = (knn(&one), knn(&two));
    assert_eq!((a.len(), b.len()), (2, 2));
    // Step 1's encoder is the same to float precision (the update is too small
    // for a kink to show): the split monitor gives one process's value
    // (within one of the 400 val images, for ties).
    assert!(
        (a[0] - b[0]).abs() <= 100.0 / 400.0 + 1e-9,
        "{a:?} vs {b:?}"
    );
}

#[test]
fn recompute_on_two_ranks_with_sync_bn_is_the_plain_step() {
    let t = tempfile::tempdir().unwrap();
    let data = shards(t.path());
    for (name, extra) in [
        ("in-batch", vec![]),
        ("memory", vec!["--memory", "4"]),
        // Chunks of 4 and 4 of each rank's 8 images, chunk c of both ranks
        // in one synchronised BatchNorm, replayed segment by segment or not.
        ("micro-batch", vec!["--micro-batch", "4"]),
    ] {
        let dir = |s: &str| t.path().join(format!("{name}-{s}"));
        let mut plain = extra.clone();
        plain.extend(["--nproc-per-node", "2", "--checkpoint-every", "1"]);
        let mut again = plain.clone();
        again.push("--recompute");
        train(&args(&data, &dir("plain"), "1", &plain));
        train(&args(&data, &dir("recompute"), "1", &again));
        // Loss, FN statistics, parameters and running statistics.
        assert_same_first_step(&dir("plain"), &dir("recompute"), name);
    }
}

#[test]
fn micro_batches_of_one_process_are_two_ranks_without_sync_bn() {
    let t = tempfile::tempdir().unwrap();
    let data = shards(t.path());
    for (name, extra) in [("in-batch", vec![]), ("memory", vec!["--memory", "4"])] {
        let dir = |s: &str| t.path().join(format!("{name}-{s}"));
        let mut ranks = extra.clone();
        ranks.extend(["--nproc-per-node", "2", "--sync-bn", "false"]);
        let mut chunks = extra.clone();
        chunks.extend(["--micro-batch", "8"]);
        train_threads(&args(&data, &dir("ranks"), "1", &ranks), "1");
        train_threads(&args(&data, &dir("chunks"), "1", &chunks), "1");
        let (a, b) = (metrics(&dir("ranks")), metrics(&dir("chunks")));
        assert!(
            (a[0].0 - b[0].0).abs() <= 1e-6 * a[0].0.abs(),
            "{name}: first loss {} vs {}",
            a[0].0,
            b[0].0
        );
        assert_eq!((a[0].1, a[0].2), (b[0].1, b[0].2), "{name}: FN statistics");
        // The parameters after the step, up to ReLU kinks; the running
        // statistics differ (rank 0 saves its chunk's, one process has moved
        // through both chunks).
        let (pr, pc) = (params(&dir("ranks")), params(&dir("chunks")));
        if let Err(e) = first_step_verdict(&pr, &pc, false) {
            panic!("{name}: {e}");
        }
        let running: Vec<_> = gaps(&dir("ranks"), &dir("chunks"))
            .into_iter()
            .filter(|(n, _, _)| n.contains("running_"))
            .collect();
        assert!(
            running.iter().any(|(_, diff, scale)| *diff > 1e-4 * scale),
            "{name}: running statistics of two chunks equal one rank's"
        );
        // With the whole batch in one chunk, BatchNorm is the global one.
        let whole = dir("whole");
        let mut one = extra.clone();
        one.extend(["--micro-batch", "16"]);
        train(&args(&data, &whole, "1", &one));
        assert!(
            (metrics(&whole)[0].0 - a[0].0).abs() > 1e-4,
            "{name}: per-chunk BatchNorm gave the whole batch's loss"
        );
    }
}
