//! Every numeric flag of fnc-eval outside its documented range, and every flag
//! the chosen command would not use, is refused with an error naming the flag
//! as typed, before any run is read or anything is written.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use fnc_tests::tree;

/// Runs fnc-eval with `args` in `dir` (holding an empty run directory `run`)
/// and checks that it is refused naming `flag` and `also`, with nothing written.
fn refused(dir: &Path, cmd: &str, flag: &str, value: &str, also: &str) {
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    let run = run.to_str().unwrap();
    let mut args = vec![cmd];
    if cmd == "compare" {
        args.push(run);
    } else {
        args.extend(["--run", run, "--device", "cpu"]);
    }
    args.extend([flag, value]);
    let before = tree(dir);
    let o = assert_cmd::Command::cargo_bin("fnc-eval")
        .unwrap()
        .current_dir(dir)
        .args(&args)
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{args:?} was accepted");
    assert!(
        err.contains(flag) && err.contains(also) && !err.contains("panicked"),
        "{args:?}: {err}"
    );
    assert_eq!(tree(dir), before, "{args:?} wrote files");
}

#[test]
fn bad_numeric_flags_are_named_and_nothing_is_written() {
    let t = tempfile::tempdir().unwrap();
    // No run is needed: the flags are judged before the run is looked at (the
    // run directory exists, so that an error about it would not name the flag).
    // (command, flag, value, what else the error must say).
    let rows: &[(&str, &str, &str, &str)] = &[
        ("linear", "--epochs", "0", "1..=10000"),
        ("linear", "--epochs", "100000000", "1..=10000"),
        ("linear", "--epochs", "-1", ""),
        ("linear", "--lr", "0", "(0, 100]"),
        ("linear", "--lr", "-0.1", "(0, 100]"),
        ("linear", "--lr", "NaN", "(0, 100]"),
        ("linear", "--lr", "inf", "(0, 100]"),
        ("linear", "--lr", "1e9", "(0, 100]"),
        ("linear", "--batch-size", "0", "1..="),
        ("linear", "--batch-size", "1000000000000", "1..="),
        ("linear", "--batch-size", "-1", ""),
        ("linear", "--seed", "-1", ""),
        ("finetune", "--fraction", "0", "(0, 1]"),
        ("finetune", "--fraction", "-0.5", "(0, 1]"),
        ("finetune", "--fraction", "1.5", "(0, 1]"),
        ("finetune", "--fraction", "NaN", "(0, 1]"),
        ("finetune", "--from-head-layer", "2", "0 or 1"),
        ("finetune", "--from-head-layer", "-1", ""),
        ("finetune", "--epochs", "0", "1..=10000"),
        ("finetune", "--epochs", "99999999999", "1..=10000"),
        ("finetune", "--batch-size", "0", "1..="),
        ("finetune", "--batch-size", "99999999999", "1..="),
        ("finetune", "--lr", "NaN", "(0, 100]"),
        ("finetune", "--lr", "-1", "(0, 100]"),
        ("finetune", "--lr", "inf", "(0, 100]"),
        ("finetune", "--seed", "-1", ""),
        // k-NN draws nothing at random: a seed without --baseline is unused.
        ("knn", "--seed", "5", "--baseline"),
        ("knn", "--seed", "-1", ""),
        ("compare", "--epochs", "0", "1..=10000"),
        ("compare", "--epochs", "100000000", "1..=10000"),
        ("compare", "--epochs", "-1", ""),
    ];
    // Each row in its own directory; two at a time (loading libtorch is most
    // of each run).
    std::thread::scope(|scope| {
        for (k, half) in rows.chunks(rows.len().div_ceil(2)).enumerate() {
            let base = t.path().join(format!("worker{k}"));
            scope.spawn(move || {
                for (i, &(cmd, flag, value, also)) in half.iter().enumerate() {
                    refused(&base.join(i.to_string()), cmd, flag, value, also);
                }
            });
        }
    });
}
