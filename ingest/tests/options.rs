#![allow(clippy::unwrap_used)]
//! Every numeric flag of fnc-ingest outside its documented range is refused
//! with an error naming the flag as typed, before anything is written.

mod common;

use common::*;

#[test]
fn bad_numeric_flags_are_named_and_nothing_is_written() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    let opts = fnc_ingest::SynthOptions {
        classes: 2,
        per_class: 3,
        val_per_class: 1,
        size: 16,
        seed: 0,
    };
    fnc_ingest::synth(&src, &opts).unwrap();
    let (out, synth_dir) = (t.path().join("out"), t.path().join("synth"));
    let ingest = |flag: &'static str, value: &'static str| {
        (
            flag,
            vec![
                p(&src).to_string(),
                "--out".into(),
                p(&out).into(),
                flag.into(),
                value.into(),
            ],
        )
    };
    let synth = |flag: &'static str, value: &'static str| {
        (
            flag,
            vec![
                "synth".to_string(),
                p(&synth_dir).into(),
                flag.into(),
                value.into(),
            ],
        )
    };
    // (the flag the error must name, the command line): each value outside
    // the flag's documented range.
    let mut rows = vec![
        ingest("--max-side", "1"),
        ingest("--max-side", "70000"),
        ingest("--max-side", "-1"),
        ingest("--quality", "0"),
        ingest("--quality", "101"),
        ingest("--quality", "300"),
        ingest("--quality", "-5"),
        ingest("--shard-size", "0"),
        ingest("--shard-size", "100"),
        ingest("--shard-size", "17G"),
        ingest("--shard-size", "99999999999G"),
        ingest("--shard-size", "-1"),
        ingest("--threads", "100000"),
        ingest("--threads", "-1"),
        ingest("--seed", "-1"),
        ingest("--val-fraction", "-0.1"),
        ingest("--val-fraction", "1"),
        ingest("--val-fraction", "NaN"),
        ingest("--val-fraction", "inf"),
        ingest("--max-errors", "-1"),
        ingest("--stop-after-shards", "0"),
        ingest("--stop-after-shards", "-1"),
        synth("--classes", "0"),
        synth("--classes", "100000"),
        synth("--classes", "-1"),
        synth("--per-class", "0"),
        synth("--per-class", "1000000"),
        synth("--per-class", "-1"),
        synth("--val-per-class", "1000000"),
        synth("--val-per-class", "-1"),
        synth("--size", "0"),
        synth("--size", "8"),
        synth("--size", "5000"),
        synth("--seed", "-1"),
    ];
    // Each flag in range, their product not.
    let (flag, mut args) = synth("--classes", "10000");
    args.extend(["--per-class".into(), "100000".into()]);
    rows.push((flag, args));
    let before = tree(t.path());
    for (flag, args) in rows {
        let o = bin()
            .current_dir(t.path())
            .args(&args)
            .timeout(std::time::Duration::from_secs(20))
            .output()
            .unwrap();
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?} was accepted");
        assert!(
            err.contains(flag) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
        assert_eq!(tree(t.path()), before, "{args:?} wrote files");
    }
}
