//! `fnc-augment`: look at the augmentations (`preview`) and time the engine (`bench`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use fnc_augment::{simd, EngineConfig, Loader, Recipe, Sampler};

/// The fnc multi-view augmentation engine: preview and benchmark.
#[derive(Debug, Parser)]
#[command(name = "fnc-augment", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Common {
    /// Dataset directory written by fnc-ingest (holding manifest.json).
    #[arg(long)]
    shards: PathBuf,
    /// Split to read.
    #[arg(long, default_value = "train")]
    split: String,
    /// Seed of every random draw; the same seed gives the same views.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    seed: u64,
    /// Worker threads, 0..=1024; 0 = one per core. Output does not depend on it.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    threads: usize,
    /// Support views per image, 0..=64 (V = 2 + S).
    #[arg(long, allow_negative_numbers = true, default_value_t = 8)]
    support: usize,
    /// Side of the 2 main views in pixels, 8..=4096.
    #[arg(long, allow_negative_numbers = true, default_value_t = 224)]
    size: u32,
    /// Side of the support views in pixels, 8..=4096.
    #[arg(long, allow_negative_numbers = true, default_value_t = 224)]
    support_size: u32,
    /// Solarize probability in [0, 1] (BYOL-style; off in the reference recipe).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    solarize: f64,
    /// Colour distortion strength s, in [0, 10].
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    color_strength: f64,
    /// Semantics of the view ops: torchvision or reference (the official TF
    /// code's crop sampler, bicubic resize, colour ops and blur).
    #[arg(long, default_value = "torchvision", value_name = "IMPL")]
    augment_impl: fnc_augment::AugmentImpl,
    /// RandAugment as LAYERS,MAGNITUDE (the reference's is 2,7), or off.
    #[arg(long, default_value = "off", value_name = "L,M")]
    randaugment: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a contact sheet: per image, the original then its 2 main and S support views.
    Preview {
        #[command(flatten)]
        common: Common,
        /// Output PNG.
        #[arg(long, default_value = "preview.png")]
        out: PathBuf,
        /// Number of images (rows), 1..=1000.
        #[arg(long, allow_negative_numbers = true, default_value_t = 6)]
        images: usize,
    },
    /// Measure engine throughput in source images/s and views/s.
    Bench {
        #[command(flatten)]
        common: Common,
        /// Seconds to measure (after warm-up batches, until the engine recycles its buffers), in (0, 86400].
        #[arg(long, default_value_t = 10.0, allow_negative_numbers = true)]
        seconds: f64,
        /// Images per batch (at least 1, at most the split's records).
        #[arg(long, allow_negative_numbers = true, default_value_t = 64)]
        batch_size: usize,
        /// Simulate a consumer that needs this many images/s (e.g. a training
        /// step's rate); 0 = a consumer that only pops. The wait fraction then
        /// says whether the engine keeps up with it. Else at least
        /// --batch-size / --seconds, so that one batch's work fits the measurement.
        #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
        consumer_rate: f64,
        /// Time one op: the crop (with decoding and resizing, which every view
        /// needs) alone, or the crop and one op at its recipe probability;
        /// `all` is the whole recipe. A per-op cost is the difference
        /// against `crop`.
        #[arg(long, value_enum, default_value_t = BenchOp::All)]
        op: BenchOp,
        /// The instruction set the kernels run on: scalar, avx2 or avx512,
        /// among those this CPU has (the views do not depend on it)
        /// [default: the widest this CPU has: avx512, else avx2, else scalar].
        #[arg(long, value_name = "NAME")]
        cpu_path: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// What `bench --op` keeps of the recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BenchOp {
    All,
    Crop,
    Flip,
    Jitter,
    Grey,
    Blur,
}

impl BenchOp {
    /// `recipe` with every op but the crop and this one switched off (the
    /// optional ones, RandAugment and solarize, are refused with `--op` by
    /// `validate`).
    fn keep(self, mut recipe: Recipe) -> Recipe {
        if self == BenchOp::All {
            return recipe;
        }
        if self != BenchOp::Flip {
            recipe.flip_p = 0.0;
        }
        if self != BenchOp::Jitter {
            recipe.jitter_p = 0.0;
        }
        if self != BenchOp::Grey {
            recipe.grey_p = 0.0;
        }
        if self != BenchOp::Blur {
            recipe.blur_p = 0.0;
        }
        recipe
    }

    fn name(self) -> &'static str {
        match self {
            BenchOp::All => "all",
            BenchOp::Crop => "crop",
            BenchOp::Flip => "flip",
            BenchOp::Jitter => "jitter",
            BenchOp::Grey => "grey",
            BenchOp::Blur => "blur",
        }
    }
}

/// The most worker threads `--threads` may ask for.
const MAX_THREADS: usize = 1024;
/// The longest `bench --seconds`: a day.
const MAX_SECONDS: f64 = 86_400.0;
/// The most rows of a preview sheet.
const MAX_IMAGES: usize = 1000;

/// An invalid flag value, named as the user types it.
fn bad(flag: &str, detail: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("invalid option {flag}: {detail}")
}

/// The one judge of the command line: every numeric flag against its
/// documented range (the engine's builder judges those it owns and names
/// them), before anything is read or written. Returns the engine config.
fn validate(command: &Command) -> Result<(EngineConfig, Option<simd::CpuPath>)> {
    let mut chosen = None;
    let (common, batch, op) = match command {
        Command::Preview { common, images, .. } => {
            if !(1..=MAX_IMAGES).contains(images) {
                return Err(bad(
                    "--images",
                    format!("{images} is not in 1..={MAX_IMAGES}"),
                ));
            }
            (common, 1, BenchOp::All)
        }
        Command::Bench {
            common,
            seconds,
            batch_size,
            consumer_rate,
            op,
            cpu_path,
            ..
        } => {
            if !(*seconds > 0.0 && *seconds <= MAX_SECONDS) {
                return Err(bad(
                    "--seconds",
                    format!("{seconds} is not in (0, {MAX_SECONDS}]"),
                ));
            }
            // NaN fails every comparison: only 0 and finite positive rates pass.
            let per_batch = *batch_size as f64 / consumer_rate;
            let rate_ok =
                consumer_rate.is_finite() && *consumer_rate > 0.0 && per_batch <= *seconds;
            if !(*consumer_rate == 0.0 || rate_ok) {
                return Err(bad(
                    "--consumer-rate",
                    format!(
                        "{consumer_rate} images/s is not 0 (a consumer that only pops) nor at least \
                         --batch-size / --seconds = {} (one batch's work must fit the measurement)",
                        *batch_size as f64 / seconds
                    ),
                ));
            }
            if *op != BenchOp::All && (common.randaugment != "off" || common.solarize != 0.0) {
                return Err(bad(
                    "--op",
                    format!(
                        "{} times the crop and one op of the base recipe: leave out --randaugment and --solarize, or use --op all",
                        op.name()
                    ),
                ));
            }
            if let Some(name) = cpu_path {
                let path = simd::path_named(name).ok_or_else(|| {
                    let have: Vec<_> = simd::available_paths().iter().map(|p| p.name()).collect();
                    bad(
                        "--cpu-path",
                        format!(
                            "{name} is not a path of this CPU (it has {})",
                            have.join(", ")
                        ),
                    )
                })?;
                chosen = Some(path);
            }
            (common, *batch_size, *op)
        }
    };
    if common.threads > MAX_THREADS {
        return Err(bad(
            "--threads",
            format!("{} is not in 0..={MAX_THREADS}", common.threads),
        ));
    }
    let recipe = op.keep(Recipe {
        solarize_p: common.solarize,
        jitter_strength: common.color_strength,
        implementation: common.augment_impl,
        randaugment: fnc_augment::parse_randaugment(&common.randaugment)
            .map_err(|e| bad("--randaugment", format!("{}: {e}", common.randaugment)))?,
        ..Recipe::default()
    });
    let cfg = EngineConfig::builder()
        .batch_size(batch)
        .support(common.support)
        .size(common.size)
        .support_size(common.support_size)
        .seed(common.seed)
        .threads(common.threads)
        .recipe(recipe)
        .build()?;
    Ok((cfg, chosen))
}

fn open(c: &Common) -> Result<Arc<fnc_formats::SplitReader>> {
    let ds = fnc_formats::Dataset::open(&c.shards)
        .with_context(|| format!("--shards {}", c.shards.display()))?;
    Ok(Arc::new(
        ds.split(&c.split)
            .with_context(|| format!("--split {}", c.split))?,
    ))
}

fn run() -> Result<()> {
    let command = Cli::parse().command;
    let (cfg, cpu_path) = validate(&command)?;
    if let Some(path) = cpu_path {
        simd::use_path(path);
    }
    match command {
        Command::Preview {
            common,
            out,
            images,
        } => {
            let split = open(&common)?;
            let sheet = fnc_augment::contact_sheet(split, &cfg, images)?;
            sheet
                .save_with_format(&out, image::ImageFormat::Png)
                .with_context(|| format!("writing --out {}", out.display()))?;
            println!(
                "wrote {} ({}x{})",
                out.display(),
                sheet.width(),
                sheet.height()
            );
        }
        Command::Bench {
            common,
            seconds,
            batch_size: _,
            consumer_rate,
            op,
            json,
            ..
        } => {
            let split = open(&common)?;
            let views = cfg.views();
            let threads = if common.threads == 0 {
                rayon::current_num_threads()
            } else {
                common.threads
            };
            let sampler = Sampler::new(split.len(), common.seed, 0, 1);
            let depth = cfg.queue_depth();
            let mut loader = Loader::start(split, cfg, sampler)?;
            // Warm-up: batches until the engine recycles its buffers. A new set
            // of batch buffers is paid for in page faults as it is first
            // written (~100 ms for the 96 MB of 64 images x 10 views at 224
            // px in this VM), once per run, which a measurement of a few
            // seconds would otherwise count. At most the queue's depth plus a
            // few.
            let mut sets = 0;
            for _ in 0..depth + 4 {
                drop(loader.next_batch().context("the engine stopped")??);
                let now = loader.buffers_allocated();
                if now == sets {
                    break;
                }
                sets = now;
            }
            let bar = if std::io::stderr().is_terminal() {
                indicatif::ProgressBar::new_spinner()
            } else {
                indicatif::ProgressBar::hidden()
            };
            let (t0, w0) = (Instant::now(), loader.waited());
            let mut images = 0u64;
            while t0.elapsed() < Duration::from_secs_f64(seconds) {
                let b = loader.next_batch().context("the engine stopped")??;
                images += b.indices.len() as u64;
                if consumer_rate > 0.0 {
                    // Stands for the consumer's own work on the batch.
                    std::thread::sleep(Duration::from_secs_f64(
                        b.indices.len() as f64 / consumer_rate,
                    ));
                }
                bar.set_message(format!("{images} images"));
                bar.tick();
            }
            bar.finish_and_clear();
            let secs = t0.elapsed().as_secs_f64();
            let wait = (loader.waited() - w0).as_secs_f64() / secs;
            let r = serde_json::json!({
                "images_per_s": images as f64 / secs,
                "views_per_s": (images * views as u64) as f64 / secs,
                "views_per_image": views,
                "size": common.size,
                "support_size": common.support_size,
                "threads": threads,
                "seconds": secs,
                "consumer_wait_fraction": wait,
                "consumer_rate": consumer_rate,
                "op": op.name(),
                "cpu_path": simd::best_path().name(),
                "buffers_allocated": loader.buffers_allocated(),
            });
            if json {
                println!("{r}");
            } else {
                println!(
                    "{:.0} images/s, {:.0} views/s ({} views/image: 2x{} + {}x{}), {} threads, --op {}, {} kernels",
                    images as f64 / secs,
                    (images * views as u64) as f64 / secs,
                    views,
                    common.size,
                    common.support,
                    common.support_size,
                    threads,
                    op.name(),
                    simd::best_path().name()
                );
            }
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
