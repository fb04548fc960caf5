//! `inspect` (what a dataset holds) and `verify` (every checksum).

use std::collections::BTreeMap;
use std::path::Path;

use fnc_formats::{Dataset, FormatError, Shard};
use rayon::prelude::*;
use serde::Serialize;

use crate::error::IngestError;

/// Minimum, maximum and mean of a quantity.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Stat {
    pub min: u64,
    pub max: u64,
    pub mean: f64,
}

/// Records of one class in a split.
#[derive(Debug, Clone, Serialize)]
pub struct ClassCount {
    pub index: u32,
    pub wnid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub records: u64,
}

/// What one split holds.
#[derive(Debug, Clone, Serialize)]
pub struct SplitInspection {
    pub records: u64,
    /// Classes with at least one record.
    pub classes: usize,
    pub shards: usize,
    pub bytes: u64,
    pub record_bytes: Stat,
    pub encodings: BTreeMap<String, u64>,
    pub width: Stat,
    pub height: Stat,
    pub per_class: Vec<ClassCount>,
}

/// What a dataset directory holds.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub dir: String,
    pub dataset_id: String,
    pub format_version: u16,
    pub layout: String,
    pub source: String,
    pub classes: usize,
    pub splits: BTreeMap<String, SplitInspection>,
    pub params: serde_json::Value,
}

#[derive(Default)]
struct Acc {
    n: u64,
    min: u64,
    max: u64,
    sum: f64,
}

impl Acc {
    fn add(&mut self, v: u64) {
        if self.n == 0 || v < self.min {
            self.min = v;
        }
        self.max = self.max.max(v);
        self.sum += v as f64;
        self.n += 1;
    }
    fn stat(&self) -> Stat {
        Stat {
            min: self.min,
            max: self.max,
            mean: if self.n == 0 {
                0.0
            } else {
                self.sum / self.n as f64
            },
        }
    }
}

/// Reads the manifest and every shard index (not the record data).
pub fn inspect(dir: &Path) -> Result<Inspection, IngestError> {
    let ds = Dataset::open(dir)?;
    let m = ds.manifest();
    let mut splits = BTreeMap::new();
    for name in ds.split_names() {
        let split = ds.split(&name)?;
        let mut per_class = vec![0u64; m.classes.len()];
        let (mut w, mut h, mut sz) = (Acc::default(), Acc::default(), Acc::default());
        let mut encodings = BTreeMap::new();
        for i in 0..split.len() {
            let r = split.get_unverified(i)?;
            if let Some(c) = per_class.get_mut(r.label as usize) {
                *c += 1;
            }
            w.add(r.width as u64);
            h.add(r.height as u64);
            sz.add(r.data.len() as u64);
            *encodings.entry(r.encoding.name().to_string()).or_insert(0) += 1;
        }
        let info = &m.splits[&name];
        splits.insert(
            name.clone(),
            SplitInspection {
                records: split.len(),
                classes: per_class.iter().filter(|&&c| c > 0).count(),
                shards: info.shards.len(),
                bytes: info.shards.iter().map(|s| s.bytes).sum(),
                record_bytes: sz.stat(),
                encodings,
                width: w.stat(),
                height: h.stat(),
                per_class: m
                    .classes
                    .iter()
                    .zip(&per_class)
                    .map(|(c, &n)| ClassCount {
                        index: c.index,
                        wnid: c.wnid.clone(),
                        name: c.name.clone(),
                        records: n,
                    })
                    .collect(),
            },
        );
    }
    Ok(Inspection {
        dir: dir.display().to_string(),
        dataset_id: m.dataset_id.clone(),
        format_version: m.format_version,
        layout: m.layout.clone(),
        source: m.source.clone(),
        classes: m.classes.len(),
        splits,
        params: m.params.clone(),
    })
}

/// The outcome of `verify`: what was checked and every fault found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub shards: usize,
    pub records: u64,
    pub bytes: u64,
    /// One line per fault, naming shard (and record).
    pub faults: Vec<String>,
}

fn verify_shard(
    path: &Path,
    expected_records: u64,
    expected_checksum: &str,
) -> (u64, u64, Vec<String>) {
    let shard = match Shard::open(path) {
        Ok(s) => s,
        Err(e) => return (0, 0, vec![e.to_string()]),
    };
    let mut faults = Vec::new();
    for i in 0..shard.len() {
        if let Err(e) = shard.get(i) {
            faults.push(e.to_string());
        }
    }
    if shard.len() as u64 != expected_records {
        faults.push(format!(
            "{}: {} records, the manifest says {expected_records}",
            path.display(),
            shard.len()
        ));
    }
    let computed = format!("{:08x}", shard.file_checksum());
    if computed != expected_checksum {
        faults.push(
            FormatError::FileChecksum {
                path: path.to_path_buf(),
                expected: u32::from_str_radix(expected_checksum, 16).unwrap_or(0),
                computed: shard.file_checksum(),
            }
            .to_string(),
        );
    }
    (shard.len() as u64, shard.file_len(), faults)
}

/// Checks every shard of every split: structure, every record checksum, and the
/// whole-file checksum of the manifest. Faults are collected, not fatal.
pub fn verify(dir: &Path) -> Result<VerifyReport, IngestError> {
    let ds = Dataset::open(dir)?;
    let shards: Vec<_> = ds
        .manifest()
        .splits
        .values()
        .flat_map(|s| s.shards.iter())
        .collect();
    let results: Vec<_> = shards
        .par_iter()
        .map(|s| verify_shard(&dir.join(&s.file), s.records, &s.checksum))
        .collect();
    let mut report = VerifyReport {
        shards: shards.len(),
        records: 0,
        bytes: 0,
        faults: Vec::new(),
    };
    for (records, bytes, faults) in results {
        report.records += records;
        report.bytes += bytes;
        report.faults.extend(faults);
    }
    Ok(report)
}
