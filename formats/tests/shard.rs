#![allow(clippy::unwrap_used)]
use std::collections::BTreeMap;
use std::path::Path;

use fnc_formats::{
    Dataset, Encoding, FormatError, Manifest, RecordMeta, Shard, ShardWriter, SplitInfo,
    MANIFEST_FILE,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Rec {
    data: Vec<u8>,
    label: u32,
    width: u32,
    height: u32,
    encoding: Encoding,
    name: String,
}

fn rec_strategy() -> impl Strategy<Value = Rec> {
    (
        proptest::collection::vec(any::<u8>(), 0..300),
        any::<u32>(),
        1u32..5000,
        1u32..5000,
        0u8..4,
        "[a-zA-Z0-9_/ .é-]{0,40}",
    )
        .prop_map(|(data, label, width, height, enc, name)| Rec {
            data,
            label,
            width,
            height,
            encoding: Encoding::from_code(enc).expect("valid code"),
            name,
        })
}

fn write(path: &Path, recs: &[Rec]) -> fnc_formats::ShardInfo {
    let mut w = ShardWriter::new(path);
    for r in recs {
        w.push(
            &RecordMeta {
                label: r.label,
                width: r.width,
                height: r.height,
                encoding: r.encoding,
                name: &r.name,
            },
            &r.data,
        );
    }
    w.finish().expect("finish")
}

fn sample_shard(dir: &Path) -> (std::path::PathBuf, Vec<Rec>) {
    let recs: Vec<Rec> = (0..20)
        .map(|i| Rec {
            data: (0..(100 + i * 37)).map(|b| (b * 7 + i) as u8).collect(),
            label: i as u32 % 3,
            width: 10 + i as u32,
            height: 20,
            encoding: Encoding::Jpeg,
            name: format!("train/c{i}/img{i}.JPEG"),
        })
        .collect();
    let path = dir.join("train-00000.fncs");
    let info = write(&path, &recs);
    write_manifest(dir, vec![info]);
    (path, recs)
}

/// A manifest with one split, train, of these shards.
fn write_manifest(dir: &Path, shards: Vec<fnc_formats::ShardInfo>) -> Manifest {
    let mut splits = BTreeMap::new();
    splits.insert(
        "train".to_string(),
        SplitInfo {
            records: shards.iter().map(|s| s.records).sum(),
            shards,
        },
    );
    let m = Manifest {
        format: "fnc-shards".into(),
        format_version: 1,
        dataset_id: "x".into(),
        layout: "imagefolder".into(),
        source: "src".into(),
        classes: vec![],
        splits,
        params: serde_json::json!({}),
    };
    m.write(&dir.join(MANIFEST_FILE)).unwrap();
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn round_trip(recs in proptest::collection::vec(rec_strategy(), 0..40)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.fncs");
        let info = write(&path, &recs);
        prop_assert_eq!(info.records, recs.len() as u64);
        prop_assert_eq!(info.bytes, std::fs::metadata(&path).unwrap().len());
        let shard = Shard::open(&path).unwrap();
        prop_assert_eq!(shard.len(), recs.len());
        prop_assert_eq!(format!("{:08x}", shard.file_checksum()), info.checksum);
        for (i, r) in recs.iter().enumerate() {
            let got = shard.get(i).unwrap();
            prop_assert_eq!(got.data, &r.data[..]);
            prop_assert_eq!(got.label, r.label);
            prop_assert_eq!(got.width, r.width);
            prop_assert_eq!(got.height, r.height);
            prop_assert_eq!(got.encoding, r.encoding);
            prop_assert_eq!(got.name, r.name.as_str());
            prop_assert_eq!(got.data.as_ptr() as usize % 64, 0, "record data is 64-byte aligned");
        }
        let out_of_range = matches!(shard.get(recs.len()), Err(FormatError::OutOfRange { .. }));
        prop_assert!(out_of_range);
        prop_assert!(!dir.path().join(".s.fncs.tmp").exists());
    }

    /// Any truncation of a complete shard is detected as such at open.
    #[test]
    fn any_truncation_is_detected(cut_frac in 0.0f64..1.0) {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = sample_shard(dir.path());
        let bytes = std::fs::read(&path).unwrap();
        let cut = ((bytes.len() as f64) * cut_frac) as usize;
        std::fs::write(&path, &bytes[..cut]).unwrap();
        match Shard::open(&path) {
            Err(FormatError::Truncated { path: p, .. }) => prop_assert_eq!(p, path),
            other => prop_assert!(false, "cut at {cut}: expected Truncated, got {other:?}"),
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]
    /// Flipping any single bit of a byte that a checksum covers (header, index,
    /// record data, names, trailer) is caught by open or by verify(); a flip in
    /// the padding that no checksum covers is caught by the split's verify()
    /// against the manifest's whole-file checksum.
    #[test]
    fn any_bit_flip_is_detected(frac in 0.0f64..1.0, in_covered in prop::bool::weighted(0.8), bit in 0u8..8) {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = sample_shard(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        let cov = covered(&bytes);
        let candidates: Vec<usize> = (0..bytes.len()).filter(|&i| cov[i] == in_covered).collect();
        prop_assume!(!candidates.is_empty());
        let pos = candidates[(frac * candidates.len() as f64) as usize % candidates.len()];
        bytes[pos] ^= 1 << bit;
        std::fs::write(&path, &bytes).unwrap();
        let by_shard = match Shard::open(&path) {
            Err(_) => true,
            Ok(s) => s.verify().is_err(),
        };
        if in_covered {
            prop_assert!(by_shard, "flip at byte {pos} bit {bit} passed open and verify()");
        }
        let by_split = match Dataset::open(dir.path()).and_then(|d| d.split("train")) {
            Err(_) => true,
            Ok(s) => s.verify().is_err(),
        };
        prop_assert!(by_split, "flip at byte {pos} bit {bit} passed the split's verify()");
    }
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Which bytes of a shard a checksum other than the manifest's covers: the
/// header up to and with its checksum, the index, each record's data, the name
/// table and the trailer (docs/format.md). The rest (the header's reserved
/// word, alignment padding) only the manifest's whole-file checksum guards.
fn covered(b: &[u8]) -> Vec<bool> {
    let mut c = vec![false; b.len()];
    let mut mark = |from: usize, len: usize| c[from..from + len].fill(true);
    let n = le_u64(b, 16) as usize;
    mark(0, 60);
    mark(64, 40 * n);
    for i in 0..n {
        let e = 64 + 40 * i;
        let len = u32::from_le_bytes(b[e + 8..e + 12].try_into().unwrap());
        mark(le_u64(b, e) as usize, len as usize);
    }
    mark(le_u64(b, 40) as usize, le_u64(b, 48) as usize);
    mark(b.len() - 32, 32);
    c
}

#[test]
fn flipped_record_byte_names_shard_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = sample_shard(dir.path());
    let shard = Shard::open(&path).unwrap();
    let target =
        shard.get(7).unwrap().data.as_ptr() as usize - shard.get(0).unwrap().data.as_ptr() as usize;
    let first = {
        let b = std::fs::read(&path).unwrap();
        // offset of record 0 = where its bytes start in the file
        let needle: Vec<u8> = (0..100u32).map(|b| (b * 7) as u8).collect();
        b.windows(needle.len())
            .position(|w| w == &needle[..])
            .unwrap()
    };
    drop(shard);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[first + target + 3] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let shard = Shard::open(&path).expect("index is intact");
    assert!(shard.get(6).is_ok());
    match shard.get(7) {
        Err(FormatError::RecordChecksum {
            path: p, record, ..
        }) => {
            assert_eq!(p, path);
            assert_eq!(record, 7);
        }
        other => panic!("expected RecordChecksum, got {other:?}"),
    }
    let msg = shard.verify().unwrap_err().to_string();
    assert!(
        msg.contains("train-00000.fncs") && msg.contains("record 7"),
        "{msg}"
    );
}

#[test]
fn wrong_version_and_bad_magic_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = sample_shard(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8] = 2; // version field
    std::fs::write(&path, &bytes).unwrap();
    match Shard::open(&path) {
        Err(FormatError::UnsupportedVersion {
            found: 2,
            supported: 1,
            ..
        }) => {}
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
    bytes[0] = b'X';
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        Shard::open(&path),
        Err(FormatError::BadMagic { .. })
    ));
    std::fs::write(&path, b"").unwrap();
    assert!(matches!(
        Shard::open(&path),
        Err(FormatError::Truncated { .. })
    ));
}

#[test]
fn writer_leaves_no_final_file_until_finish() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.fncs");
    let mut w = ShardWriter::new(&path);
    w.push(
        &RecordMeta {
            label: 0,
            width: 1,
            height: 1,
            encoding: Encoding::Raw,
            name: "a",
        },
        &[1, 2, 3],
    );
    assert!(!path.exists());
    drop(w); // a crash before finish
    assert!(!path.exists());
}

#[test]
fn dataset_reads_across_shards_and_checks_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let mut shards = Vec::new();
    let mut all = Vec::new();
    for k in 0..3 {
        let recs: Vec<Rec> = (0..(5 + k))
            .map(|i| Rec {
                data: vec![(k * 10 + i) as u8; 10 + i],
                label: (k * 10 + i) as u32,
                width: 1,
                height: 1,
                encoding: Encoding::Raw,
                name: format!("{k}/{i}"),
            })
            .collect();
        shards.push(write(&dir.path().join(format!("train-{k:05}.fncs")), &recs));
        all.extend(recs);
    }
    let m = write_manifest(dir.path(), shards);
    let ds = Dataset::open(dir.path()).unwrap();
    let split = ds.split("train").unwrap();
    assert_eq!(split.len(), all.len() as u64);
    for (i, r) in all.iter().enumerate() {
        let got = split.get(i as u64).unwrap();
        assert_eq!(got.label, r.label);
        assert_eq!(got.data, &r.data[..]);
    }
    split.verify().unwrap();
    assert!(matches!(ds.split("val"), Err(FormatError::NoSplit { .. })));
    // A shard swapped for another one of the same size fails the file checksum.
    let mut m2 = m.clone();
    m2.splits.get_mut("train").unwrap().shards[1].checksum = "00000000".into();
    m2.write(&dir.path().join(MANIFEST_FILE)).unwrap();
    let ds = Dataset::open(dir.path()).unwrap();
    let err = ds.split("train").unwrap().verify().unwrap_err();
    assert!(matches!(err, FormatError::FileChecksum { .. }), "{err}");
}
