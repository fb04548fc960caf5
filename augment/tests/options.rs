//! Every numeric flag of fnc-augment outside its documented range is refused
//! with an error naming the flag as typed, before anything is written.
#![allow(clippy::unwrap_used)]

use fnc_tests::tree;

#[test]
fn bad_numeric_flags_are_named_and_nothing_is_written() {
    let t = tempfile::tempdir().unwrap();
    let shards = fnc_tests::synth_shards(t.path(), 2, 6, 1, 32, 1);
    let shards = shards.to_str().unwrap();
    let png = t.path().join("p.png");
    let png = png.to_str().unwrap();
    // (subcommand, flag, value): each value outside the flag's documented range.
    let rows: &[(&str, &str, &str)] = &[
        ("bench", "--seconds", "-1"),
        ("bench", "--seconds", "0"),
        ("bench", "--seconds", "NaN"),
        ("bench", "--seconds", "inf"),
        ("bench", "--seconds", "1e300"),
        ("bench", "--consumer-rate", "1e-300"),
        ("bench", "--consumer-rate", "-5"),
        ("bench", "--consumer-rate", "NaN"),
        ("bench", "--consumer-rate", "inf"),
        ("bench", "--batch-size", "0"),
        ("bench", "--batch-size", "1000000000000000"),
        ("bench", "--batch-size", "-1"),
        ("bench", "--threads", "100000"),
        ("bench", "--threads", "-2"),
        ("bench", "--support", "100000"),
        ("bench", "--support", "-1"),
        ("bench", "--size", "0"),
        ("bench", "--size", "100000"),
        ("bench", "--support-size", "4"),
        ("bench", "--support-size", "99999999999"),
        ("bench", "--solarize", "-0.5"),
        ("bench", "--solarize", "NaN"),
        ("bench", "--solarize", "2"),
        ("bench", "--color-strength", "-1"),
        ("bench", "--color-strength", "NaN"),
        ("bench", "--color-strength", "1e9"),
        ("bench", "--randaugment", "2,NaN"),
        ("bench", "--randaugment", "100,5"),
        ("bench", "--randaugment", "0,5"),
        ("bench", "--randaugment", "2,-1"),
        ("bench", "--seed", "-1"),
        ("preview", "--images", "0"),
        ("preview", "--images", "100000000"),
        ("preview", "--images", "-3"),
        ("preview", "--size", "0"),
        ("preview", "--threads", "100000"),
        ("preview", "--support", "100000"),
        ("preview", "--color-strength", "inf"),
    ];
    let before = tree(t.path());
    for &(cmd, flag, value) in rows {
        let mut args = vec![cmd, "--shards", shards, flag, value];
        if cmd == "preview" {
            args.extend(["--out", png]);
        } else {
            // A valid bench would run this long; a refused one returns at once.
            args.extend(if flag == "--seconds" {
                vec![]
            } else {
                vec!["--seconds", "30"]
            });
        }
        let o = assert_cmd::Command::cargo_bin("fnc-augment")
            .unwrap()
            .current_dir(t.path())
            .args(&args)
            .timeout(std::time::Duration::from_secs(20))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{cmd} {flag} {value} was accepted");
        assert!(
            err.contains(flag) && !err.contains("panicked"),
            "{cmd} {flag} {value}: {err}"
        );
        assert_eq!(tree(t.path()), before, "{cmd} {flag} {value} wrote files");
    }
}
