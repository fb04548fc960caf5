//! `fnc-train`: pretrain an encoder with the FNC loss; compute the loss of saved
//! embeddings; export the encoder.

mod cli;
mod launcher;
mod plan;
mod resolve;

use std::io::IsTerminal;

use anyhow::{Context, Result};
use clap::Parser;
use fnc_train::LossConfig;

use cli::{Cli, Command};
use resolve::{resolve, unused_by_bench, Resolved};

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
            loss_command(&embeddings, views, labels.as_deref(), &device, &cfg)?;
        }
        Some(Command::Bench {
            train,
            warmup,
            timed,
        }) => {
            if let Some(flag) = unused_by_bench(&train) {
                anyhow::bail!(
                    "invalid option {flag}: fnc-train bench times steps on random views \
                     and does not use it"
                );
            }
            if timed == 0 {
                anyhow::bail!("invalid option --timed: 0; time 1 step or more");
            }
            let cfg = resolve(&train, false)?.cfg;
            let (t, device) = fnc_train::bench_steps(&cfg, warmup, timed).with_context(|| {
                format!(
                    "benchmarking {} at --batch-size {}",
                    cfg.arch.name(),
                    cfg.batch_size
                )
            })?;
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
        Some(Command::Plan {
            train,
            nproc,
            device_memory,
        }) => plan::run(&train, nproc, device_memory.as_deref())?,
        Some(Command::Export { run, out }) => {
            let out = out.unwrap_or_else(|| run.join("encoder.safetensors"));
            let n = fnc_train::export_encoder(&run, &out)
                .with_context(|| format!("exporting --run {}", run.display()))?;
            println!("wrote {} tensors to {}", n, out.display());
        }
        None if cli.train.print_config => {
            let cfg = resolve(&cli.train, false)?.cfg;
            print!("{}", toml::to_string_pretty(&cfg)?);
        }
        None => train_command(&cli.train)?,
    }
    Ok(())
}

/// `fnc-train loss`: the loss of saved embeddings and the norm of its
/// gradient, computed in blocks of `cfg.block` anchor rows (or as many as fit
/// in [`fnc_train::LOSS_BUDGET`]), printed as JSON.
fn loss_command(
    embeddings: &std::path::Path,
    views: i64,
    labels: Option<&std::path::Path>,
    device: &str,
    cfg: &LossConfig,
) -> Result<()> {
    if views < 2 {
        anyhow::bail!("invalid option --views: {views}; contrast needs 2 views or more");
    }
    cfg.validate(views)?;
    let device = fnc_train::parse_device(device)?;
    let z = tch::Tensor::read_npy(embeddings)
        .with_context(|| format!("--embeddings {}", embeddings.display()))?;
    let z = z.to_kind(tch::Kind::Double).to_device(device);
    let labels = match labels {
        Some(p) => Some(
            tch::Tensor::read_npy(p)
                .with_context(|| format!("--labels {}", p.display()))?
                .to_kind(tch::Kind::Int64)
                .to_device(device),
        ),
        None => None,
    };
    let images = z.size().first().copied().unwrap_or(0) / views;
    // Every anchor row is a key; the estimate is float32's, these
    // embeddings are float64.
    let keys = cfg.anchor_views(views).saturating_mul(images);
    let block = cfg.block_rows(views, images, keys, fnc_train::LOSS_BUDGET / 2);
    let (out, grad) = fnc_train::fnc_loss_grad(&z, views, cfg, labels.as_ref(), None, block)?;
    let r = serde_json::json!({
        "loss": out.loss.double_value(&[]),
        "grad_norm": grad.f_norm()?.double_value(&[]),
        "loss_block": block,
        "mean_fn": out.mean_fn,
        "fn_total": out.mean_fn * images as f64,
        "fn_precision": out.fn_precision,
        "fn_chance": out.fn_chance,
        "fn_recall": out.fn_recall,
        "config": cfg,
    });
    println!("{}", serde_json::to_string_pretty(&r)?);
    Ok(())
}

/// Trains as the command line says: one process, the launcher of
/// `--nproc-per-node` ranks, or one rank of a launched run.
fn train_command(args: &cli::TrainArgs) -> Result<()> {
    let launch = fnc_train::dist::Launch::from_env()?;
    let r = resolve(args, launch.as_ref().is_some_and(|l| l.rank > 0))?;
    if r.nproc > 1 {
        if launch.is_some() {
            anyhow::bail!(
                "invalid option --nproc-per-node {}: this process is already one rank of a \
                 launched run (RANK/WORLD_SIZE or Slurm's variables are set)",
                r.nproc
            );
        }
        return launcher::spawn_ranks(r.nproc, &r.out, r.master_port);
    }
    let (group, cfg) = match &launch {
        Some(l) => {
            let (g, cfg) = join_run(l, &r)?;
            (Some(g), cfg)
        }
        None => (None, r.cfg.clone()),
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
    let observer = Progress {
        bar: &bar,
        resuming: r.start != fnc_train::Start::New,
    };
    let trained = fnc_train::train_parallel(&cfg, &r.out, &r.start, &observer, group)
        .with_context(|| format!("training into {}", r.out.display()));
    if let Some(g) = group {
        // Every rank is past its last collective (or has failed).
        let _ = g.shutdown();
    }
    let s = trained?;
    bar.finish_and_clear();
    if rank != 0 {
        // Rank 0 reports for the run.
    } else if args.json {
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
    Ok(())
}

/// Joins the process group of a launched run on this rank's device, agrees
/// on the config with rank 0 (whose config is the run's), and installs the
/// group for synchronised BatchNorm as the agreed config says.
fn join_run(
    l: &fnc_train::dist::Launch,
    r: &Resolved,
) -> Result<(
    &'static fnc_train::dist::ProcessGroup,
    fnc_train::TrainConfig,
)> {
    use fnc_train::dist::{Backend, ProcessGroup};
    let visible = if tch::Cuda::is_available() {
        tch::Cuda::device_count() as usize
    } else {
        0
    };
    let nccl = match r.backend {
        Backend::Auto => r.cfg.device != "cpu" && visible > 0 && ProcessGroup::has_nccl(),
        Backend::Gloo => false,
        Backend::Nccl => true,
    };
    let device = fnc_train::rank_device(
        &r.cfg.device,
        l.world,
        l.local_rank,
        l.local_world,
        visible,
        nccl,
    )?;
    if device == tch::Device::Cpu
        && l.local_world > 1
        && std::env::var_os("OMP_NUM_THREADS").is_none()
    {
        // The node's cores are shared among its ranks (as torchrun's
        // OMP_NUM_THREADS does, which holds if set).
        tch::set_num_threads(fnc_train::cores_per_rank(l.local_world) as i32);
    }
    let g = ProcessGroup::new(l, r.backend, device, r.dist_timeout)?;
    let cfg = match fnc_train::agree_config(&g, &r.cfg, r.partial) {
        Ok(c) => c,
        Err(e) => {
            let _ = g.shutdown();
            return Err(e.into());
        }
    };
    let g = fnc_train::dist::install(g, cfg.sync_bn);
    g.start_heartbeat();
    launcher::follow_launcher(g.rank);
    Ok((g, cfg))
}

/// Draws the progress bar and reports bad records on stderr.
struct Progress<'a> {
    bar: &'a indicatif::ProgressBar,
    /// The command asked to resume.
    resuming: bool,
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

    fn warning(&self, text: &str) {
        self.bar.suspend(|| eprintln!("warning: {text}"));
    }

    fn started(&self, step: u64, resumed: bool) {
        let text = match (step, resumed, self.resuming) {
            (_, true, _) => format!("resuming from the checkpoint of step {step}"),
            (_, false, true) => "no checkpoint was written yet: starting the run over".into(),
            _ => return,
        };
        self.bar.suspend(|| eprintln!("{text}"));
    }
}

/// Keeps the panic of a failed allocation in a guarded step off stderr: the
/// trainer catches it and stops with an error that says what to do, so
/// libtorch's message and C++ backtrace would only bury it. Other panics,
/// and allocation failures outside a step, print as before.
fn quiet_allocation_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = fnc_train::panic_text(info.payload());
        if !(fnc_train::is_guarded() && text.is_some_and(fnc_train::is_allocation_failure)) {
            previous(info);
        }
    }));
}

fn main() -> std::process::ExitCode {
    quiet_allocation_panics();
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
