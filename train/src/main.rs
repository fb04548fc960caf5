//! `fnc-train`: pretrain an encoder with the FNC loss; compute the loss of saved
//! embeddings; export the encoder.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use fnc_train::{
    Aggregate, Anchors, Arch, Detect, InitScheme, LossConfig, LrScaling, MemoryFormat,
    OptimizerKind, Precision, Strategy, SupportSet, TrainConfig,
};

/// Pretrain an image encoder with the FNC loss (GPU when present, CPU otherwise).
#[derive(Debug, Parser)]
#[command(
    name = "fnc-train",
    version,
    args_conflicts_with_subcommands = true,
    // A flag given twice takes its last value (e.g. after a preset of flags).
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The FNC loss of a saved float32 embedding matrix (rows view-major: rows
    /// [v*B, (v+1)*B) are view v of images 0..B-1), printed as JSON.
    Loss {
        /// .npy file, float32 or float64, shape [V*B, d].
        #[arg(long)]
        embeddings: PathBuf,
        /// Views per image, V.
        #[arg(long)]
        views: i64,
        /// Optional .npy of B integer labels, for FN precision.
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Where to compute it: cpu, cuda or cuda:N (the GPU check compares
        /// the two) [default: cpu].
        #[arg(long, default_value = "cpu")]
        device: String,
        #[command(flatten)]
        loss: LossArgs,
        /// Print JSON (the only output format; accepted for symmetry).
        #[arg(long)]
        json: bool,
    },
    /// Time training steps of a model and loss on random views (no data loading),
    /// for comparison with a PyTorch eager step (bench/train_step.py).
    Bench {
        #[command(flatten)]
        train: Box<TrainArgs>,
        /// Untimed warm-up steps.
        #[arg(long, default_value_t = 1)]
        warmup: usize,
        /// Timed steps.
        #[arg(long, default_value_t = 3)]
        timed: usize,
    },
    /// Write the encoder of a run's latest checkpoint as safetensors with
    /// torchvision ResNet names (load with `resnet50().load_state_dict` after
    /// dropping `fc`).
    Export {
        /// Run directory.
        #[arg(long)]
        run: PathBuf,
        /// Output file [default: RUN/encoder.safetensors].
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct LossArgs {
    /// Softmax temperature [default: 0.1].
    #[arg(long)]
    temperature: Option<f64>,
    /// none (SimCLR / multi-view NT-Xent), elimination, or attraction [default: attraction].
    #[arg(long, value_enum)]
    fn_strategy: Option<Strategy>,
    /// How similarities to the support set are combined [default: max].
    #[arg(long, value_enum)]
    fn_aggregate: Option<Aggregate>,
    /// Top-k filter of false-negative detection; 0 = off [default: 10].
    #[arg(long)]
    fn_topk: Option<i64>,
    /// Similarity threshold of detection, or `none` [default: 0.7].
    #[arg(long)]
    fn_threshold: Option<String>,
    /// Anchor views: all, or main (views 0 and 1) [default: all].
    #[arg(long, value_enum)]
    fn_anchors: Option<Anchors>,
    /// Support set for detection: all views, or support views only [default: all].
    #[arg(long, value_enum)]
    fn_support: Option<SupportSet>,
    /// Where F_i comes from: support (the method) or oracle (the candidates
    /// sharing the image's label: the upper bound; the only use of labels by
    /// the loss) [default: support].
    #[arg(long, value_enum)]
    fn_detect: Option<Detect>,
    /// Oracle only: keep the same-label candidates that --fn-topk and
    /// --fn-threshold keep when they rank them by support-set similarity, so
    /// |F_i| stays comparable to detection's [default: false].
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    fn_oracle_filter: Option<bool>,
    /// Oracle only: the share P of each F_i that is right; 1 - P of it is
    /// replaced by random candidates of other labels, |F_i| kept [default: 1].
    #[arg(long, value_name = "P")]
    fn_oracle_precision: Option<f64>,
}

impl LossArgs {
    fn apply(&self, c: &mut LossConfig) -> Result<()> {
        if let Some(v) = self.temperature {
            c.temperature = v;
        }
        if let Some(v) = self.fn_strategy {
            c.strategy = v;
        }
        if let Some(v) = self.fn_aggregate {
            c.aggregate = v;
        }
        if let Some(v) = self.fn_topk {
            c.topk = v;
        }
        if let Some(v) = &self.fn_threshold {
            c.threshold = if v == "none" {
                None
            } else {
                Some(
                    v.parse()
                        .with_context(|| format!("--fn-threshold {v:?}: a number or `none`"))?,
                )
            };
        }
        if let Some(v) = self.fn_anchors {
            c.anchors = v;
        }
        if let Some(v) = self.fn_support {
            c.support_set = v;
        }
        if let Some(v) = self.fn_detect {
            c.detect = v;
        }
        if let Some(v) = self.fn_oracle_filter {
            c.oracle_filter = v;
        }
        if let Some(v) = self.fn_oracle_precision {
            c.oracle_precision = v;
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
struct TrainArgs {
    /// Dataset directory written by fnc-ingest [default: out].
    #[arg(long)]
    shards: Option<PathBuf>,
    /// Run directory [default: runs/<time>-<arch>-<strategy>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// A config TOML (as written to a run directory, or a preset such as
    /// configs/fnc-paper.toml); flags override it; unknown keys are an error.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue the run in --out from its latest checkpoint (its config.toml applies).
    #[arg(long)]
    resume: bool,
    /// Encoder: small, resnet18, resnet50 [default: resnet50].
    #[arg(long, value_enum)]
    arch: Option<Arch>,
    /// Main view side in pixels [default: 224].
    #[arg(long)]
    image_size: Option<u32>,
    /// Support views per image [default: 8].
    #[arg(long)]
    support: Option<usize>,
    /// Support view side in pixels [default: --image-size, as the reference's
    /// support views have the main views' size].
    #[arg(long)]
    support_size: Option<u32>,
    /// Images per step [default: 256].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Training length in epochs [default: 100].
    #[arg(long)]
    epochs: Option<f64>,
    /// Training length in steps (overrides --epochs).
    #[arg(long)]
    steps: Option<u64>,
    /// Base learning rate, scaled by --lr-scaling [default: 0.1].
    #[arg(long)]
    lr: Option<f64>,
    /// sqrt (lr * sqrt(batch)), linear (lr * batch / 256) or none [default: sqrt].
    #[arg(long, value_enum)]
    lr_scaling: Option<LrScaling>,
    /// lars, sgd or adamw [default: lars].
    #[arg(long, value_enum)]
    optimizer: Option<OptimizerKind>,
    /// Weight decay (not on biases and BatchNorm) [default: 1e-4].
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Warm-up length in epochs [default: 10].
    #[arg(long)]
    warmup_epochs: Option<f64>,
    /// Augmentation worker threads, 0 = one per core [default: 0].
    #[arg(long)]
    workers: Option<usize>,
    /// auto (CUDA when available), cpu, cuda or cuda:N [default: auto].
    #[arg(long)]
    device: Option<String>,
    /// auto (bf16 on CUDA, fp32 on the CPU), fp32 or bf16 (convolutions and
    /// linear layers in bfloat16, float32 master weights) [default: auto].
    #[arg(long, value_enum)]
    precision: Option<Precision>,
    /// Layout of images, activations and convolution weights: channels-last
    /// or contiguous (NCHW) [default: channels-last].
    #[arg(long, value_enum)]
    memory_format: Option<MemoryFormat>,
    /// Weight initialisation: torchvision, or reference (the official code's:
    /// variance-scaling convolutions, zero last BatchNorm scale per residual
    /// block, head weights N(0, 0.01), no shift on the head's last
    /// BatchNorm) [default: torchvision].
    #[arg(long, value_enum)]
    init: Option<InitScheme>,
    /// Semantics of the view ops: torchvision (RandomResizedCrop, antialiased
    /// bilinear resize, contrast and saturation as blends with grey, reflect-padded
    /// blur), or reference (the official TF code's: sample_distorted_bounding_box
    /// crops, bicubic resize, per-channel contrast, HSV saturation, zero-padded
    /// blur, float throughout) [default: torchvision].
    #[arg(long, value_name = "IMPL")]
    augment_impl: Option<fnc_augment::AugmentImpl>,
    /// RandAugment after the colour distortion, as LAYERS,MAGNITUDE (the
    /// reference's use_randaugment is 2,7; magnitude 0..=10), or off; greyscale
    /// then follows it as in the reference [default: off].
    #[arg(long, value_name = "L,M")]
    randaugment: Option<String>,
    /// Seed of the model, the sampler and every augmentation [default: 0].
    #[arg(long)]
    seed: Option<u64>,
    /// Checkpoint every N steps (and at the end) [default: 500].
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Weighted k-NN top-1 on the val split every N steps, logged in
    /// metrics.jsonl; 0 = off [default: 0].
    #[arg(long)]
    knn_every: Option<u64>,
    /// Memory variant: a FIFO bank of N x batch momentum-encoder embeddings
    /// serves detection and negatives (the reference uses 16); N must be at
    /// least the number of anchor views; 0 = off, in-batch negatives
    /// [default: 0].
    #[arg(long, value_name = "N")]
    memory: Option<usize>,
    /// EMA decay of the momentum encoder of --memory [default: 0.999].
    #[arg(long)]
    ema_decay: Option<f64>,
    /// Records that fail to decode (corrupt data, a damaged shard) which are
    /// replaced by another record, counted in metrics.jsonl and named once each,
    /// before the run stops; 0 = stop at the first [default: 0].
    #[arg(long, value_name = "N")]
    max_bad_records: Option<u64>,
    #[command(flatten)]
    loss: LossArgs,
    /// Data-parallel training on this machine: spawn N ranks of this command
    /// (Gloo on the CPU, NCCL on GPUs, rank r on cuda:r); --batch-size is the
    /// global batch. Multi-machine runs use a launcher instead (torchrun
    /// --no-python, or srun): the RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/
    /// MASTER_PORT environment (or Slurm's) makes a process one rank
    /// [default: 1].
    #[arg(long, value_name = "N")]
    nproc_per_node: Option<usize>,
    /// Rendezvous port of --nproc-per-node [default: a free port].
    #[arg(long)]
    master_port: Option<u16>,
    /// Collective library: auto (NCCL on CUDA, Gloo on the CPU), gloo or nccl
    /// [default: auto].
    #[arg(long, value_enum, default_value = "auto")]
    dist_backend: fnc_train::dist::Backend,
    /// Seconds a collective or the rendezvous may wait for the other ranks
    /// before the run stops with an error naming this rank [default: 300].
    #[arg(long, default_value_t = 300.0, value_name = "SECS")]
    dist_timeout: f64,
    /// With several ranks, BatchNorm statistics over the global batch (the
    /// reference's global_bn); false = each rank's own [default: true].
    #[arg(long, value_name = "BOOL")]
    sync_bn: Option<bool>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Print the resolved config (defaults, then --config, then flags) as
    /// TOML, the form --config reads, and exit without training.
    #[arg(long)]
    print_config: bool,
}

macro_rules! set {
    ($cfg:ident, $args:ident, $($f:ident),*) => { $( if let Some(v) = $args.$f.clone() { $cfg.$f = v; } )* };
}

fn resolve(a: &TrainArgs) -> Result<(TrainConfig, PathBuf)> {
    let mut cfg = TrainConfig::default();
    let from_run = a
        .resume
        .then(|| {
            a.out
                .as_ref()
                .map(|o| fnc_train::RunDir::new(o).config_path())
        })
        .flatten();
    if let Some(path) = a.config.as_ref().or(from_run.as_ref()) {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --config {}", path.display()))?;
        cfg = toml::from_str(&text).with_context(|| format!("--config {}", path.display()))?;
    }
    set!(
        cfg,
        a,
        shards,
        arch,
        image_size,
        support,
        batch_size,
        epochs,
        steps,
        lr,
        lr_scaling,
        optimizer,
        weight_decay,
        warmup_epochs,
        workers,
        device,
        precision,
        memory_format,
        init,
        augment_impl,
        sync_bn,
        seed,
        checkpoint_every,
        knn_every,
        memory,
        ema_decay,
        max_bad_records
    );
    if let Some(v) = a.support_size {
        cfg.support_size = Some(v);
    }
    if let Some(v) = &a.randaugment {
        cfg.randaugment = fnc_augment::parse_randaugment(v)
            .map_err(|e| anyhow::anyhow!("--randaugment {v}: {e}"))?;
    }
    a.loss.apply(&mut cfg.loss)?;
    cfg.validate()?;
    if a.resume && a.out.is_none() {
        anyhow::bail!("--resume needs --out RUN_DIR (the run to continue)");
    }
    let out = a.out.clone().unwrap_or_else(|| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let strategy = serde_json::to_value(cfg.loss.strategy)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        PathBuf::from("runs").join(format!(
            "{}-{}-{}",
            utc_stamp(secs),
            cfg.arch.name(),
            strategy
        ))
    });
    Ok((cfg, out))
}

/// `YYYYmmdd-HHMMSS` in UTC (civil-from-days).
fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Loss {
            embeddings,
            views,
            labels,
            device,
            loss,
            json: _,
        }) => {
            let mut cfg = LossConfig::default();
            loss.apply(&mut cfg)?;
            let device = fnc_train::parse_device(&device)?;
            let z = tch::Tensor::read_npy(&embeddings)
                .with_context(|| format!("--embeddings {}", embeddings.display()))?;
            let z = z.to_kind(tch::Kind::Double).to_device(device);
            let labels = match &labels {
                Some(p) => Some(
                    tch::Tensor::read_npy(p)
                        .with_context(|| format!("--labels {}", p.display()))?
                        .to_kind(tch::Kind::Int64)
                        .to_device(device),
                ),
                None => None,
            };
            let out = fnc_train::fnc_loss(&z, views, &cfg, labels.as_ref())?;
            let r = serde_json::json!({
                "loss": out.loss.double_value(&[]),
                "mean_fn": out.mean_fn,
                "fn_total": out.mean_fn * (z.size()[0] / views) as f64,
                "fn_precision": out.fn_precision,
                "fn_chance": out.fn_chance,
                "fn_recall": out.fn_recall,
                "config": cfg,
            });
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        Some(Command::Bench {
            train,
            warmup,
            timed,
        }) => {
            let (cfg, _) = resolve(&train)?;
            let (t, device) = fnc_train::bench_steps(&cfg, warmup, timed)?;
            let r = serde_json::json!({
                "step_s": t.step_s,
                "forward_s": t.forward_s,
                "backward_s": t.backward_s,
                "optimizer_s": t.optimizer_s,
                "optimizer": cfg.optimizer,
                "precision": cfg.precision,
                "memory_format": cfg.memory_format,
                "memory": cfg.memory,
                "images_per_s": cfg.batch_size as f64 / t.step_s,
                "device": device,
                "arch": cfg.arch.name(),
                "batch_size": cfg.batch_size,
                "views": cfg.views(),
                "image_size": cfg.image_size,
                "support_size": cfg.support_side(),
                "torch_threads": tch::get_num_threads(),
            });
            println!("{r}");
        }
        Some(Command::Export { run, out }) => {
            let out = out.unwrap_or_else(|| run.join("encoder.safetensors"));
            let n = fnc_train::export_encoder(&run, &out)
                .with_context(|| format!("exporting --run {}", run.display()))?;
            println!("wrote {} tensors to {}", n, out.display());
        }
        None if cli.train.print_config => {
            let (cfg, _) = resolve(&cli.train)?;
            print!("{}", toml::to_string_pretty(&cfg)?);
        }
        None => {
            let (cfg, out) = resolve(&cli.train)?;
            let launch = fnc_train::dist::Launch::from_env()?;
            if let Some(n) = cli.train.nproc_per_node.filter(|&n| n > 1) {
                if launch.is_some() {
                    anyhow::bail!(
                        "--nproc-per-node {n}: this process is already one rank of a \
                         launched run (RANK/WORLD_SIZE or Slurm's variables are set)"
                    );
                }
                if !cfg.batch_size.is_multiple_of(n) {
                    anyhow::bail!(
                        "invalid option --batch-size: {} is the global batch and must divide \
                         among the {n} ranks of --nproc-per-node",
                        cfg.batch_size
                    );
                }
                return spawn_ranks(n, &out, cli.train.master_port);
            }
            if !(cli.train.dist_timeout > 0.0 && cli.train.dist_timeout.is_finite()) {
                anyhow::bail!(
                    "--dist-timeout {} is not a positive number",
                    cli.train.dist_timeout
                );
            }
            let group = match &launch {
                Some(l) => {
                    let device = fnc_train::parse_device(&cfg.device)?;
                    let g = fnc_train::dist::ProcessGroup::new(
                        l,
                        cli.train.dist_backend,
                        device,
                        std::time::Duration::from_secs_f64(cli.train.dist_timeout),
                    )?;
                    let g = fnc_train::dist::install(g, cfg.sync_bn);
                    g.start_heartbeat();
                    follow_launcher(g.rank);
                    Some(g)
                }
                None => None,
            };
            let rank = group.map(|g| g.rank).unwrap_or(0);
            let bar = if rank == 0 && std::io::stderr().is_terminal() {
                indicatif::ProgressBar::new(0)
            } else {
                indicatif::ProgressBar::hidden()
            };
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let observer = Progress { bar: &bar };
            let s = fnc_train::train_parallel(&cfg, &out, cli.train.resume, &observer, group)
                .with_context(|| format!("training into {}", out.display()))?;
            bar.finish_and_clear();
            if rank != 0 {
                // Rank 0 reports for the run.
            } else if cli.train.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!(
                    "{} steps on {}: final loss {:.4}, data wait {:.1}%; checkpoint {}",
                    s.steps,
                    s.device,
                    s.final_loss,
                    s.mean_data_wait * 100.0,
                    s.checkpoint
                );
                if !s.bad_records.is_empty() {
                    println!(
                        "{} bad records were replaced (--max-bad-records {})",
                        s.bad_records.len(),
                        cfg.max_bad_records
                    );
                }
            }
        }
    }
    Ok(())
}

/// Set in the environment of the ranks `--nproc-per-node` starts.
const LAUNCHED: &str = "FNC_TRAIN_LAUNCHED";

/// A rank started by `--nproc-per-node` stops when its launcher is gone (killed
/// by a scheduler, say), rather than training on without it.
fn follow_launcher(rank: usize) {
    if std::env::var_os(LAUNCHED).is_none() {
        return;
    }
    let parent = std::os::unix::process::parent_id();
    let _ = std::thread::Builder::new()
        .name("fnc-launcher-watch".into())
        .spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_millis(500));
            if std::os::unix::process::parent_id() != parent {
                eprintln!("Error: rank {rank}: the --nproc-per-node launcher is gone; stopping");
                std::process::exit(1);
            }
        });
}

/// `--nproc-per-node N`: runs this command as N local ranks (the same flags,
/// the resolved run directory, and torchrun's environment), waits for them, and
/// stops the others as soon as one fails, naming it.
fn spawn_ranks(n: usize, out: &std::path::Path, port: Option<u16>) -> Result<()> {
    let exe = std::env::current_exe().context("finding this executable to spawn the ranks")?;
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    let mut skip = false;
    for a in std::env::args_os().skip(1) {
        if skip {
            skip = false;
            continue;
        }
        match a.to_str() {
            Some("--nproc-per-node") => skip = true,
            Some(s) if s.starts_with("--nproc-per-node=") => {}
            _ => args.push(a),
        }
    }
    // Every rank must agree on the run directory (the default one has a time).
    args.push("--out".into());
    args.push(out.as_os_str().to_owned());
    let port = match port {
        Some(p) => p,
        None => std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .context("finding a free port for the ranks' rendezvous (--master-port)")?,
    };
    let mut ranks = Vec::with_capacity(n);
    for r in 0..n {
        let mut c = std::process::Command::new(&exe);
        c.args(&args)
            .env("RANK", r.to_string())
            .env("LOCAL_RANK", r.to_string())
            .env("WORLD_SIZE", n.to_string())
            .env("LOCAL_WORLD_SIZE", n.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env(LAUNCHED, "1");
        if r != 0 {
            c.stdout(std::process::Stdio::null());
        }
        let child = c
            .spawn()
            .with_context(|| format!("starting rank {r} of --nproc-per-node {n}"))?;
        ranks.push(child);
    }
    loop {
        let mut running = 0;
        for r in 0..n {
            match ranks[r].try_wait().context("waiting for the ranks")? {
                Some(status) if !status.success() => {
                    for (k, other) in ranks.iter_mut().enumerate() {
                        if k != r {
                            let _ = other.kill();
                            let _ = other.wait();
                        }
                    }
                    anyhow::bail!(
                        "rank {r} of {n} exited with {status}; the other ranks were stopped"
                    );
                }
                Some(_) => {}
                None => running += 1,
            }
        }
        if running == 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Draws the progress bar and reports bad records on stderr.
struct Progress<'a> {
    bar: &'a indicatif::ProgressBar,
}

impl fnc_train::Observer for Progress<'_> {
    fn step(&self, m: &fnc_train::StepMetrics, total: u64) {
        self.bar.set_length(total);
        self.bar.set_position(m.step);
        self.bar.set_message(format!(
            "loss {:.4} {:.0} img/s wait {:.0}% |F| {:.2}",
            m.loss,
            m.images_per_s,
            m.data_wait * 100.0,
            m.mean_fn
        ));
    }

    fn bad_record(&self, err: &fnc_augment::AugmentError) {
        self.bar
            .suspend(|| eprintln!("warning: bad record replaced: {err}"));
    }
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
