//! Helpers shared by the test suites of the workspace's crates, and the home of
//! end-to-end tests that drive several binaries (`tests/`).

use std::path::{Path, PathBuf};

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
