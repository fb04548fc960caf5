#![allow(clippy::unwrap_used)]
//! The fnc-ingest binary, end to end.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use fnc_formats::{Dataset, Encoding};
use jpeg_encoder::ColorType;

fn synth_tree(dir: &Path, per_class: &str) {
    let o = run(&[
        "synth",
        p(dir),
        "--classes",
        "4",
        "--per-class",
        per_class,
        "--size",
        "48",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

#[test]
fn synth_ingest_inspect_verify() {
    let t = tempfile::tempdir().unwrap();
    let (src, out) = (t.path().join("src"), t.path().join("out"));
    synth_tree(&src, "20");
    let o = run(&[p(&src), "--out", p(&out), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&o);
    assert_eq!(r["splits"]["train"]["records"], 80);
    assert_eq!(r["splits"]["val"]["records"], 20);
    assert_eq!(r["layout"], "ilsvrc");

    let o = run(&["inspect", p(&out), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let i = json(&o);
    assert_eq!(i["splits"]["train"]["records"], 80);
    assert_eq!(i["splits"]["train"]["classes"], 4);
    assert_eq!(i["splits"]["val"]["classes"], 4);
    assert_eq!(i["splits"]["train"]["per_class"][2]["records"], 20);
    assert_eq!(i["splits"]["train"]["encodings"]["jpeg"], 80);
    assert_eq!(i["splits"]["train"]["width"]["max"], 48);
    // Class names come from LOC_synset_mapping.txt.
    assert!(i["splits"]["train"]["per_class"][0]["name"]
        .as_str()
        .unwrap()
        .contains("disk"));

    let o = run(&["verify", p(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));

    // Shards mix classes: the first 20 records of train are not one class.
    let ds = Dataset::open(&out).unwrap();
    let train = ds.split("train").unwrap();
    let labels: std::collections::BTreeSet<u32> =
        (0..20).map(|i| train.get(i).unwrap().label).collect();
    assert!(labels.len() >= 3, "first 20 records come from {labels:?}");
}

#[test]
fn one_flipped_byte_fails_verify_naming_the_shard() {
    let t = tempfile::tempdir().unwrap();
    let (src, out) = (t.path().join("src"), t.path().join("out"));
    synth_tree(&src, "10");
    assert!(run(&[p(&src), "--out", p(&out)]).status.success());
    for frac in [0.5f64, 0.999] {
        let shard = out.join("train-00000.fncs");
        let mut b = fs::read(&shard).unwrap();
        let pos = (b.len() as f64 * frac) as usize - 40;
        b[pos] ^= 0x01;
        fs::write(&shard, &b).unwrap();
        let o = run(&["verify", p(&out)]);
        assert!(!o.status.success(), "flip at {pos} not detected");
        assert!(stderr(&o).contains("train-00000.fncs"), "{}", stderr(&o));
        b[pos] ^= 0x01;
        fs::write(&shard, &b).unwrap();
        assert!(run(&["verify", p(&out)]).status.success());
    }
}

#[test]
fn shards_are_identical_for_any_thread_count() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    synth_tree(&src, "30");
    let mut outs = Vec::new();
    for threads in ["1", "2", "3"] {
        let out = t.path().join(format!("out{threads}"));
        // Small shards and re-encoding: several shards, real work per image.
        let o = run(&[
            p(&src),
            "--out",
            p(&out),
            "--threads",
            threads,
            "--shard-size",
            "40K",
            "--encoding",
            "jpeg",
            "--max-side",
            "40",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        outs.push(shard_bytes(&out));
    }
    assert!(
        outs[0].len() >= 4,
        "expected several shards, got {}",
        outs[0].len()
    );
    assert_eq!(outs[0], outs[1]);
    assert_eq!(outs[0], outs[2]);
}

/// The tree of the issue: five odd-but-usable files, three unusable ones.
fn odd_tree(root: &Path) {
    let c1 = root.join("train/n00000001");
    let c2 = root.join("train/n00000002");
    fs::create_dir_all(&c1).unwrap();
    fs::create_dir_all(&c2).unwrap();
    let px = pattern(64, 48);
    let cmyk: Vec<u8> = px
        .chunks(3)
        .flat_map(|c| [255 - c[0], 255 - c[1], 255 - c[2], 0])
        .collect();
    fs::write(
        c1.join("cmyk.JPEG"),
        jpeg(&cmyk, 64, 48, ColorType::Cmyk, false),
    )
    .unwrap();
    fs::write(c1.join("png_named.JPEG"), png(&px, 64, 48)).unwrap();
    fs::write(
        c1.join("progressive.JPEG"),
        jpeg(&px, 64, 48, ColorType::Rgb, true),
    )
    .unwrap();
    let grey: Vec<u8> = px.chunks(3).map(|c| c[1]).collect();
    fs::write(
        c2.join("grey.JPEG"),
        jpeg(&grey, 64, 48, ColorType::Luma, false),
    )
    .unwrap();
    fs::write(
        c2.join("big.JPEG"),
        jpeg(&pattern(3000, 2000), 3000, 2000, ColorType::Rgb, false),
    )
    .unwrap();
    let good = jpeg(&px, 64, 48, ColorType::Rgb, false);
    fs::write(c2.join("truncated.JPEG"), &good[..good.len() / 2]).unwrap();
    fs::write(c2.join("empty.JPEG"), b"").unwrap();
    fs::write(c2.join("text.JPEG"), b"this is not a picture\n").unwrap();
}

#[test]
fn odd_files_are_packed_or_reported() {
    let t = tempfile::tempdir().unwrap();
    let (src, out) = (t.path().join("src"), t.path().join("out"));
    odd_tree(&src);
    let o = run(&[p(&src), "--out", p(&out), "--json"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "skips give exit 2: {}",
        stderr(&o)
    );
    let r = json(&o);
    assert_eq!(r["splits"]["train"]["records"], 5);
    let skipped: Vec<String> = r["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    for name in ["truncated.JPEG", "empty.JPEG", "text.JPEG"] {
        assert!(
            skipped.iter().any(|s| s.ends_with(name)),
            "{name} not in {skipped:?}"
        );
    }
    let listed = fs::read_to_string(out.join("skipped.txt")).unwrap();
    assert!(
        listed.contains("train/n00000002/truncated.JPEG\ttruncated JPEG"),
        "{listed}"
    );
    assert!(listed.contains("empty.JPEG\tempty file"), "{listed}");
    assert!(listed.contains("text.JPEG\tnot an image"), "{listed}");

    // Every record decodes, and the right ones were kept or converted.
    let ds = Dataset::open(&out).unwrap();
    let train = ds.split("train").unwrap();
    let mut seen = std::collections::BTreeMap::new();
    for i in 0..train.len() {
        let rec = train.get(i).unwrap();
        assert_eq!(rec.encoding, Encoding::Jpeg);
        let img = image::load_from_memory(rec.data).unwrap();
        assert_eq!((img.width(), img.height()), (rec.width, rec.height));
        let file = rec.name.rsplit('/').next().unwrap().to_string();
        seen.insert(file, (rec.width, rec.height, rec.label, img));
    }
    assert_eq!(seen["big.JPEG"].0, 512);
    assert_eq!(seen["big.JPEG"].1, 341);
    assert_eq!(seen["grey.JPEG"].2, 1);
    assert_eq!(seen["cmyk.JPEG"].2, 0);
    // The CMYK file became RGB with the right colours (C = 255 - R, ...).
    let cmyk = seen["cmyk.JPEG"].3.to_rgb8();
    let src_px = pattern(64, 48);
    let (x, y) = (40u32, 30u32);
    let want = &src_px[((y * 64 + x) * 3) as usize..][..3];
    let got = cmyk.get_pixel(x, y).0;
    for c in 0..3 {
        assert!(
            (want[c] as i32 - got[c] as i32).abs() < 40,
            "CMYK pixel {got:?} vs {want:?}"
        );
    }
    let kept = r["splits"]["train"]["kept"].as_u64().unwrap();
    assert_eq!(kept, 2, "progressive and grey JPEGs are kept as they are");
}

#[test]
fn max_errors_stops_the_run() {
    let t = tempfile::tempdir().unwrap();
    let (src, out) = (t.path().join("src"), t.path().join("out"));
    odd_tree(&src);
    let o = run(&[p(&src), "--out", p(&out), "--max-errors", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--max-errors"), "{}", stderr(&o));
    assert!(!out.join("manifest.json").exists());
}

#[test]
fn bad_sources_and_outputs_are_named() {
    let t = tempfile::tempdir().unwrap();
    let o = run(&[p(&t.path().join("nope")), "--out", p(&t.path().join("o"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    assert!(!t.path().join("o").exists(), "nothing is created");

    let empty = t.path().join("empty");
    fs::create_dir_all(empty.join("just/a/dir")).unwrap();
    let o = run(&[p(&empty), "--out", p(&t.path().join("o"))]);
    assert!(stderr(&o).contains("unknown layout"), "{}", stderr(&o));

    // An --out holding another dataset is refused and left untouched.
    let (a, b, out) = (t.path().join("a"), t.path().join("b"), t.path().join("out"));
    synth_tree(&a, "5");
    fs::create_dir_all(b.join("cls")).unwrap();
    fs::write(b.join("cls/x.png"), png(&pattern(8, 8), 8, 8)).unwrap();
    assert!(run(&[p(&a), "--out", p(&out)]).status.success());
    let before = shard_bytes(&out);
    let manifest = fs::read(out.join("manifest.json")).unwrap();
    let o = run(&[p(&b), "--out", p(&out)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("another dataset"), "{}", stderr(&o));
    assert_eq!(shard_bytes(&out), before);
    assert_eq!(fs::read(out.join("manifest.json")).unwrap(), manifest);
    // Same source, other options: also another dataset.
    let o = run(&[p(&a), "--out", p(&out), "--encoding", "raw"]);
    assert!(stderr(&o).contains("another dataset"), "{}", stderr(&o));
    // A directory of unrelated files is not overwritten.
    let other = t.path().join("other");
    fs::create_dir_all(&other).unwrap();
    fs::write(other.join("notes.txt"), "mine").unwrap();
    let o = run(&[p(&a), "--out", p(&other)]);
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));
    // A bad flag value names the flag.
    let o = run(&[p(&a), "--out", p(&t.path().join("q")), "--quality", "0"]);
    assert!(stderr(&o).contains("--quality"), "{}", stderr(&o));
    // A size that overflows is an error naming the flag, not a panic.
    for huge in ["99999999999999G", "18446744073709551616"] {
        let o = run(&[p(&a), "--out", p(&t.path().join("q")), "--shard-size", huge]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains("--shard-size"), "{}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    }
}

#[test]
fn interrupted_ingest_resumes_to_the_same_bytes() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    synth_tree(&src, "40");
    let args = |out: &Path| -> Vec<String> {
        [
            p(&src),
            "--out",
            p(out),
            "--shard-size",
            "30K",
            "--encoding",
            "jpeg",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let full = t.path().join("full");
    assert!(bin().args(args(&full)).output().unwrap().status.success());
    let want = shard_bytes(&full);
    assert!(want.len() >= 5);

    // Stopped right after the second shard, as an interruption there would.
    let part = t.path().join("part");
    let o = bin()
        .args(args(&part))
        .args(["--stop-after-shards", "2"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("stopped after writing 2 shards"),
        "{}",
        stderr(&o)
    );
    assert!(!part.join("manifest.json").exists());
    assert!(part.join("ingest-state.json").exists());
    let o = bin().args(args(&part)).arg("--json").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&o);
    assert_eq!(r["resumed"], true);
    assert!(
        r["processed"].as_u64().unwrap() < 200,
        "only the missing part is redone"
    );
    assert_eq!(shard_bytes(&part), want);
    assert_eq!(
        fs::read_to_string(part.join("manifest.json"))
            .unwrap()
            .replace(p(&part), ""),
        fs::read_to_string(full.join("manifest.json"))
            .unwrap()
            .replace(p(&full), "")
    );

    // Real SIGKILLs at several moments; at least one must land mid-run.
    let mut interrupted = 0;
    for delay_ms in [1u64, 5, 15, 40, 120] {
        let out = t.path().join(format!("kill{delay_ms}"));
        let exe = assert_cmd::cargo::cargo_bin("fnc-ingest");
        let mut child = std::process::Command::new(&exe)
            .args(args(&out))
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        if !out.join("manifest.json").exists() {
            interrupted += 1;
        }
        let o = bin().args(args(&out)).output().unwrap();
        assert!(
            o.status.success(),
            "resume after kill at {delay_ms} ms: {}",
            stderr(&o)
        );
        assert_eq!(shard_bytes(&out), want, "kill at {delay_ms} ms");
    }
    assert!(interrupted > 0, "no kill landed before the run finished");
}

#[test]
fn kaggle_flat_val_and_imagefolder_val_fraction() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("kaggle");
    let root = src.join("ILSVRC/Data/CLS-LOC");
    let px = pattern(32, 32);
    let j = jpeg(&px, 32, 32, ColorType::Rgb, false);
    for w in ["n01", "n02"] {
        fs::create_dir_all(root.join("train").join(w)).unwrap();
        for i in 0..3 {
            fs::write(root.join("train").join(w).join(format!("{w}_{i}.JPEG")), &j).unwrap();
        }
    }
    fs::create_dir_all(root.join("val")).unwrap();
    fs::create_dir_all(root.join("test")).unwrap();
    for i in 0..4 {
        fs::write(
            root.join("val").join(format!("ILSVRC2012_val_{i:08}.JPEG")),
            &j,
        )
        .unwrap();
    }
    fs::write(
        src.join("LOC_val_solution.csv"),
        "ImageId,PredictionString\nILSVRC2012_val_00000000,n02 1 2 3 4\nILSVRC2012_val_00000001,n01 1 2 3 4 n01 5 6 7 8\nILSVRC2012_val_00000002,n02 0 0 1 1\n",
    )
    .unwrap();
    fs::write(
        src.join("LOC_synset_mapping.txt"),
        "n01 tench, Tinca tinca\nn02 goldfish\n",
    )
    .unwrap();
    let out = t.path().join("out");
    let o = run(&[p(&src), "--out", p(&out), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&o);
    assert_eq!(r["splits"]["train"]["records"], 6);
    assert_eq!(r["splits"]["val"]["records"], 3);
    let notes = r["notes"].to_string();
    assert!(
        notes.contains("test/ ignored") && notes.contains("1 images without a label"),
        "{notes}"
    );
    let ds = Dataset::open(&out).unwrap();
    assert_eq!(
        ds.manifest().classes[0].name.as_deref(),
        Some("tench, Tinca tinca")
    );
    let val = ds.split("val").unwrap();
    let mut labels: Vec<(String, u32)> = (0..3)
        .map(|i| {
            let r = val.get(i).unwrap();
            (r.name.to_string(), r.label)
        })
        .collect();
    labels.sort();
    assert_eq!(labels[0].1, 1);
    assert_eq!(labels[1].1, 0);
    assert_eq!(labels[2].1, 1);

    // ImageFolder with a carved val split; classes sorted by name.
    let folder = t.path().join("folder");
    for c in ["b_cls", "a_cls"] {
        fs::create_dir_all(folder.join(c)).unwrap();
        for i in 0..10 {
            fs::write(folder.join(c).join(format!("{i}.png")), png(&px, 32, 32)).unwrap();
        }
    }
    fs::write(folder.join("a_cls/readme.txt"), "x").unwrap();
    let out2 = t.path().join("out2");
    let o = run(&[
        p(&folder),
        "--out",
        p(&out2),
        "--val-fraction",
        "0.2",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&o);
    assert_eq!(r["layout"], "imagefolder");
    assert_eq!(r["splits"]["train"]["records"], 16);
    assert_eq!(r["splits"]["val"]["records"], 4);
    assert_eq!(r["splits"]["train"]["converted"], 16, "PNGs are converted");
    let ds = Dataset::open(&out2).unwrap();
    assert_eq!(ds.manifest().classes[0].wnid, "a_cls");
}

#[test]
fn imagenette_mini_gives_800_and_200_in_10_classes() {
    let Some(src) = shared_dataset("imagenette2-mini") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let o = run(&[p(&src), "--out", p(&out), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["inspect", p(&out), "--json"]);
    let i = json(&o);
    assert_eq!(i["splits"]["train"]["records"], 800);
    assert_eq!(i["splits"]["val"]["records"], 200);
    assert_eq!(i["splits"]["train"]["classes"], 10);
    assert_eq!(i["splits"]["val"]["classes"], 10);
    assert_eq!(i["splits"]["train"]["per_class"][0]["name"], "tench");
    assert!(run(&["verify", p(&out)]).status.success());
}
