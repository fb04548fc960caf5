//! No input makes the readers panic: random bytes, every truncation and bit
//! flips, in shards and in the manifest, end in errors that name the file.
#![allow(clippy::unwrap_used)]
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fnc_formats::{
    checksum, Dataset, Encoding, FormatError, Manifest, RecordMeta, Shard, ShardWriter, SplitInfo,
    MANIFEST_FILE,
};
use proptest::prelude::*;

const SHARD: &str = "train-00000.fncs";

/// A small dataset directory: one train shard of a few records, and its manifest.
fn small_dataset(dir: &Path) -> (PathBuf, Vec<u8>, Vec<u8>) {
    let mut w = ShardWriter::new(dir.join(SHARD));
    for i in 0..5u32 {
        let data: Vec<u8> = (0..(20 + 13 * i)).map(|b| (b * 31 + i) as u8).collect();
        w.push(
            &RecordMeta {
                label: i % 2,
                width: 3,
                height: 2,
                encoding: Encoding::Jpeg,
                name: &format!("c{i}/img{i}.jpg"),
            },
            &data,
        );
    }
    let info = w.finish().unwrap();
    let mut splits = BTreeMap::new();
    splits.insert(
        "train".to_string(),
        SplitInfo {
            records: info.records,
            shards: vec![info],
        },
    );
    let m = Manifest {
        format: "fnc-shards".into(),
        format_version: 1,
        dataset_id: "robust".into(),
        layout: "imagefolder".into(),
        source: "src".into(),
        classes: vec![],
        splits,
        params: serde_json::json!({ "seed": 0 }),
    };
    let manifest = dir.join(MANIFEST_FILE);
    m.write(&manifest).unwrap();
    let shard = std::fs::read(dir.join(SHARD)).unwrap();
    let text = std::fs::read(&manifest).unwrap();
    (dir.join(SHARD), shard, text)
}

/// Everything a reader does with a shard; returns whether all of it succeeded.
fn read_shard(path: &Path) -> Result<(), FormatError> {
    let s = Shard::open(path)?;
    for i in 0..s.len() {
        let _ = s.get_unverified(i)?;
        let _ = s.get(i);
    }
    let _ = s.file_checksum();
    s.verify()
}

/// Everything a reader does with a dataset directory.
fn read_dataset(dir: &Path) -> Result<(), FormatError> {
    let ds = Dataset::open(dir)?;
    for name in ds.split_names() {
        let split = ds.split(&name)?;
        for i in 0..split.len() {
            let _ = split.get_unverified(i)?;
            let _ = split.get(i);
        }
        split.verify()?;
    }
    Ok(())
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Where the checksummed sections of a shard are: (records, names offset, names length).
fn layout(b: &[u8]) -> (usize, usize, usize) {
    (
        le_u64(b, 16) as usize,
        le_u64(b, 40) as usize,
        le_u64(b, 48) as usize,
    )
}

/// Rewrites the header, index and trailer checksums after an edit (over the
/// sections at the original `layout`), so that a changed field reaches the
/// structural checks behind them.
fn reseal(b: &mut [u8], (n, names, names_len): (usize, usize, usize)) {
    let hcrc = checksum(&b[..56]);
    b[56..60].copy_from_slice(&hcrc.to_le_bytes());
    let mut sections = b[64..64 + 40 * n].to_vec();
    sections.extend_from_slice(&b[names..names + names_len]);
    let t = b.len() - 32;
    b[t + 24..t + 28].copy_from_slice(&checksum(&sections).to_le_bytes());
    let tcrc = checksum(&b[t..t + 28]);
    b[t + 28..t + 32].copy_from_slice(&tcrc.to_le_bytes());
}

#[test]
fn every_truncation_of_a_shard_is_reported_as_truncated() {
    let t = tempfile::tempdir().unwrap();
    let (path, bytes, _) = small_dataset(t.path());
    for cut in 0..bytes.len() {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        match Shard::open(&path) {
            Err(FormatError::Truncated { path: p, .. }) => assert_eq!(p, path, "cut at {cut}"),
            other => panic!(
                "cut at {cut} of {}: expected Truncated, got {other:?}",
                bytes.len()
            ),
        }
        assert!(read_dataset(t.path()).is_err(), "cut at {cut}");
    }
    std::fs::write(&path, &bytes).unwrap();
    read_dataset(t.path()).unwrap();
}

#[test]
fn every_truncation_of_the_manifest_is_an_error() {
    let t = tempfile::tempdir().unwrap();
    let (_, _, text) = small_dataset(t.path());
    let manifest = t.path().join(MANIFEST_FILE);
    for cut in 0..text.len() {
        std::fs::write(&manifest, &text[..cut]).unwrap();
        match Dataset::open(t.path()) {
            Err(FormatError::Manifest { path, .. }) => assert_eq!(path, manifest, "cut at {cut}"),
            other => panic!("cut at {cut}: expected a manifest error, got {other:?}"),
        }
    }
}

#[test]
fn a_manifest_checksum_that_is_not_hex_is_named() {
    let t = tempfile::tempdir().unwrap();
    let (_, _, text) = small_dataset(t.path());
    let manifest = t.path().join(MANIFEST_FILE);
    let mut m: serde_json::Value = serde_json::from_slice(&text).unwrap();
    for bad in ["zzzzzzzz", "+1234567", "123", ""] {
        m["splits"]["train"]["shards"][0]["checksum"] = bad.into();
        std::fs::write(&manifest, m.to_string()).unwrap();
        let err = Dataset::open(t.path()).unwrap_err().to_string();
        assert!(
            err.contains(SHARD) && err.contains("checksum"),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn a_split_count_that_disagrees_with_its_shards_is_named() {
    let t = tempfile::tempdir().unwrap();
    let (_, _, text) = small_dataset(t.path());
    let mut m: serde_json::Value = serde_json::from_slice(&text).unwrap();
    m["splits"]["train"]["records"] = 6.into();
    std::fs::write(t.path().join(MANIFEST_FILE), m.to_string()).unwrap();
    let err = Dataset::open(t.path()).unwrap_err().to_string();
    assert!(
        err.contains("split train") && err.contains("6 records"),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Random bytes are no shard and no manifest.
    #[test]
    fn random_bytes_are_errors(bytes in prop::collection::vec(any::<u8>(), 0..6000)) {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join(SHARD);
        std::fs::write(&path, &bytes).unwrap();
        prop_assert!(read_shard(&path).is_err());
        std::fs::write(t.path().join(MANIFEST_FILE), &bytes).unwrap();
        prop_assert!(read_dataset(t.path()).is_err());
    }

    /// A valid shard's prefix followed by random bytes: past the magic and version.
    #[test]
    fn random_bytes_behind_a_valid_start_are_errors(
        keep in 0usize..200,
        tail in prop::collection::vec(any::<u8>(), 0..5000),
    ) {
        let t = tempfile::tempdir().unwrap();
        let (path, bytes, _) = small_dataset(t.path());
        let mut b = bytes[..keep.min(bytes.len())].to_vec();
        b.extend_from_slice(&tail);
        std::fs::write(&path, &b).unwrap();
        prop_assert!(read_shard(&path).is_err());
        prop_assert!(read_dataset(t.path()).is_err());
    }

    /// A flipped bit in the manifest never makes a reader panic; one that
    /// changes what the readers rely on is an error.
    #[test]
    fn any_bit_flip_in_the_manifest_is_an_error_or_harmless(frac in 0.0f64..1.0, bit in 0u8..8) {
        let t = tempfile::tempdir().unwrap();
        let (_, _, mut text) = small_dataset(t.path());
        let good: Manifest = serde_json::from_slice(&text).unwrap();
        let pos = (frac * text.len() as f64) as usize % text.len();
        text[pos] ^= 1 << bit;
        std::fs::write(t.path().join(MANIFEST_FILE), &text).unwrap();
        if read_dataset(t.path()).is_ok() {
            // Accepted: then it still describes the same shards.
            let m = Dataset::open(t.path()).unwrap().manifest().clone();
            let got: Vec<_> = m.splits.values().collect();
            let want: Vec<_> = good.splits.values().collect();
            prop_assert_eq!(got, want);
        }
    }

    /// Index and header fields set to anything (checksums recomputed, so that
    /// only the structural checks stand in the way) give errors, not panics.
    #[test]
    fn resealed_field_edits_are_errors_or_readable(
        field in prop_oneof![
            (0usize..5).prop_map(|r| 64 + 40 * r),       // record offset
            (0usize..5).prop_map(|r| 64 + 40 * r + 8),   // record length
            (0usize..5).prop_map(|r| 64 + 40 * r + 28),  // name offset
            (0usize..5).prop_map(|r| 64 + 40 * r + 32),  // name length (+ encoding)
            prop::sample::select(vec![16usize, 24, 32, 40, 48]), // header sections
        ],
        value in prop_oneof![
            any::<u64>(),
            Just(u64::MAX),
            (u64::MAX - 4096)..=u64::MAX,
            0u64..10_000,
        ],
    ) {
        let t = tempfile::tempdir().unwrap();
        let (path, mut bytes, _) = small_dataset(t.path());
        let sections = layout(&bytes);
        bytes[field..field + 8].copy_from_slice(&value.to_le_bytes());
        reseal(&mut bytes, sections);
        std::fs::write(&path, &bytes).unwrap();
        let _ = read_shard(&path);
        let _ = read_dataset(t.path());
    }
}
