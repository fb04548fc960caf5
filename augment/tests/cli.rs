//! The fnc-augment binary: preview and bench.
#![allow(clippy::unwrap_used)]

use std::path::Path;

fn shards(dir: &Path) -> std::path::PathBuf {
    fnc_tests::synth_shards(dir, 3, 10, 2, 48, 1)
}

fn augment(args: &[&str]) -> std::process::Output {
    assert_cmd::Command::cargo_bin("fnc-augment")
        .unwrap()
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn preview_is_identical_for_any_thread_count() {
    let t = tempfile::tempdir().unwrap();
    let out = shards(t.path());
    let mut pngs = Vec::new();
    for threads in ["1", "2"] {
        let png = t.path().join(format!("p{threads}.png"));
        let o = augment(&[
            "preview",
            "--shards",
            out.to_str().unwrap(),
            "--out",
            png.to_str().unwrap(),
            "--images",
            "3",
            "--support",
            "4",
            "--size",
            "64",
            "--support-size",
            "32",
            "--threads",
            threads,
            "--seed",
            "9",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        pngs.push(std::fs::read(&png).unwrap());
    }
    assert_eq!(pngs[0], pngs[1]);
    let img = image::load_from_memory(&pngs[0]).unwrap();
    // 3 rows; original + 6 views per row, each cell 64 px plus label and gaps.
    assert_eq!(img.width(), 7 * (64 + 4) + 4);
    assert_eq!(img.height(), 3 * (64 + 14 + 4) + 4);
}

#[test]
fn bench_reports_images_and_views_per_second() {
    let t = tempfile::tempdir().unwrap();
    let out = shards(t.path());
    let o = augment(&[
        "bench",
        "--shards",
        out.to_str().unwrap(),
        "--seconds",
        "0.5",
        "--batch-size",
        "8",
        "--support",
        "2",
        "--size",
        "32",
        "--support-size",
        "32",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ips = r["images_per_s"].as_f64().unwrap();
    let vps = r["views_per_s"].as_f64().unwrap();
    assert!(ips > 0.0);
    assert!((vps / ips - 4.0).abs() < 1e-9, "4 views per image");
}

#[test]
fn bench_op_names_itself_and_refuses_optional_ops() {
    let t = tempfile::tempdir().unwrap();
    let out = shards(t.path());
    let base = [
        "bench",
        "--shards",
        out.to_str().unwrap(),
        "--seconds",
        "0.2",
        "--batch-size",
        "8",
        "--support",
        "0",
        "--size",
        "32",
        "--json",
        "--op",
        "blur",
    ];
    let o = augment(&base);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["op"], "blur");
    // RandAugment would be dropped from a one-op timing: refused, not ignored.
    let o = augment(&[&base[..], &["--randaugment", "2,7"]].concat());
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--op") && err.contains("--randaugment"),
        "{err}"
    );
    // The default: the widest path this CPU has.
    let paths = fnc_augment::simd::available_paths();
    let default = paths.last().map_or("scalar", |p| p.name());
    assert_eq!(r["cpu_path"], default);
    // Every path this CPU has runs and is named; one it lacks is refused.
    for path in fnc_augment::simd::available_paths() {
        let o = augment(&[&base[..], &["--cpu-path", path.name()]].concat());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(r["cpu_path"], path.name());
    }
    let o = augment(&[&base[..], &["--cpu-path", "avx1024"]].concat());
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--cpu-path") && err.contains("scalar"),
        "{err}"
    );
}

#[test]
fn missing_shards_name_the_flag() {
    let o = augment(&["bench", "--shards", "/nonexistent/x"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--shards"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A dataset of 4 raw 8x8 records whose record 2 has no pixels (width 0).
fn dataset_with_an_empty_record(dir: &Path) -> std::path::PathBuf {
    use fnc_formats::{Encoding, RecordMeta, ShardWriter};
    let mut w = ShardWriter::new(dir.join("train-00000.fncs"));
    for i in 0..4u32 {
        let (width, bytes) = if i == 2 {
            (0, vec![])
        } else {
            (8, vec![90u8; 8 * 8 * 3])
        };
        w.push(
            &RecordMeta {
                label: i % 2,
                width,
                height: 8,
                encoding: Encoding::Raw,
                name: "x",
            },
            &bytes,
        );
    }
    fnc_tests::write_train_manifest(dir, w.finish().unwrap(), 4);
    dir.to_path_buf()
}

#[test]
fn a_record_without_pixels_is_named_by_shard_and_record() {
    let t = tempfile::tempdir().unwrap();
    let d = dataset_with_an_empty_record(t.path());
    let d = d.to_str().unwrap();
    let png = t.path().join("p.png");
    let views = ["--support", "1", "--size", "16", "--support-size", "16"];
    let runs = [
        vec![
            "preview",
            "--shards",
            d,
            "--images",
            "4",
            "--out",
            png.to_str().unwrap(),
        ],
        vec![
            "bench",
            "--shards",
            d,
            "--batch-size",
            "4",
            "--seconds",
            "5",
        ],
    ];
    for mut args in runs {
        args.extend(views);
        let o = augment(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?}");
        assert!(
            err.contains("train-00000.fncs: record 2") && err.contains("no pixels"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    assert!(!png.exists());
}
