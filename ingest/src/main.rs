//! `fnc-ingest`: pack an image tree into shards; inspect, verify, synthesise.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use fnc_ingest::{
    EncodingChoice, IngestOptions, IngestReport, Progress, ResizeSide, StoragePolicy, SynthOptions,
};
use indicatif::{ProgressBar, ProgressStyle};

/// Pack an image tree (ILSVRC2012 or ImageFolder), a tar or tar.gz of one, or ImageNet's
/// official archives into verified, memory-mapped shards.
///
/// Exit status: 0 on success, 1 on error, 2 when the dataset was written but some
/// source files could not be used (they are listed in the report and in
/// OUT/skipped.txt).
#[derive(Debug, Parser)]
#[command(name = "fnc-ingest", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    ingest: IngestArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Describe a shard directory: splits, classes, per-class counts, sizes, encodings.
    Inspect {
        /// The dataset directory (holding manifest.json).
        dir: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check every checksum of a shard directory; exit 1 naming each shard and record at fault.
    Verify {
        /// The dataset directory (holding manifest.json).
        dir: PathBuf,
        /// Print a JSON summary.
        #[arg(long)]
        json: bool,
    },
    /// Write the embedded default dataset (generated images, ILSVRC layout).
    Synth(SynthArgs),
}

#[derive(Debug, Args)]
struct SynthArgs {
    /// Directory to write train/, val/ and LOC_synset_mapping.txt into.
    dir: PathBuf,
    /// Number of classes, 1..=10000.
    #[arg(long, allow_negative_numbers = true, default_value_t = 10)]
    classes: u32,
    /// Training images per class, 1..=100000.
    #[arg(long, allow_negative_numbers = true, default_value_t = 200)]
    per_class: u32,
    /// Validation images per class, 0..=100000 [default: per-class / 4].
    #[arg(long, allow_negative_numbers = true)]
    val_per_class: Option<u32>,
    /// Image side in pixels, 16..=4096.
    #[arg(long, allow_negative_numbers = true, default_value_t = 96)]
    size: u32,
    /// Seed; the same seed writes the same files.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    seed: u64,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EncodingArg {
    /// Original bytes for RGB/grey JPEGs that need no resize; the rest re-encoded as JPEG.
    Keep,
    /// Re-encode everything as JPEG at --quality.
    Jpeg,
    /// Encode everything as lossy WebP at --quality.
    Webp,
    /// Store packed RGB8 (fastest to read, largest).
    Raw,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SideArg {
    /// --max-side limits the longer side.
    Longer,
    /// --max-side limits the shorter side.
    Shorter,
}

#[derive(Debug, Args)]
struct IngestArgs {
    /// Source: a tree, ILSVRC2012 (train/<wnid>/*.JPEG, val/ in class folders or flat
    /// with LOC_val_solution.csv, test/ in class folders) or ImageFolder
    /// (<class>/*.{jpg,jpeg,png,webp}); a tar or tar.gz of such a tree (one top folder
    /// allowed); ImageNet's ILSVRC2012_img_train.tar (with --val and --devkit), or a
    /// directory holding the three official files. Archives are read in place.
    src: Option<PathBuf>,
    /// ImageNet's ILSVRC2012_img_val.tar (needs --devkit for its labels).
    #[arg(long, value_name = "TAR")]
    val: Option<PathBuf>,
    /// ImageNet's ILSVRC2012_devkit_t12.tar.gz: the val labels and class names.
    #[arg(long, value_name = "TAR.GZ")]
    devkit: Option<PathBuf>,
    /// Output directory for shards and manifest.json.
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// Images whose limited side (see --resize-side) exceeds N pixels are resized
    /// to N, 16..=65535; 0 = never resize.
    #[arg(long, allow_negative_numbers = true, default_value_t = 512)]
    max_side: u32,
    /// Which side --max-side limits.
    #[arg(long, value_enum, default_value = "longer")]
    resize_side: SideArg,
    /// How records are stored.
    #[arg(long, value_enum, default_value = "keep")]
    encoding: EncodingArg,
    /// JPEG/WebP quality for re-encoded images (1-100).
    #[arg(long, allow_negative_numbers = true, default_value_t = 90)]
    quality: u8,
    /// Target shard size, in bytes or with a K/M/G suffix (binary units), 4K..=16G.
    #[arg(long, allow_negative_numbers = true, default_value = "256M", value_parser = parse_size)]
    shard_size: u64,
    /// Worker threads, 0..=1024; 0 = one per core. The output is identical for any value.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    threads: usize,
    /// Seed of the one-time record shuffle (and of --val-fraction).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    seed: u64,
    /// Fraction of each class moved to a val split when the source has none, in [0, 1).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    val_fraction: f64,
    /// Stop when more than N source files cannot be used (0 = at the first).
    #[arg(long, allow_negative_numbers = true, default_value_t = 1000)]
    max_errors: usize,
    /// Write at most N shards in this run, then stop as an interruption would
    /// (exit status 1); running the same command again continues. For ingesting
    /// in time slots [default: no limit].
    #[arg(long, allow_negative_numbers = true, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    stop_after_shards: Option<u64>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n = num
        .trim()
        .parse::<u64>()
        .map_err(|_| format!("{s:?} is not a size (e.g. 256M, 1G, 65536)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is larger than {} bytes", u64::MAX))
}

/// One place that decides whether progress is drawn: only on a terminal.
fn progress_bar(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

struct BarProgress(ProgressBar);

impl Progress for BarProgress {
    fn start(&self, total: u64, done: u64) {
        self.0.set_length(total);
        self.0.set_position(done);
        self.0.reset_eta();
    }
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}

fn human_bytes(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", units[u])
}

fn print_report(r: &IngestReport) {
    if r.already_complete {
        println!(
            "{} already holds this dataset (id {}); nothing to do.",
            r.out, r.dataset_id
        );
    } else if r.resumed {
        println!("Resumed the interrupted ingest into {}.", r.out);
    }
    println!(
        "{:<8} {:>10} {:>7} {:>12} {:>9} {:>10} {:>8}",
        "split", "records", "shards", "bytes", "kept", "converted", "skipped"
    );
    for (name, s) in &r.splits {
        println!(
            "{:<8} {:>10} {:>7} {:>12} {:>9} {:>10} {:>8}",
            name,
            s.records,
            s.shards,
            human_bytes(s.bytes),
            s.kept,
            s.converted,
            s.skipped
        );
    }
    println!("{} classes, layout {}", r.classes, r.layout);
    if !r.already_complete {
        println!(
            "{} files in {:.1} s: {:.0} images/s",
            r.processed, r.seconds, r.images_per_s
        );
    }
    for n in &r.notes {
        println!("note: {n}");
    }
    if !r.skipped.is_empty() {
        println!(
            "{} files could not be used (also in {}/skipped.txt):",
            r.skipped.len(),
            r.out
        );
        for s in &r.skipped {
            println!("  {}: {}", s.path, s.reason);
        }
    }
}

/// The ingest's options from the command line, judged by
/// [`IngestOptions::check`] (each error names its flag) before anything is
/// read or written.
fn ingest_options(a: &IngestArgs, src: &Path) -> Result<IngestOptions> {
    let mut opts = IngestOptions::new(src, &a.out);
    opts.val_archive.clone_from(&a.val);
    opts.devkit.clone_from(&a.devkit);
    opts.policy = StoragePolicy {
        max_side: a.max_side,
        resize_side: match a.resize_side {
            SideArg::Longer => ResizeSide::Longer,
            SideArg::Shorter => ResizeSide::Shorter,
        },
        encoding: match a.encoding {
            EncodingArg::Keep => EncodingChoice::Keep,
            EncodingArg::Jpeg => EncodingChoice::Jpeg,
            EncodingArg::Webp => EncodingChoice::WebP,
            EncodingArg::Raw => EncodingChoice::Raw,
        },
        quality: a.quality,
    };
    opts.shard_size = a.shard_size;
    opts.threads = a.threads;
    opts.seed = a.seed;
    opts.val_fraction = a.val_fraction;
    opts.max_errors = a.max_errors;
    opts.stop_after_shards = a.stop_after_shards;
    opts.check()?;
    Ok(opts)
}

/// The synth options from the command line, judged by [`SynthOptions::check`].
fn synth_options(a: &SynthArgs) -> Result<SynthOptions> {
    let opts = SynthOptions {
        classes: a.classes,
        per_class: a.per_class,
        val_per_class: a.val_per_class.unwrap_or((a.per_class / 4).max(1)),
        size: a.size,
        seed: a.seed,
    };
    opts.check()?;
    Ok(opts)
}

fn run_ingest(opts: &IngestOptions, json: bool) -> Result<ExitCode> {
    let (src, out) = (&opts.src, &opts.out);
    let bar = BarProgress(progress_bar(0));
    let report = fnc_ingest::ingest(opts, &bar)
        .with_context(|| format!("ingesting {} into {}", src.display(), out.display()))?;
    bar.0.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(if report.skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Writes to stdout; a closed pipe (the reader has seen enough) is not an error.
fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        None => {
            let Some(src) = &cli.ingest.src else {
                anyhow::bail!("no SRC given: fnc-ingest SRC [--out DIR], or a subcommand (inspect, verify, synth); see --help");
            };
            let opts = ingest_options(&cli.ingest, src)?;
            run_ingest(&opts, cli.ingest.json)
        }
        Some(Command::Inspect { dir, json }) => {
            let ins = fnc_ingest::inspect(&dir)
                .with_context(|| format!("inspecting {}", dir.display()))?;
            // Written in one piece, so that a reader that stops early (`| head`)
            // ends the output quietly instead of a failed print.
            let mut text = String::new();
            if json {
                text = serde_json::to_string_pretty(&ins)? + "\n";
            } else {
                text += &format!(
                    "{} (format v{}, {} layout, id {}), {} classes\n",
                    ins.dir, ins.format_version, ins.layout, ins.dataset_id, ins.classes
                );
                for (name, s) in &ins.splits {
                    let enc: Vec<String> = s
                        .encodings
                        .iter()
                        .map(|(k, v)| format!("{k} {v}"))
                        .collect();
                    text += &format!(
                        "  {name}: {} records in {} classes, {} shards, {}; {}; width {}..{} (mean {:.0}), height {}..{} (mean {:.0})\n",
                        s.records, s.classes, s.shards, human_bytes(s.bytes), enc.join(", "),
                        s.width.min, s.width.max, s.width.mean, s.height.min, s.height.max, s.height.mean
                    );
                    for c in &s.per_class {
                        text += &format!(
                            "    {:>4} {:<12} {:>8}  {}\n",
                            c.index,
                            c.wnid,
                            c.records,
                            c.name.as_deref().unwrap_or("")
                        );
                    }
                }
            }
            emit(&text)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Verify { dir, json }) => {
            let bar = progress_bar(0);
            bar.set_message("verifying");
            let r =
                fnc_ingest::verify(&dir).with_context(|| format!("verifying {}", dir.display()))?;
            bar.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                for f in &r.faults {
                    eprintln!("FAULT {f}");
                }
                println!(
                    "{} shards, {} records, {}: {}",
                    r.shards,
                    r.records,
                    human_bytes(r.bytes),
                    if r.faults.is_empty() {
                        "all checksums OK".to_string()
                    } else {
                        format!("{} faults", r.faults.len())
                    }
                );
            }
            if r.faults.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                anyhow::bail!(
                    "{}: {} faults; the first: {}",
                    dir.display(),
                    r.faults.len(),
                    r.faults[0]
                )
            }
        }
        Some(Command::Synth(a)) => {
            let opts = synth_options(&a)?;
            let r = fnc_ingest::synth(&a.dir, &opts)
                .with_context(|| format!("writing synth data to {}", a.dir.display()))?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "wrote {} train + {} val images in {} classes to {}",
                    r.train, r.val, r.classes, r.dir
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
