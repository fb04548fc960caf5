//! The ingest run: plan, shuffle, convert in parallel, write shards, resume.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use fnc_formats::{
    write_atomic, Manifest, RecordMeta, ShardInfo, ShardWriter, SplitInfo, MANIFEST_FILE,
};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::convert::{convert, Converted, EncodingChoice, ResizeSide, StoragePolicy};
use crate::error::IngestError;
use crate::options::IngestOptions;
use crate::plan::{Plan, SourceItem};
use crate::source::Fetcher;

/// Progress state of an interrupted ingest, next to its shards.
pub const STATE_FILE: &str = "ingest-state.json";
/// The final report of an ingest.
pub const REPORT_FILE: &str = "ingest-report.json";
/// Every file that could not be used, one `name<TAB>reason` line each.
pub const SKIPPED_FILE: &str = "skipped.txt";

/// Items converted together; fixed so that shard contents never depend on threads.
const CHUNK: usize = 256;

/// A source file that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

/// Per-split figures of the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitReport {
    pub records: u64,
    pub bytes: u64,
    pub shards: u64,
    /// Records stored with their original bytes.
    pub kept: u64,
    /// Records decoded and re-encoded (resized, converted).
    pub converted: u64,
    pub skipped: u64,
}

/// What an ingest did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestReport {
    pub out: String,
    pub dataset_id: String,
    pub layout: String,
    pub classes: usize,
    pub splits: BTreeMap<String, SplitReport>,
    pub skipped: Vec<Skipped>,
    pub notes: Vec<String>,
    /// Source files processed by this run (not counting earlier, resumed work).
    pub processed: u64,
    pub seconds: f64,
    pub images_per_s: f64,
    /// This run continued an interrupted one.
    pub resumed: bool,
    /// The output was already complete; nothing was done.
    pub already_complete: bool,
}

/// Receives progress, in bytes of the source (of its files, or of an
/// archive's members); the binary draws a bar with it.
pub trait Progress: Sync {
    /// `total` source bytes, of which `done` were finished by earlier runs.
    fn start(&self, total: u64, done: u64);
    /// `n` more bytes of the source were read.
    fn advance(&self, n: u64);
}

/// A [`Progress`] that ignores everything.
#[derive(Debug)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: u64, _: u64) {}
    fn advance(&self, _: u64) {}
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SplitState {
    /// Items (in shuffled order) consumed by the completed shards.
    cursor: u64,
    shards: Vec<ShardInfo>,
    skipped: Vec<Skipped>,
    kept: u64,
    converted: u64,
    done: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    dataset_id: String,
    splits: BTreeMap<String, SplitState>,
}

fn params_json(opts: &IngestOptions) -> serde_json::Value {
    serde_json::json!({
        "max_side": opts.policy.max_side,
        "resize_side": match opts.policy.resize_side { ResizeSide::Longer => "longer", ResizeSide::Shorter => "shorter" },
        "encoding": opts.policy.encoding.name(),
        "quality": opts.policy.quality,
        "shard_size": opts.shard_size,
        "seed": opts.seed,
        "val_fraction": opts.val_fraction,
    })
}

/// Identifies a plan: the source listing (names, sizes, labels) and every
/// parameter that changes the output. Threads do not.
fn dataset_id(plan: &Plan, opts: &IngestOptions) -> String {
    let mut h = fnc_formats::Fingerprint::new();
    h.field(&fnc_formats::FORMAT_VERSION.to_le_bytes());
    h.field(plan.layout.name().as_bytes());
    h.field(params_json(opts).to_string().as_bytes());
    for c in &plan.classes {
        h.field(c.wnid.as_bytes());
    }
    for (split, items) in &plan.splits {
        h.field(split.as_bytes());
        for it in items {
            h.field(it.name.as_bytes());
            h.field(&it.size.to_le_bytes());
            h.field(&it.label.to_le_bytes());
        }
    }
    h.hex()
}

fn split_seed(seed: u64, split: &str) -> u64 {
    fnc_formats::Fingerprint::starting_at(seed ^ 0x5151_5151_5151_5151)
        .field(split.as_bytes())
        .value()
}

/// What `--out` holds before a run.
enum OutState {
    Fresh,
    Resume(State),
    Complete(Manifest),
}

fn examine_out(out: &Path, id: &str) -> Result<OutState, IngestError> {
    if !out.exists() {
        return Ok(OutState::Fresh);
    }
    if !out.is_dir() {
        return Err(IngestError::OutHoldsOther {
            path: out.to_path_buf(),
            detail: "is not a directory".into(),
        });
    }
    let manifest = out.join(MANIFEST_FILE);
    if manifest.exists() {
        let m = Manifest::read(&manifest)?;
        if m.dataset_id == id {
            return Ok(OutState::Complete(m));
        }
        return Err(IngestError::OutHoldsOther {
            path: out.to_path_buf(),
            detail: format!(
                "holds another dataset (id {}, from {}; this source and these options give {id})",
                m.dataset_id, m.source
            ),
        });
    }
    let state_path = out.join(STATE_FILE);
    if state_path.exists() {
        let text =
            std::fs::read_to_string(&state_path).map_err(|e| IngestError::io(&state_path, e))?;
        let state: State = serde_json::from_str(&text).map_err(|e| IngestError::BadSource {
            path: state_path.clone(),
            detail: format!("unreadable ingest state: {e}"),
        })?;
        if state.dataset_id == id {
            return Ok(OutState::Resume(state));
        }
        return Err(IngestError::OutHoldsOther {
            path: out.to_path_buf(),
            detail: format!(
                "holds an interrupted ingest of another source or other options (id {}, this one is {id})",
                state.dataset_id
            ),
        });
    }
    let non_hidden = std::fs::read_dir(out)
        .map_err(|e| IngestError::io(out, e))?
        .filter_map(|e| e.ok())
        .any(|e| !e.file_name().to_string_lossy().starts_with('.'));
    if non_hidden {
        return Err(IngestError::OutHoldsOther {
            path: out.to_path_buf(),
            detail: "is not empty and holds no fnc dataset".into(),
        });
    }
    Ok(OutState::Fresh)
}

fn save_state(out: &Path, state: &State) -> Result<(), IngestError> {
    let text = serde_json::to_vec_pretty(state).map_err(|e| IngestError::BadSource {
        path: out.join(STATE_FILE),
        detail: e.to_string(),
    })?;
    Ok(write_atomic(&out.join(STATE_FILE), &text)?)
}

fn read_and_convert(
    fetcher: &Fetcher,
    item: &SourceItem,
    policy: &StoragePolicy,
) -> Result<Converted, String> {
    convert(&fetcher.read(item)?, policy)
}

/// Each split's items in the order they are packed: shuffled once, seeded.
fn packing_orders(plan: &Plan, seed: u64) -> BTreeMap<&str, Vec<&SourceItem>> {
    plan.splits
        .iter()
        .map(|(split, items)| {
            let mut order: Vec<&SourceItem> = items.iter().collect();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(split_seed(seed, split));
            order.shuffle(&mut rng);
            (split.as_str(), order)
        })
        .collect()
}

/// Packs `opts.src` into shards under `opts.out`, resuming an interrupted run.
pub fn ingest(opts: &IngestOptions, progress: &dyn Progress) -> Result<IngestReport, IngestError> {
    let started = Instant::now();
    opts.check()?;
    let plan = crate::archive::discover(
        &opts.src,
        opts.val_archive.as_deref(),
        opts.devkit.as_deref(),
        opts.val_fraction,
        opts.seed,
    )?;
    let id = dataset_id(&plan, opts);
    let out = &opts.out;
    let mut state = match examine_out(out, &id)? {
        OutState::Complete(m) => return Ok(complete_report(out, &m, &plan, started)),
        OutState::Resume(s) => s,
        OutState::Fresh => State {
            dataset_id: id.clone(),
            splits: BTreeMap::new(),
        },
    };
    let resumed = !state.splits.is_empty();
    std::fs::create_dir_all(out).map_err(|e| IngestError::io(out, e))?;
    remove_stale_tmp(out)?;

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .thread_name(|i| format!("fnc-ingest-{i}"))
        .build()
        .map_err(|e| IngestError::BadOption {
            flag: "--threads",
            detail: e.to_string(),
        })?;

    let orders = packing_orders(&plan, opts.seed);
    let bytes_of = |items: &[&SourceItem]| items.iter().map(|it| it.size).sum::<u64>();
    let total: u64 = orders.values().map(|o| bytes_of(o)).sum();
    let done_before: u64 = orders
        .iter()
        .map(|(name, order)| match state.splits.get(*name) {
            Some(s) if s.done => bytes_of(order),
            Some(s) => bytes_of(&order[..(s.cursor as usize).min(order.len())]),
            None => 0,
        })
        .sum();
    progress.start(total, done_before);
    let mut fetcher = Fetcher::open(&plan.archives)?;

    let mut shards_this_run = 0u64;
    let mut processed = 0u64;
    for (split, order) in &orders {
        let split = &split.to_string();
        let mut ss = state.splits.get(split).cloned().unwrap_or_default();
        if ss.done {
            continue;
        }

        let shard_path = |k: usize| out.join(format!("{split}-{k:05}.fncs"));
        let mut writer = ShardWriter::new(shard_path(ss.shards.len()));
        let (mut pending_skipped, mut pending_kept, mut pending_converted) =
            (Vec::new(), 0u64, 0u64);
        let skipped_before: usize = state
            .splits
            .values()
            .map(|s| s.skipped.len())
            .sum::<usize>()
            - state
                .splits
                .get(split)
                .map(|s| s.skipped.len())
                .unwrap_or(0);

        let mut pos = ss.cursor as usize;
        while pos < order.len() {
            let end = (pos + CHUNK).min(order.len());
            let chunk = &order[pos..end];
            // Members of a compressed archive are gathered a shard's worth at a time.
            fetcher.prepare(chunk, &order[end..], opts.shard_size)?;
            let fetcher = &fetcher;
            let results: Vec<Result<Converted, String>> = pool.install(|| {
                chunk
                    .par_iter()
                    .map(|it| {
                        let r = read_and_convert(fetcher, it, &opts.policy);
                        progress.advance(it.size);
                        r
                    })
                    .collect()
            });
            processed += chunk.len() as u64;
            for (k, (item, result)) in chunk.iter().zip(results).enumerate() {
                let item_pos = pos + k;
                match result {
                    Err(reason) => {
                        pending_skipped.push(Skipped {
                            path: item.name.clone(),
                            reason,
                        });
                        let n = skipped_before + ss.skipped.len() + pending_skipped.len();
                        if n > opts.max_errors {
                            let last = pending_skipped
                                .last()
                                .map(|s| format!("{}: {}", s.path, s.reason))
                                .unwrap_or_default();
                            return Err(IngestError::TooManyErrors {
                                skipped: n,
                                max: opts.max_errors,
                                last,
                            });
                        }
                    }
                    Ok(c) => {
                        if !writer.is_empty()
                            && writer.bytes() + c.data.len() as u64 + 128 > opts.shard_size
                        {
                            let full = std::mem::replace(
                                &mut writer,
                                ShardWriter::new(shard_path(ss.shards.len() + 1)),
                            );
                            ss.shards.push(full.finish()?);
                            ss.cursor = item_pos as u64;
                            ss.skipped.append(&mut pending_skipped);
                            ss.kept += std::mem::take(&mut pending_kept);
                            ss.converted += std::mem::take(&mut pending_converted);
                            state.splits.insert(split.clone(), ss.clone());
                            save_state(out, &state)?;
                            shards_this_run += 1;
                            if opts.stop_after_shards == Some(shards_this_run) {
                                return Err(IngestError::Stopped {
                                    shards: shards_this_run,
                                    out: out.clone(),
                                });
                            }
                        }
                        if c.kept {
                            pending_kept += 1;
                        } else {
                            pending_converted += 1;
                        }
                        writer.push(
                            &RecordMeta {
                                label: item.label,
                                width: c.width,
                                height: c.height,
                                encoding: c.encoding,
                                name: &item.name,
                            },
                            &c.data,
                        );
                    }
                }
            }
            pos += chunk.len();
        }
        if !writer.is_empty() {
            ss.shards.push(writer.finish()?);
        }
        ss.cursor = order.len() as u64;
        ss.skipped.append(&mut pending_skipped);
        ss.kept += pending_kept;
        ss.converted += pending_converted;
        ss.done = true;
        state.splits.insert(split.clone(), ss);
        save_state(out, &state)?;
    }

    let manifest = Manifest {
        format: "fnc-shards".into(),
        format_version: fnc_formats::FORMAT_VERSION,
        dataset_id: id.clone(),
        layout: plan.layout.name().into(),
        source: opts.src.display().to_string(),
        classes: plan.classes.clone(),
        splits: state
            .splits
            .iter()
            .map(|(name, s)| {
                let records = s.shards.iter().map(|x| x.records).sum();
                (
                    name.clone(),
                    SplitInfo {
                        records,
                        shards: s.shards.clone(),
                    },
                )
            })
            .collect(),
        params: params_json(opts),
    };
    let seconds = started.elapsed().as_secs_f64();
    let report = IngestReport {
        out: out.display().to_string(),
        dataset_id: id,
        layout: plan.layout.name().into(),
        classes: plan.classes.len(),
        splits: state
            .splits
            .iter()
            .map(|(name, s)| {
                (
                    name.clone(),
                    SplitReport {
                        records: s.shards.iter().map(|x| x.records).sum(),
                        bytes: s.shards.iter().map(|x| x.bytes).sum(),
                        shards: s.shards.len() as u64,
                        kept: s.kept,
                        converted: s.converted,
                        skipped: s.skipped.len() as u64,
                    },
                )
            })
            .collect(),
        skipped: state
            .splits
            .values()
            .flat_map(|s| s.skipped.iter().cloned())
            .collect(),
        notes: plan.notes.clone(),
        processed,
        seconds,
        images_per_s: processed as f64 / seconds.max(1e-9),
        resumed,
        already_complete: false,
    };
    let mut skipped_txt = String::new();
    for s in &report.skipped {
        skipped_txt.push_str(&format!("{}\t{}\n", s.path, s.reason));
    }
    write_atomic(&out.join(SKIPPED_FILE), skipped_txt.as_bytes())?;
    let report_json = serde_json::to_vec_pretty(&report).map_err(|e| IngestError::BadSource {
        path: out.join(REPORT_FILE),
        detail: e.to_string(),
    })?;
    write_atomic(&out.join(REPORT_FILE), &report_json)?;
    // The manifest last: its presence means the dataset is complete.
    manifest.write(&out.join(MANIFEST_FILE))?;
    let _ = std::fs::remove_file(out.join(STATE_FILE));
    Ok(report)
}

fn remove_stale_tmp(out: &Path) -> Result<(), IngestError> {
    for e in std::fs::read_dir(out)
        .map_err(|e| IngestError::io(out, e))?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(".tmp") {
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(())
}

/// The report of an output that was already complete.
fn complete_report(out: &Path, m: &Manifest, plan: &Plan, started: Instant) -> IngestReport {
    let earlier: Option<IngestReport> = std::fs::read(out.join(REPORT_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let mut r = earlier.unwrap_or_else(|| IngestReport {
        out: out.display().to_string(),
        dataset_id: m.dataset_id.clone(),
        layout: m.layout.clone(),
        classes: m.classes.len(),
        splits: m
            .splits
            .iter()
            .map(|(k, s)| {
                (
                    k.clone(),
                    SplitReport {
                        records: s.records,
                        bytes: s.shards.iter().map(|x| x.bytes).sum(),
                        shards: s.shards.len() as u64,
                        ..Default::default()
                    },
                )
            })
            .collect(),
        skipped: Vec::new(),
        notes: plan.notes.clone(),
        processed: 0,
        seconds: 0.0,
        images_per_s: 0.0,
        resumed: false,
        already_complete: true,
    });
    r.processed = 0;
    r.seconds = started.elapsed().as_secs_f64();
    r.images_per_s = 0.0;
    r.already_complete = true;
    r
}

/// The storage encodings the CLI offers, by name.
pub fn parse_encoding(s: &str) -> Option<EncodingChoice> {
    Some(match s {
        "keep" => EncodingChoice::Keep,
        "jpeg" => EncodingChoice::Jpeg,
        "webp" => EncodingChoice::WebP,
        "raw" => EncodingChoice::Raw,
        _ => return None,
    })
}
