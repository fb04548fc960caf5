//! `--fn-start-step N`: the steps before N are those of `--fn-strategy none`
//! bit for bit (the same weights, batches and draws), step N cancels; the
//! start is recorded in the config and kept on resume.
#![allow(clippy::unwrap_used)]

use std::path::Path;

mod runs;
use runs::*;

fn lines(out: &Path) -> Vec<fnc_train::StepMetrics> {
    fnc_train::read_metrics(&out.join("metrics.jsonl")).unwrap()
}

#[test]
fn steps_before_the_start_are_simclrs_bit_for_bit() {
    let t = tempfile::tempdir().unwrap();
    let data = shards(t.path());
    let none = t.path().join("none");
    let late = t.path().join("late");
    let early = t.path().join("early");
    train(&args(&data, &none, "5", &["--fn-strategy", "none"]));
    train(&args(
        &data,
        &late,
        "5",
        &["--fn-strategy", "attraction", "--fn-start-step", "4"],
    ));
    train(&args(&data, &early, "5", &["--fn-strategy", "attraction"]));
    let (n, l, e) = (lines(&none), lines(&late), lines(&early));
    for k in 0..3 {
        // Equal as logged: the loss, |F_i| and the detection figures.
        assert_eq!(n[k].loss, l[k].loss, "step {}", k + 1);
        assert_eq!(n[k].mean_fn, l[k].mean_fn, "step {}", k + 1);
        assert_eq!(n[k].fn_precision, l[k].fn_precision, "step {}", k + 1);
    }
    // Cancelling from step 1 changes the loss at once (detection finds some
    // false negatives: top-k 2), so the equality above is not vacuous.
    assert!(e[0].mean_fn > 0.0);
    assert_ne!(e[0].loss, n[0].loss);
    // From step 4 on it cancels: the first later step that detects false
    // negatives (a step may detect none) has a loss other than SimCLR's.
    let k = (3..5)
        .find(|&k| l[k].mean_fn > 0.0)
        .expect("some false negatives detected at step 4 or 5");
    assert_ne!(l[k].loss, n[k].loss, "step {}", k + 1);
    assert!((3..k).all(|j| l[j].loss == n[j].loss));
    // Parameters after the run: the late start differs from SimCLR.
    let gaps = gaps(&none, &late);
    assert!(gaps.iter().any(|(_, d, _)| *d > 0.0));

    let cfg = std::fs::read_to_string(late.join("config.toml")).unwrap();
    assert!(cfg.contains("start_step = 4"), "{cfg}");
    // The start is the run's: a resume may not change it.
    let o = run(&args(
        &data,
        &late,
        "6",
        &[
            "--fn-strategy",
            "attraction",
            "--fn-start-step",
            "2",
            "--resume",
        ],
    ));
    assert!(!o.status.success());
    assert!(
        fnc_tests::stderr(&o).contains("--fn-start-step"),
        "{}",
        fnc_tests::stderr(&o)
    );
    let o = run(&args(&data, &late, "6", &["--fn-start-step", "0"]));
    assert!(!o.status.success());
    assert!(
        fnc_tests::stderr(&o).contains("--fn-start-step"),
        "{}",
        fnc_tests::stderr(&o)
    );
}

#[test]
fn a_branch_from_a_simclr_run_is_the_run_that_switches_fnc_on_there() {
    let t = tempfile::tempdir().unwrap();
    let data = shards(t.path());
    let parent = t.path().join("simclr");
    let branch = t.path().join("branch");
    let whole = t.path().join("whole");
    // SimCLR on a 5-step schedule, stopped after step 3 (checkpointed), then
    // FNC from step 4 in a new run.
    train(&args(
        &data,
        &parent,
        "5",
        &["--fn-strategy", "none", "--stop-at-step", "3"],
    ));
    train(&args(
        &data,
        &branch,
        "5",
        &[
            "--fn-strategy",
            "attraction",
            "--fn-start-step",
            "4",
            "--init-from",
            parent.to_str().unwrap(),
        ],
    ));
    // Its first checkpoint is its own, at the branch point.
    assert!(branch.join("checkpoints/step-00000003").is_dir());
    // A branch must say that its first three steps were SimCLR's.
    let o = run(&args(
        &data,
        &t.path().join("liar"),
        "5",
        &[
            "--fn-strategy",
            "attraction",
            "--init-from",
            parent.to_str().unwrap(),
        ],
    ));
    assert!(!o.status.success());
    assert!(
        fnc_tests::stderr(&o).contains("--fn-start-step 4"),
        "{}",
        fnc_tests::stderr(&o)
    );
    // The same in one run.
    train(&args(
        &data,
        &whole,
        "5",
        &["--fn-strategy", "attraction", "--fn-start-step", "4"],
    ));
    let (p, b, w) = (lines(&parent), lines(&branch), lines(&whole));
    assert_eq!(b.len(), 5, "the parent's 3 steps, then 2 of its own");
    assert_eq!(&b[..3], &p[..], "the parent's log, copied");
    for k in 3..5 {
        assert_eq!(b[k].loss, w[k].loss, "step {}", k + 1);
        assert_eq!(b[k].mean_fn, w[k].mean_fn, "step {}", k + 1);
    }
    // The parent is untouched, and resumes to its end: the uninterrupted
    // SimCLR run of 5 steps.
    assert_eq!(lines(&parent).len(), 3);
    train(&args(
        &data,
        &parent,
        "5",
        &["--fn-strategy", "none", "--resume"],
    ));
    let simclr = t.path().join("simclr5");
    train(&args(&data, &simclr, "5", &["--fn-strategy", "none"]));
    let (p5, s5) = (lines(&parent), lines(&simclr));
    assert_eq!(p5.len(), 5);
    for k in 0..5 {
        assert_eq!(p5[k].loss, s5[k].loss, "step {}", k + 1);
    }
    // A branch may not change what was learned.
    let o = run(&args(
        &data,
        &t.path().join("other"),
        "5",
        &["--init-from", parent.to_str().unwrap(), "--lr", "0.2"],
    ));
    assert!(!o.status.success());
    assert!(
        fnc_tests::stderr(&o).contains("--lr") && fnc_tests::stderr(&o).contains("--init-from"),
        "{}",
        fnc_tests::stderr(&o)
    );
}
