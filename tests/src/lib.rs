//! Helpers shared by the test suites of the workspace's crates, and the home of
//! end-to-end tests that drive several binaries (`tests/`).

use std::path::{Path, PathBuf};
use std::process::Output;

/// The small CPU model the test suites train: the small CNN on 32 px main views
/// and 2 support views of 16 px.
pub const SMALL_MODEL: [&str; 8] = [
    "--arch",
    "small",
    "--image-size",
    "32",
    "--support",
    "2",
    "--support-size",
    "16",
];

/// A finished command's stderr, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes a synth dataset under `dir/src` and ingests it into `dir/out`;
/// returns the dataset directory. Panics on failure (a test helper).
pub fn synth_shards(
    dir: &Path,
    classes: u32,
    per_class: u32,
    val_per_class: u32,
    size: u32,
    seed: u64,
) -> PathBuf {
    let src = dir.join("src");
    let out = dir.join("out");
    let opts = fnc_ingest::SynthOptions {
        classes,
        per_class,
        val_per_class,
        size,
        seed,
    };
    fnc_ingest::synth(&src, &opts).expect("synth");
    fnc_ingest::ingest(
        &fnc_ingest::IngestOptions::new(&src, &out),
        &fnc_ingest::NoProgress,
    )
    .expect("ingest");
    out
}

/// Every path under `dir`, sorted (to check that a refused command wrote
/// nothing).
pub fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("reading a test directory") {
            let p = e.expect("reading a test directory").path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Writes `dir/manifest.json` for a dataset whose train split is the one
/// shard `info` of `records` records (hand-made shards in tests).
pub fn write_train_manifest(dir: &Path, info: fnc_formats::ShardInfo, records: u64) {
    let mut splits = std::collections::BTreeMap::new();
    splits.insert(
        "train".to_string(),
        fnc_formats::SplitInfo {
            records,
            shards: vec![info],
        },
    );
    fnc_formats::Manifest {
        format: "fnc-shards".into(),
        format_version: 1,
        dataset_id: "t".into(),
        layout: "imagefolder".into(),
        source: "t".into(),
        classes: vec![],
        splits,
        params: serde_json::json!({}),
    }
    .write(&dir.join("manifest.json"))
    .expect("writing a test manifest");
}
