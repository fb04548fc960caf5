//! What a run reports: one `metrics.jsonl` line per step, and the summary of a
//! finished run.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{io, TrainError};

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepMetrics {
    pub step: u64,
    pub epoch: u64,
    pub loss: f64,
    pub lr: f64,
    pub images_per_s: f64,
    /// Share of the step spent waiting for the augmentation engine.
    pub data_wait: f64,
    /// Mean |F_i|.
    pub mean_fn: f64,
    /// Share of detected false negatives carrying the anchor's label.
    pub fn_precision: Option<f64>,
    /// The same share among all candidates: the chance rate.
    pub fn_chance: Option<f64>,
    /// Share of the candidates carrying the anchor's label that were detected.
    #[serde(default)]
    pub fn_recall: Option<f64>,
    /// Weighted k-NN top-1 on val, percent, on `--knn-every` steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knn_top1: Option<f64>,
    /// Distinct bad records replaced so far (`--max-bad-records`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bad_records: u64,
    /// Share of the step in the explicit collectives of a data-parallel run
    /// (gathering embeddings and labels, summing gradients; synchronised
    /// BatchNorm's are inside the forward and backward and not counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<f64>,
    /// Host synchronisations of the step: device values read on the host
    /// and collectives waited on the host (see `host.rs`); on CUDA with
    /// NCCL, each a stall of the host until the device catches up.
    #[serde(default)]
    pub host_syncs: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What a finished run reports.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    pub out: String,
    pub steps: u64,
    pub device: String,
    pub final_loss: f64,
    pub mean_data_wait: f64,
    pub checkpoint: String,
    /// The bad records that were replaced, each naming its shard and record.
    pub bad_records: Vec<String>,
}

/// `metrics.jsonl`, open for appending.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens `path` for appending; with `keep_through = Some(step)` (a resumed
    /// run) first drops the lines past `step`, which belong to steps that will
    /// be redone.
    pub fn open(path: &Path, keep_through: Option<u64>) -> Result<MetricsLog, TrainError> {
        if let (Some(step), true) = (keep_through, path.exists()) {
            let keep: Vec<String> = BufReader::new(File::open(path).map_err(io(path))?)
                .lines()
                .map_while(Result::ok)
                .filter(|l| serde_json::from_str::<StepMetrics>(l).is_ok_and(|m| m.step <= step))
                .collect();
            let mut text = keep.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            fnc_formats::write_atomic(path, text.as_bytes())?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io(path))?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one line and flushes it.
    pub fn append(&mut self, m: &StepMetrics) -> Result<(), TrainError> {
        let line = serde_json::to_string(m).map_err(|err| TrainError::Json {
            path: self.path.clone(),
            err,
        })?;
        // One write of the whole line, so a reader never sees half of one.
        self.file
            .write_all(format!("{line}\n").as_bytes())
            .map_err(io(&self.path))?;
        self.file.flush().map_err(io(&self.path))
    }
}

/// Every line of a `metrics.jsonl`, in order; a line that does not parse is an
/// error naming the file and line.
pub fn read_metrics(path: &Path) -> Result<Vec<StepMetrics>, TrainError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(k, l)| {
            serde_json::from_str(l).map_err(|err| TrainError::JsonLine {
                path: path.to_path_buf(),
                line: k + 1,
                err,
            })
        })
        .collect()
}
