#![allow(clippy::unwrap_used)]
//! Archives as sources: ImageNet's official tars and a tar(.gz) of an image tree
//! give the shards of their extracted tree, byte for byte; damaged archives are
//! errors naming the file and member.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use common::*;

const META_MAT: &[u8] = include_bytes!("data/meta-scipy.mat");
/// The ILSVRC2012_IDs that tests/data/meta-scipy.mat gives synth classes 0..4.
const IDS: [u32; 4] = [3, 1, 4, 2];

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

fn ingest(args: &[&str]) -> serde_json::Value {
    let o = run(&[args, &["--json"]].concat());
    assert!(
        o.status.code() == Some(0) || o.status.code() == Some(2),
        "{}",
        stderr(&o)
    );
    json(&o)
}

fn files_of(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    v.sort();
    v
}

/// A tar of `members` (name, bytes), in order.
fn tar_of(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// The extracted ImageNet tree (train/<wnid>/, val/<wnid>/ILSVRC2012_val_N.JPEG as
/// valprep.sh leaves it) and the official archives of the same files. Returns
/// (tree, archive dir); val image k is labelled in the devkit's ground truth.
fn imagenet(root: &Path, val_extra: &[(String, Vec<u8>)]) -> (PathBuf, PathBuf) {
    let tree = root.join("tree");
    let o = run(&[
        "synth",
        p(&tree),
        "--classes",
        "4",
        "--per-class",
        "9",
        "--val-per-class",
        "3",
        "--size",
        "40",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    fs::remove_file(tree.join("LOC_synset_mapping.txt")).unwrap();
    // A file without an image extension in a class, as real trees have.
    fs::write(tree.join("train/n90000001/notes.txt"), b"not an image").unwrap();
    let mut train = Vec::new();
    // An empty class (an empty per-class tar; an empty folder once extracted),
    // which takes a class index all the same.
    fs::create_dir_all(tree.join("train/n90000009")).unwrap();
    // A name longer than a tar header holds (a GNU long-name member).
    let long = format!("n90000002_{}.JPEG", "x".repeat(120));
    fs::copy(
        files_of(&tree.join("train/n90000002"))[0].1.clone(),
        tree.join("train/n90000002").join(&long),
    )
    .unwrap();
    for (wnid, dir) in files_or_dirs(&tree.join("train")) {
        let members: Vec<_> = files_of(&dir)
            .into_iter()
            .map(|(n, p)| (n, fs::read(p).unwrap()))
            .collect();
        train.push((format!("{wnid}.tar"), tar_of(&members)));
    }
    // Val: renamed ILSVRC2012_val_k in an interleaved order of the classes.
    let mut val = Vec::new();
    let mut truth = String::new();
    let classes = files_or_dirs(&tree.join("val"));
    let per_class: Vec<Vec<(String, PathBuf)>> = classes.iter().map(|(_, d)| files_of(d)).collect();
    let mut k = 0;
    for i in 0..3 {
        for ((wnid, dir), files) in classes.iter().zip(&per_class) {
            k += 1;
            let name = format!("ILSVRC2012_val_{k:08}.JPEG");
            let (_, from) = &files[i];
            fs::rename(from, dir.join(&name)).unwrap();
            val.push((
                name,
                fs::read(dir.join(format!("ILSVRC2012_val_{k:08}.JPEG"))).unwrap(),
            ));
            let class: usize = wnid[1..].parse::<usize>().unwrap() - 90_000_000;
            truth += &format!("{}\n", IDS[class]);
        }
    }
    val.extend(val_extra.iter().cloned());
    let arch = root.join("archives");
    fs::create_dir_all(&arch).unwrap();
    fs::write(arch.join("ILSVRC2012_img_train.tar"), tar_of(&train)).unwrap();
    fs::write(arch.join("ILSVRC2012_img_val.tar"), tar_of(&val)).unwrap();
    let devkit = tar_of(&[
        (
            "ILSVRC2012_devkit_t12/data/meta.mat".into(),
            META_MAT.to_vec(),
        ),
        (
            "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt".into(),
            truth.into_bytes(),
        ),
    ]);
    fs::write(arch.join("ILSVRC2012_devkit_t12.tar.gz"), gzip(&devkit)).unwrap();
    (tree, arch)
}

fn files_or_dirs(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    v.sort();
    v
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

#[test]
fn imagenets_official_archives_give_the_shards_of_the_extracted_tree() {
    let t = tempfile::tempdir().unwrap();
    let (tree, arch) = imagenet(t.path(), &[]);
    let opts = [
        "--shard-size",
        "8K",
        "--encoding",
        "jpeg",
        "--max-side",
        "32",
    ];
    let want_dir = t.path().join("from-tree");
    let from_tree = ingest(&[&[p(&tree), "--out", p(&want_dir)], &opts[..]].concat());
    let want = shard_bytes(&want_dir);
    assert!(want.len() >= 4, "several shards per split");
    assert_eq!(from_tree["splits"]["val"]["records"], 12);

    // The directory holding the three files, and the files named one by one.
    let by_dir = t.path().join("by-dir");
    let r = ingest(&[&[p(&arch), "--out", p(&by_dir)], &opts[..]].concat());
    assert_eq!(r["dataset_id"], from_tree["dataset_id"]);
    assert_eq!(shard_bytes(&by_dir), want);
    let by_name = t.path().join("by-name");
    let train = arch.join("ILSVRC2012_img_train.tar");
    let val = arch.join("ILSVRC2012_img_val.tar");
    let devkit = arch.join("ILSVRC2012_devkit_t12.tar.gz");
    let r = ingest(
        &[
            &[
                p(&train),
                "--val",
                p(&val),
                "--devkit",
                p(&devkit),
                "--out",
                p(&by_name),
            ],
            &opts[..],
        ]
        .concat(),
    );
    assert_eq!(r["dataset_id"], from_tree["dataset_id"]);
    assert_eq!(shard_bytes(&by_name), want);
    assert_eq!(
        r["notes"], from_tree["notes"],
        "the same notes (notes.txt ignored)"
    );
    // Class names come from the devkit's meta.mat.
    let m = manifest(&by_name);
    assert_eq!(m["classes"][0]["wnid"], "n90000000");
    assert_eq!(m["classes"][0]["name"], "synth zero, class 0");
    let v = run(&["verify", p(&by_name)]);
    assert!(v.status.success(), "{}", stderr(&v));

    // The train tar alone is recognised as a tar of per-class tars.
    let alone = t.path().join("alone");
    let r = ingest(&[&[p(&train), "--out", p(&alone)], &opts[..]].concat());
    assert_eq!(r["splits"]["train"]["records"], 37);
    assert_eq!(r["classes"], 5, "the empty class tar is a class");
    assert!(r["splits"].get("val").is_none());

    // Interrupted after one shard, resumed to the same bytes.
    let part = t.path().join("part");
    let o = run(&[
        &[p(&arch), "--out", p(&part), "--stop-after-shards", "1"],
        &opts[..],
    ]
    .concat());
    assert!(
        stderr(&o).contains("stopped after writing 1 shards"),
        "{}",
        stderr(&o)
    );
    let r = ingest(&[&[p(&arch), "--out", p(&part)], &opts[..]].concat());
    assert_eq!(r["resumed"], true);
    assert_eq!(shard_bytes(&part), want);
}

/// An image tree with train/, val/ and test/ in class folders under `top/`.
fn folder_tree(root: &Path) -> PathBuf {
    let top = root.join("set");
    let o = run(&[
        "synth",
        p(&top),
        "--classes",
        "3",
        "--per-class",
        "12",
        "--val-per-class",
        "4",
        "--size",
        "40",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // test/ as a copy of val/ under other names.
    for (wnid, dir) in files_or_dirs(&top.join("val")) {
        let to = top.join("test").join(&wnid);
        fs::create_dir_all(&to).unwrap();
        for (n, f) in files_of(&dir) {
            fs::copy(f, to.join(format!("t_{n}"))).unwrap();
        }
    }
    fs::write(top.join("README.txt"), b"about this set").unwrap();
    // An empty class folder, a hidden file, and a GNU long name.
    fs::create_dir_all(top.join("train/n90000007")).unwrap();
    fs::write(top.join("train/n90000001/.DS_Store"), b"finder").unwrap();
    let first = files_of(&top.join("train/n90000000"))[0].1.clone();
    let long = format!("{}.jpg", "long".repeat(40));
    fs::copy(first, top.join("train/n90000000").join(long)).unwrap();
    top
}

#[test]
fn a_tar_or_tar_gz_of_an_image_tree_gives_the_shards_of_the_tree_with_test() {
    let t = tempfile::tempdir().unwrap();
    let top = folder_tree(t.path());
    let opts = [
        "--shard-size",
        "16K",
        "--encoding",
        "jpeg",
        "--max-side",
        "32",
    ];
    let want_dir = t.path().join("from-tree");
    let from_tree = ingest(&[&[p(&top), "--out", p(&want_dir)], &opts[..]].concat());
    assert_eq!(
        from_tree["splits"]["test"]["records"], 12,
        "test/ is a split"
    );
    let want = shard_bytes(&want_dir);
    // GNU tar (an independent writer): one with the top folder, one with `./`.
    for (name, args) in [
        ("set.tar.gz", vec!["czf", "-C", p(t.path()), "set"]),
        ("set.tar", vec!["cf", "-C", p(t.path()), "set"]),
        ("dot.tgz", vec!["czf", "-C", p(&top), "."]),
    ] {
        let file = t.path().join(name);
        let o = std::process::Command::new("tar")
            .arg(args[0])
            .arg(&file)
            .args(&args[1..])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "tar: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let out = t.path().join(format!("out-{name}"));
        // Stopped after one shard and resumed: the compressed one is gathered a
        // shard at a time over passes of its stream.
        let o = run(&[
            &[p(&file), "--out", p(&out), "--stop-after-shards", "2"],
            &opts[..],
        ]
        .concat());
        assert!(
            stderr(&o).contains("stopped after writing 2 shards"),
            "{name}: {}",
            stderr(&o)
        );
        let r = ingest(&[&[p(&file), "--out", p(&out)], &opts[..]].concat());
        assert_eq!(r["dataset_id"], from_tree["dataset_id"], "{name}");
        assert_eq!(shard_bytes(&out), want, "{name}");
        assert_eq!(r["splits"]["test"]["records"], 12, "{name}");
    }
}

#[test]
fn a_tar_of_train_alone_and_a_test_folder_that_is_no_split() {
    let t = tempfile::tempdir().unwrap();
    let top = folder_tree(t.path());
    // A test/ folder whose folders are not training classes is left out, as
    // before test/ splits were read.
    fs::create_dir_all(top.join("test/unknown")).unwrap();
    fs::copy(
        files_of(&top.join("val/n90000000"))[0].1.clone(),
        top.join("test/unknown/x.jpg"),
    )
    .unwrap();
    let r = ingest(&[p(&top), "--out", p(&t.path().join("o1"))]);
    assert!(r["splits"].get("test").is_none(), "{r}");
    assert!(r["notes"].to_string().contains("test/ ignored"), "{r}");
    // `tar cf t.tar -C set train`: the tree train/... (not stripped to an
    // ImageFolder of its classes).
    let only = t.path().join("only");
    fs::create_dir_all(&only).unwrap();
    std::os::unix::fs::symlink(top.join("train"), only.join("train")).unwrap();
    let want = ingest(&[p(&only), "--out", p(&t.path().join("o2"))]);
    let file = t.path().join("train.tar");
    let o = std::process::Command::new("tar")
        .args(["chf", p(&file), "-C", p(&top), "train"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let got = ingest(&[p(&file), "--out", p(&t.path().join("o3"))]);
    assert_eq!(got["layout"], "ilsvrc");
    assert_eq!(got["dataset_id"], want["dataset_id"]);
    assert_eq!(
        shard_bytes(&t.path().join("o3")),
        shard_bytes(&t.path().join("o2"))
    );
}

fn error_of(args: &[&str]) -> String {
    let o = run(args);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{args:?} should fail: {}",
        stdout(&o)
    );
    stderr(&o)
}

#[test]
fn bad_archives_get_clear_errors_naming_file_and_member() {
    let t = tempfile::tempdir().unwrap();
    // Val image 13 has no line in the ground truth; a corrupt JPEG in val.
    let extra = vec![
        ("ILSVRC2012_val_00000013.JPEG".to_string(), small_jpeg()),
        (
            "ILSVRC2012_val_00000002.JPEG".to_string(),
            b"\xff\xd8 not a jpeg".to_vec(),
        ),
    ];
    let (_, arch) = imagenet(t.path(), &extra);
    let out = t.path().join("o");
    let o = run(&[p(&arch), "--out", p(&out), "--json"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let r = json(&o);
    let notes = r["notes"].to_string();
    assert!(
        notes.contains("val: 1 images without a label in"),
        "{notes}"
    );
    // The later of two members of one name wins, as when extracting: the corrupt one.
    let skipped = r["skipped"].to_string();
    assert!(
        skipped.contains("val/n90000001/ILSVRC2012_val_00000002.JPEG"),
        "{skipped}"
    );

    let train = arch.join("ILSVRC2012_img_train.tar");
    let bytes = fs::read(&train).unwrap();
    // Cut inside a member's data, and right after the last member (no end blocks).
    let cut = t.path().join("cut.tar");
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = error_of(&[p(&cut), "--out", p(&t.path().join("o2"))]);
    assert!(e.contains("cut.tar") && e.contains("truncated"), "{e}");
    assert!(e.contains("member n9000000"), "names the member: {e}");
    let img = small_jpeg();
    let whole = tar_of(&[("a.JPEG".into(), img.clone())]);
    let short = t.path().join("short.tar");
    fs::write(&short, &whole[..512 + img.len().div_ceil(512) * 512]).unwrap();
    let e = error_of(&[p(&short), "--out", p(&t.path().join("o3"))]);
    assert!(
        e.contains("short.tar") && e.contains("end-of-archive"),
        "{e}"
    );
    // A truncated gzip stream.
    let gz = gzip(&bytes);
    let cutgz = t.path().join("cut.tar.gz");
    fs::write(&cutgz, &gz[..gz.len() - 100]).unwrap();
    let e = error_of(&[p(&cutgz), "--out", p(&t.path().join("o4"))]);
    assert!(e.contains("cut.tar.gz"), "{e}");
    // Not an archive at all.
    let e = error_of(&[
        p(&arch.join("ILSVRC2012_devkit_t12.tar.gz")),
        "--out",
        p(&t.path().join("o5")),
    ]);
    assert!(
        e.contains("unknown layout") || e.contains("expected train"),
        "{e}"
    );
    let jpg = t.path().join("x.jpg");
    fs::write(&jpg, small_jpeg()).unwrap();
    let e = error_of(&[p(&jpg), "--out", p(&t.path().join("o6"))]);
    assert!(e.contains("x.jpg") && e.contains("tar"), "{e}");
    // --val without --devkit; a devkit without meta.mat.
    let e = error_of(&[
        p(&train),
        "--val",
        p(&arch.join("ILSVRC2012_img_val.tar")),
        "--out",
        p(&t.path().join("o7")),
    ]);
    assert!(e.contains("--devkit"), "{e}");
    let nokit = t.path().join("nokit.tar.gz");
    fs::write(&nokit, gzip(&tar_of(&[("x.txt".into(), b"x".to_vec())]))).unwrap();
    let e = error_of(&[
        p(&train),
        "--val",
        p(&arch.join("ILSVRC2012_img_val.tar")),
        "--devkit",
        p(&nokit),
        "--out",
        p(&t.path().join("o8")),
    ]);
    assert!(e.contains("nokit.tar.gz") && e.contains("meta.mat"), "{e}");
    // --val with a directory tree.
    let e = error_of(&[
        p(t.path().join("tree").as_path()),
        "--devkit",
        p(&nokit),
        "--out",
        p(&t.path().join("o9")),
    ]);
    assert!(e.contains("--devkit"), "{e}");
}

fn small_jpeg() -> Vec<u8> {
    jpeg(
        &pattern(16, 16),
        16,
        16,
        jpeg_encoder::ColorType::Rgb,
        false,
    )
}
