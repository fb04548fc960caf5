//! TensorBoard events of a run (`RUN/events.out.tfevents.*`), written with the
//! `tboard` crate beside `metrics.jsonl`, which stays the record of truth:
//! every scalar of a step under a stable tag ([`scalars`]), the resolved
//! config as text, images (the augmentation contact sheet, the report), and
//! `fnc-eval`'s results. A resumed run first cuts every event file of the run
//! back to the checkpoint's step, as `metrics.jsonl` is, so no step appears
//! twice.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use tboard::tensorboard::{self, summary, Summary};
use tboard::{EventWriter, SummaryReader};

use crate::error::{io, TrainError};
use crate::metrics::StepMetrics;

/// The start of every TensorBoard event file's name.
pub const EVENTS_PREFIX: &str = "events.out.tfevents";

/// The tags of a step's scalars and their values; absent values (no k-NN
/// monitor this step, no detection) are left out, as in `metrics.jsonl`.
pub fn scalars(m: &StepMetrics) -> Vec<(&'static str, f64)> {
    let mut v = vec![
        ("train/loss", m.loss),
        ("train/lr", m.lr),
        ("train/epoch", m.epoch as f64),
        ("perf/images_per_s", m.images_per_s),
        ("perf/data_wait", m.data_wait),
        ("perf/host_syncs", m.host_syncs as f64),
        ("fn/mean_size", m.mean_fn),
        ("data/bad_records", m.bad_records as f64),
    ];
    let optional = [
        ("fn/precision", m.fn_precision),
        ("fn/chance", m.fn_chance),
        ("fn/recall", m.fn_recall),
        ("monitor/knn_top1", m.knn_top1),
        ("perf/comm", m.comm),
    ];
    v.extend(optional.into_iter().filter_map(|(t, x)| x.map(|x| (t, x))));
    v
}

/// An event file of a run, open for appending.
pub struct Events {
    path: PathBuf,
    writer: EventWriter<BufWriter<File>>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").field("path", &self.path).finish()
    }
}

fn tb_err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Io {
        path: path.to_path_buf(),
        err: std::io::Error::other(e.to_string()),
    }
}

impl Events {
    /// A new event file in the run directory `dir`; with `keep_through =
    /// Some(step)` (a resumed run) the run's existing event files are first
    /// cut back to that step.
    pub fn open(dir: &Path, keep_through: Option<u64>) -> Result<Events, TrainError> {
        if let Some(step) = keep_through {
            cut_back_all(dir, step)?;
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        // A name of our own (time, host-free, pid, a counter) so that two
        // writers in one process never share a file.
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let path = (0u32..)
            .map(|k| {
                dir.join(format!(
                    "{EVENTS_PREFIX}.{secs:010}.fnc.{}.{k}",
                    std::process::id()
                ))
            })
            .find(|p| !p.exists())
            .unwrap_or_else(|| dir.join(EVENTS_PREFIX));
        let file = File::create(&path).map_err(io(&path))?;
        let writer = EventWriter::from_writer(BufWriter::new(file), Some(path.clone()))
            .map_err(|e| tb_err(&path, e))?;
        Ok(Events { path, writer })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A step's scalars ([`scalars`]), written and flushed.
    pub fn step(&mut self, m: &StepMetrics) -> Result<(), TrainError> {
        for (tag, v) in scalars(m) {
            self.scalar(m.step, tag, v)?;
        }
        self.flush()
    }

    pub fn scalar(&mut self, step: u64, tag: &str, value: f64) -> Result<(), TrainError> {
        self.writer
            .write_scalar(step as i64, tag, value as f32)
            .map_err(|e| tb_err(&self.path, e))
    }

    /// Text (markdown in TensorBoard's Text tab).
    pub fn text(&mut self, step: u64, tag: &str, text: &str) -> Result<(), TrainError> {
        let tensor = tensorboard::TensorProto {
            dtype: tensorboard::DataType::DtString.into(),
            tensor_shape: Some(tensorboard::TensorShapeProto::default()),
            string_val: vec![text.as_bytes().to_vec()],
            ..Default::default()
        };
        let value = summary::Value {
            tag: tag.to_string(),
            metadata: Some(tensorboard::SummaryMetadata {
                plugin_data: Some(tensorboard::summary_metadata::PluginData {
                    plugin_name: "text".into(),
                    content: Vec::new(),
                }),
                ..Default::default()
            }),
            value: Some(summary::value::Value::Tensor(tensor)),
            ..Default::default()
        };
        self.summary(step, value)
    }

    /// An RGB image, stored as PNG.
    pub fn image(&mut self, step: u64, tag: &str, img: &image::RgbImage) -> Result<(), TrainError> {
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(|e| tb_err(&self.path, format!("cannot encode {tag} as PNG: {e}")))?;
        let (w, h) = img.dimensions();
        self.writer
            .write_image(step as i64, tag, w as i32, h as i32, 3, png)
            .map_err(|e| tb_err(&self.path, e))?;
        self.flush()
    }

    fn summary(&mut self, step: u64, value: summary::Value) -> Result<(), TrainError> {
        let what = tensorboard::event::What::Summary(Summary { value: vec![value] });
        self.writer
            .write(step as i64, what)
            .map_err(|e| tb_err(&self.path, e))?;
        self.flush()
    }

    pub fn flush(&mut self) -> Result<(), TrainError> {
        self.writer.flush().map_err(|e| tb_err(&self.path, e))
    }
}

/// The TensorBoard event files in `dir`, sorted.
pub fn event_files(dir: &Path) -> Result<Vec<PathBuf>, TrainError> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(EVENTS_PREFIX))
        .map(|e| e.path())
        .collect();
    v.sort();
    Ok(v)
}

/// Cuts every event file of the run directory `dir` back to `step`.
pub fn cut_back_all(dir: &Path, step: u64) -> Result<(), TrainError> {
    for f in event_files(dir)? {
        cut_back(&f, step)?;
    }
    Ok(())
}

/// Rewrites the event file `path` without its events past `step`. A torn last
/// record (a write cut by a kill) ends the file there.
fn cut_back(path: &Path, step: u64) -> Result<(), TrainError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let mut kept = Vec::new();
    let mut out = EventWriter::from_writer(&mut kept, None).map_err(|e| tb_err(path, e))?;
    for event in SummaryReader::new(&bytes[..]) {
        let Ok(event) = event else { break };
        let is_version = matches!(event.what, Some(tensorboard::event::What::FileVersion(_)));
        if is_version || event.step < 0 || event.step as u64 > step {
            continue;
        }
        out.write_event(event).map_err(|e| tb_err(path, e))?;
    }
    drop(out);
    fnc_formats::write_atomic(path, &kept)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(step: u64) -> StepMetrics {
        StepMetrics {
            step,
            epoch: 0,
            loss: 1.0 / step as f64,
            lr: 0.1,
            images_per_s: 10.0,
            data_wait: 0.0,
            mean_fn: 0.0,
            fn_precision: None,
            fn_chance: None,
            fn_recall: None,
            knn_top1: None,
            bad_records: 0,
            comm: None,
            host_syncs: 1,
        }
    }

    fn steps_of(path: &Path) -> Vec<i64> {
        let bytes = std::fs::read(path).unwrap();
        SummaryReader::new(&bytes[..])
            .map(|e| e.unwrap())
            .filter(|e| matches!(e.what, Some(tensorboard::event::What::Summary(_))))
            .map(|e| e.step)
            .collect()
    }

    #[test]
    fn a_resume_cuts_the_events_back_to_the_checkpoint_and_a_torn_tail_away() {
        let dir = tempfile::tempdir().unwrap();
        let mut ev = Events::open(dir.path(), None).unwrap();
        for s in 1..=5 {
            ev.step(&metrics(s)).unwrap();
        }
        let first = ev.path().to_path_buf();
        drop(ev);
        // A record torn by a kill at the end of the file.
        let mut bytes = std::fs::read(&first).unwrap();
        let whole = bytes.len();
        let torn = bytes[40..60].to_vec();
        bytes.extend_from_slice(&torn);
        std::fs::write(&first, &bytes).unwrap();
        assert!(std::fs::read(&first).unwrap().len() > whole);

        let mut ev = Events::open(dir.path(), Some(3)).unwrap();
        ev.step(&metrics(4)).unwrap();
        let per_step = scalars(&metrics(1)).len();
        let kept = steps_of(&first);
        assert_eq!(kept.len(), 3 * per_step);
        assert!(kept.iter().all(|&s| s <= 3));
        assert_eq!(steps_of(ev.path()), vec![4; per_step]);
        assert_eq!(event_files(dir.path()).unwrap().len(), 2);
    }
}
