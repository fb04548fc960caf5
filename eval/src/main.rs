//! `fnc-eval`: linear, k-NN and fine-tuning evaluation; run reports.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use fnc_eval::{Accuracy, FinetuneConfig, LinearConfig, ReferenceLinearConfig, Source};

/// Linear evaluation protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Protocol {
    Fast,
    Reference,
}

/// Evaluate a trained encoder (the latest run under runs/ unless told otherwise).
#[derive(Debug, Parser)]
#[command(name = "fnc-eval", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Which {
    /// Run directory [default: the newest run under runs/ with a checkpoint].
    #[arg(long)]
    run: Option<PathBuf>,
    /// A checkpoint directory (runs/NAME/checkpoints/step-N) instead of a run's latest.
    #[arg(long, conflicts_with = "run")]
    checkpoint: Option<PathBuf>,
    /// Dataset directory [default: the shards the run was trained on].
    #[arg(long)]
    shards: Option<PathBuf>,
    /// Also evaluate a randomly initialised encoder of the same architecture.
    #[arg(long)]
    baseline: bool,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Seed (classifier init and order; the baseline's random encoder)
    /// [default: 0]. k-NN draws nothing at random, so knn takes it only with
    /// --baseline.
    #[arg(long, allow_negative_numbers = true)]
    seed: Option<u64>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Linear probe on frozen features (centre crop 0.875; the whole image at
    /// 32 px and below, as the reference; no augmentation): top-1/top-5 on val
    /// (or test when there is no val).
    Linear {
        #[command(flatten)]
        which: Which,
        /// fast: a classifier on cached centre-crop features; reference:
        /// SimCLR's protocol (frozen encoder with BatchNorm in inference mode,
        /// random crop area 0.2-1 + flip, Nesterov SGD, zero-initialised
        /// classifier, batch 1024 or the split's size) [default: fast].
        #[arg(long, value_enum, default_value = "fast")]
        protocol: Protocol,
        /// Epochs of the linear classifier, 1..=10000 [default: 100 fast, 90 reference].
        #[arg(long, allow_negative_numbers = true)]
        epochs: Option<usize>,
        /// Peak learning rate in (0, 100], cosine-decayed [default: 0.1 fast
        /// (SGD, momentum 0.9); 0.005 x sqrt(batch) reference].
        #[arg(long, allow_negative_numbers = true)]
        lr: Option<f64>,
        /// Images (fast: feature vectors) per step, 1..=1048576 [default: 256
        /// fast, 1024 reference].
        #[arg(long, allow_negative_numbers = true)]
        batch_size: Option<usize>,
        /// The fast probe's weight decay: a value in [0, 1], or `auto`: the
        /// best of 0, 1e-6, 1e-5, 1e-4, 1e-3 by top-1 on a seeded 20% of train
        /// held out, then refitted on all of train; the choice is in the
        /// results [default: auto].
        #[arg(long, value_name = "auto|WD")]
        weight_decay: Option<String>,
    },
    /// Weighted k-NN (k = 20 and 200, temperature 0.07, as the training
    /// monitor) top-1 on frozen features.
    Knn {
        #[command(flatten)]
        which: Which,
    },
    /// Fine-tune the whole network on a labelled fraction, then top-1/top-5 on val.
    Finetune {
        #[command(flatten)]
        which: Which,
        /// fast: from the encoder's features, SGD with Nesterov momentum, crops
        /// of area 0.08-1, batch 64, 30 epochs; reference: the official
        /// semi-supervised protocol (from the projection head's first layer,
        /// LARS at 0.005 x sqrt(batch), no weight decay, crops of area 0.2-1,
        /// zero-initialised classifier, batch 1024 or the subset's size, 60
        /// epochs up to 5% of the labels and 30 above) [default: fast].
        #[arg(long, value_enum, default_value = "fast")]
        protocol: Protocol,
        /// Labelled fraction of train in (0, 1], balanced per class and seeded
        /// (e.g. 0.01, 0.1).
        #[arg(
            long,
            default_value_t = 0.1,
            conflicts_with = "subset",
            allow_negative_numbers = true
        )]
        fraction: f64,
        /// A file of image names to label instead (like the reference's
        /// imagenet_subsets/1percent.txt: one file name per line).
        #[arg(long)]
        subset: Option<PathBuf>,
        /// Projection-head layers kept under the classifier and fine-tuned: 0 =
        /// the encoder's features, 1 = the head's first layer (the reference's
        /// ft_proj_selector) [default: 0 fast, 1 reference].
        #[arg(long, allow_negative_numbers = true, value_name = "0|1")]
        from_head_layer: Option<usize>,
        /// Epochs over the labelled subset, 1..=10000 [default: 30 fast;
        /// reference 60 up to 5% of the labels, else 30].
        #[arg(long, allow_negative_numbers = true)]
        epochs: Option<usize>,
        /// Images per step, 1..=1048576 [default: 64 fast, 1024 reference].
        #[arg(long, allow_negative_numbers = true)]
        batch_size: Option<usize>,
        /// Peak learning rate in (0, 100], cosine-decayed [default: 0.05 fast;
        /// 0.005 x sqrt(batch) reference].
        #[arg(long, allow_negative_numbers = true)]
        lr: Option<f64>,
    },
    /// Several runs side by side: the flags that differ, final linear and k-NN
    /// accuracy as mean ± std over runs that differ only in --seed, FN
    /// precision/recall, and a PNG of each group's curves with their spread.
    Compare {
        /// Run directories.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Output PNG.
        #[arg(long, default_value = "compare.png")]
        out: PathBuf,
        /// Epochs of each run's linear probe, 1..=10000.
        #[arg(long, allow_negative_numbers = true, default_value_t = 100)]
        epochs: usize,
        /// auto, cpu, cuda or cuda:N.
        #[arg(long, default_value = "auto")]
        device: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Also write the JSON to this file (with the table printed), so one
        /// evaluation gives both.
        #[arg(long, value_name = "FILE")]
        json_out: Option<PathBuf>,
        /// Each arm against a baseline arm, runs paired by seed: per-seed
        /// differences, mean ± SE, a paired t-test over the seeds, a paired
        /// bootstrap over the evaluation images and McNemar's test per pair.
        #[arg(long)]
        paired: bool,
        /// The baseline arm of --paired: a group's label or one of its
        /// `flag=value`s [default: the first run's arm].
        #[arg(long, value_name = "ARM", requires = "paired")]
        baseline: Option<String>,
    },
    /// A PNG of loss, lr, k-NN accuracy, mean |F_i|, FN precision and recall over training.
    Report {
        /// Run directory.
        #[arg(long)]
        run: PathBuf,
        /// Output PNG [default: RUN/report.png].
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// The most epochs any command trains for.
const MAX_EPOCHS: usize = 10_000;
/// The most images (or feature vectors) per step.
const MAX_BATCH: usize = 1 << 20;
/// The largest peak learning rate.
const MAX_LR: f64 = 100.0;

/// An invalid flag value, named as the user types it.
fn bad(flag: &str, detail: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("invalid option {flag}: {detail}")
}

fn check_epochs(epochs: Option<usize>) -> Result<()> {
    match epochs {
        Some(e) if !(1..=MAX_EPOCHS).contains(&e) => {
            Err(bad("--epochs", format!("{e} is not in 1..={MAX_EPOCHS}")))
        }
        _ => Ok(()),
    }
}

fn check_batch(batch: Option<usize>) -> Result<()> {
    match batch {
        Some(b) if !(1..=MAX_BATCH).contains(&b) => Err(bad(
            "--batch-size",
            format!("{b} is not in 1..={MAX_BATCH}"),
        )),
        _ => Ok(()),
    }
}

/// `--weight-decay`: `None` for auto, or the value.
fn parse_weight_decay(text: &str) -> Result<Option<f64>> {
    if text == "auto" {
        return Ok(None);
    }
    match text.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(Some(v)),
        _ => Err(bad(
            "--weight-decay",
            format!("{text:?} is neither auto nor a number in [0, 1]"),
        )),
    }
}

fn check_lr(lr: Option<f64>) -> Result<()> {
    match lr {
        // NaN fails the comparison too.
        Some(lr) if !(lr > 0.0 && lr <= MAX_LR) => {
            Err(bad("--lr", format!("{lr} is not in (0, {MAX_LR}]")))
        }
        _ => Ok(()),
    }
}

/// The one judge of the command line: every numeric flag against its
/// documented range, and no flag the chosen command or mode would not use,
/// before any run is resolved or anything is written.
fn validate(command: &Command) -> Result<()> {
    match command {
        Command::Linear {
            epochs,
            lr,
            batch_size,
            weight_decay,
            protocol,
            ..
        } => {
            check_epochs(*epochs)?;
            check_lr(*lr)?;
            check_batch(*batch_size)?;
            if let Some(w) = weight_decay {
                if matches!(protocol, Protocol::Reference) {
                    return Err(bad(
                        "--weight-decay",
                        "is the fast probe's; the reference protocol has its own (none)",
                    ));
                }
                parse_weight_decay(w)?;
            }
        }
        Command::Knn { which } => {
            if let (Some(seed), false) = (which.seed, which.baseline) {
                return Err(bad(
                    "--seed",
                    format!(
                        "{seed}: knn draws nothing at random; the seed only initialises the \
                         --baseline encoder, so give --baseline or drop --seed"
                    ),
                ));
            }
        }
        Command::Finetune {
            fraction,
            subset,
            from_head_layer,
            epochs,
            batch_size,
            lr,
            ..
        } => {
            if subset.is_none() && !(*fraction > 0.0 && *fraction <= 1.0) {
                return Err(bad("--fraction", format!("{fraction} is not in (0, 1]")));
            }
            if let Some(v) = from_head_layer.filter(|&v| v > 1) {
                return Err(bad("--from-head-layer", format!("{v} is not 0 or 1")));
            }
            check_epochs(*epochs)?;
            check_batch(*batch_size)?;
            check_lr(*lr)?;
        }
        Command::Compare { epochs, .. } => check_epochs(Some(*epochs))?,
        Command::Report { .. } => {}
    }
    Ok(())
}

fn source(w: &Which) -> Result<(Source, PathBuf, tch::Device)> {
    let src = fnc_eval::resolve(w.run.as_deref(), w.checkpoint.as_deref())?;
    let shards = w
        .shards
        .clone()
        .unwrap_or_else(|| src.config.shards.clone());
    let device = fnc_train::parse_device(&w.device)?;
    Ok((src, shards, device))
}

fn table(rows: &[(&str, Accuracy)]) {
    println!("{:<28} {:>8} {:>8}", "encoder", "top-1 %", "top-5 %");
    for (name, a) in rows {
        println!("{:<28} {:>8.2} {:>8.2}", name, a.top1, a.top5);
    }
}

fn output(
    w: &Which,
    label: &str,
    main: Accuracy,
    base: Option<Accuracy>,
    extra: serde_json::Value,
) -> Result<()> {
    if w.json {
        let mut j = serde_json::json!({ "top1": main.top1, "top5": main.top5 });
        if let Some(b) = base {
            j["baseline"] = serde_json::json!({ "top1": b.top1, "top5": b.top5 });
        }
        if let (Some(o), Some(e)) = (j.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        println!("{}", serde_json::to_string_pretty(&j)?);
    } else {
        let mut rows = vec![(label, main)];
        if let Some(b) = base {
            rows.push(("random init (baseline)", b));
        }
        table(&rows);
    }
    Ok(())
}

/// Adds an evaluation's results to the run's TensorBoard events (at the
/// checkpoint's step) when the run writes events; a run directory that cannot
/// be written to is told, not an error: the results are printed anyway.
fn to_events(src: &Source, kind: &str, values: &[(String, f64)], about: &serde_json::Value) {
    if !src.config.tensorboard {
        return;
    }
    let step = src.checkpoint.state().step;
    let dir = src.run.path();
    let write = || -> Result<(), fnc_train::TrainError> {
        let mut ev = fnc_train::events::Events::open(dir, None)?;
        for (name, v) in values {
            ev.scalar(step, &format!("eval/{kind}/{name}"), *v)?;
        }
        let text = serde_json::to_string_pretty(about).unwrap_or_default();
        ev.text(
            step,
            &format!("eval/{kind}/about"),
            &format!("```json\n{text}\n```"),
        )?;
        ev.flush()
    };
    if let Err(e) = write() {
        eprintln!(
            "note: the results are not in {}'s TensorBoard events: {e}",
            dir.display()
        );
    }
}

/// The scalars of a top-1/top-5 result (and its random-init baseline).
fn accuracy_values(main: &Accuracy, base: Option<&Accuracy>) -> Vec<(String, f64)> {
    let mut v = vec![
        ("top1".to_string(), main.top1),
        ("top5".to_string(), main.top5),
    ];
    if let Some(b) = base {
        v.push(("baseline_top1".into(), b.top1));
        v.push(("baseline_top5".into(), b.top5));
    }
    v
}

fn pm(s: &fnc_eval::Spread) -> String {
    format!("{:.2} ± {:.2}", s.mean, s.std)
}

fn pct(s: &Option<fnc_eval::Spread>) -> String {
    s.as_ref()
        .map(|s| format!("{:.1} ± {:.1}", 100.0 * s.mean, 100.0 * s.std))
        .unwrap_or_else(|| "-".into())
}

/// The paired analysis as a markdown table.
fn print_paired(p: &fnc_eval::Paired) {
    println!("\npaired by seed against {}:", p.baseline);
    println!("| arm | metric | pairs | mean diff (pp) | SE | t | p | bootstrap 95% CI | McNemar p per pair |");
    println!("|---|---|---:|---:|---:|---:|---:|---|---|");
    for d in &p.diffs {
        let num = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
        let ci = d
            .bootstrap_ci95
            .map_or("-".into(), |(lo, hi)| format!("[{lo:+.2}, {hi:+.2}]"));
        let mc: Vec<String> = d
            .mcnemar
            .iter()
            .map(|(seed, b, a, p)| format!("s{seed}: {b}/{a} p={p:.3}"))
            .collect();
        println!(
            "| {} | {} | {} | {:+.2} | {:.2} | {} | {} | {} | {} |",
            d.arm,
            d.metric,
            d.diffs.len(),
            d.mean,
            d.se,
            num(d.t),
            num(d.p),
            ci,
            if mc.is_empty() {
                "-".into()
            } else {
                mc.join(", ")
            }
        );
    }
}

/// The comparison as a markdown table.
fn print_comparison(c: &fnc_eval::Comparison) {
    println!(
        "differing flags: {}",
        if c.differing.is_empty() {
            "none".to_string()
        } else {
            c.differing.join(", ")
        }
    );
    println!(
        "| group | runs (seeds) | linear top-1 % | k-NN top-1 % | FN precision % | FN recall % |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for g in &c.groups {
        let seeds: Vec<String> = g.runs.iter().map(|r| r.seed.to_string()).collect();
        println!(
            "| {} | {} ({}) | {} | {} | {} | {} |",
            g.label(),
            g.runs.len(),
            seeds.join(", "),
            pm(&g.linear_top1),
            pm(&g.knn_top1),
            pct(&g.fn_precision),
            pct(&g.fn_recall)
        );
    }
}

fn run() -> Result<()> {
    let command = Cli::parse().command;
    validate(&command)?;
    match command {
        Command::Linear {
            which,
            protocol: Protocol::Reference,
            epochs,
            lr,
            batch_size,
            ..
        } => {
            let (src, shards, device) = source(&which)?;
            let mut cfg = ReferenceLinearConfig {
                epochs: epochs.unwrap_or(90),
                batch_size: batch_size.unwrap_or(1024),
                lr,
                seed: which.seed.unwrap_or(0),
                random_init: false,
            };
            let main = fnc_eval::linear_reference(&src, &shards, &cfg, device)?;
            let base = if which.baseline {
                cfg.random_init = true;
                Some(fnc_eval::linear_reference(&src, &shards, &cfg, device)?)
            } else {
                None
            };
            let extra = serde_json::json!({
                "protocol": "reference",
                "epochs": cfg.epochs,
                "batch_size": cfg.batch_size,
                "run": src.run.path(),
                "checkpoint": src.checkpoint.dir(),
                "arch": src.config.arch.name(),
                "shards": shards,
            });
            to_events(
                &src,
                "linear",
                &accuracy_values(&main, base.as_ref()),
                &extra,
            );
            output(
                &which,
                &format!(
                    "{} ({}), reference protocol",
                    src.config.arch.name(),
                    src.tag()
                ),
                main,
                base,
                extra,
            )?;
        }
        Command::Linear {
            which,
            protocol: Protocol::Fast,
            epochs,
            lr,
            batch_size,
            weight_decay,
        } => {
            let (src, shards, device) = source(&which)?;
            let seed = which.seed.unwrap_or(0);
            let mut cfg = LinearConfig {
                epochs: epochs.unwrap_or(100),
                lr: lr.unwrap_or(0.1),
                seed,
                ..LinearConfig::default()
            };
            if let Some(b) = batch_size {
                // At most MAX_BATCH (validate), so it fits an i64.
                cfg.batch_size = b as i64;
            }
            let fixed = weight_decay
                .as_deref()
                .map(parse_weight_decay)
                .transpose()?
                .flatten();
            let f = fnc_eval::features(&src, &shards, None, device)
                .context("features of the trained encoder")?;
            // The weight decay is chosen on train alone, then the probe is
            // refitted on all of it.
            let choose = |f: &fnc_eval::FeatureSet, cfg: &mut LinearConfig| -> Result<_> {
                Ok(match fixed {
                    Some(wd) => {
                        cfg.weight_decay = wd;
                        None
                    }
                    None => {
                        let c = fnc_eval::choose_weight_decay(
                            &f.train,
                            f.classes,
                            cfg,
                            &fnc_eval::WEIGHT_DECAYS,
                        )?;
                        cfg.weight_decay = c.chosen;
                        Some(c)
                    }
                })
            };
            let choice = choose(&f, &mut cfg)?;
            let mut baseline_wd = None;
            let main = fnc_eval::linear_probe(&f.train, &f.val, f.classes, &cfg)?;
            let base = if which.baseline {
                let b = fnc_eval::features(&src, &shards, Some(seed), device)
                    .context("features of the random encoder")?;
                let mut bcfg = cfg;
                choose(&b, &mut bcfg)?;
                baseline_wd = Some(bcfg.weight_decay);
                Some(fnc_eval::linear_probe(&b.train, &b.val, b.classes, &bcfg)?)
            } else {
                None
            };
            let extra = serde_json::json!({
                "protocol": "fast",
                "epochs": cfg.epochs,
                "batch_size": cfg.batch_size,
                "run": src.run.path(),
                "checkpoint": src.checkpoint.dir(),
                "arch": src.config.arch.name(),
                "shards": shards,
                "train_images": f.train.1.size()[0],
                "val_images": f.val.1.size()[0],
                "eval_split": f.eval_split,
                "eval_view": fnc_train::eval_view(src.config.image_size).describe(),
                "weight_decay": cfg.weight_decay,
                "weight_decay_choice": choice,
                "baseline_weight_decay": baseline_wd,
            });
            to_events(
                &src,
                "linear",
                &accuracy_values(&main, base.as_ref()),
                &extra,
            );
            output(
                &which,
                &format!("{} ({})", src.config.arch.name(), src.tag()),
                main,
                base,
                extra,
            )?;
        }
        Command::Knn { which } => {
            let (src, shards, device) = source(&which)?;
            let knn = |f: &fnc_eval::FeatureSet| -> serde_json::Value {
                let mut m = serde_json::Map::new();
                for k in [fnc_train::KNN_K, 200] {
                    let acc = fnc_train::knn_top1(
                        &f.train.0,
                        &f.train.1,
                        &f.val.0,
                        &f.val.1,
                        k,
                        fnc_train::KNN_T,
                        f.classes,
                    );
                    m.insert(format!("k{k}"), acc.into());
                }
                m.into()
            };
            let f = fnc_eval::features(&src, &shards, None, device)?;
            let mut j = serde_json::json!({ "top1": knn(&f) });
            if which.baseline {
                let b = fnc_eval::features(&src, &shards, Some(which.seed.unwrap_or(0)), device)?;
                j["baseline"] = serde_json::json!({ "top1": knn(&b) });
            }
            let mut values = Vec::new();
            for (prefix, m) in [
                ("top1", &j["top1"]),
                ("baseline_top1", &j["baseline"]["top1"]),
            ] {
                for (k, v) in m.as_object().into_iter().flatten() {
                    if let Some(v) = v.as_f64() {
                        values.push((format!("{prefix}_{k}"), v));
                    }
                }
            }
            to_events(
                &src,
                "knn",
                &values,
                &serde_json::json!({ "protocol": "weighted k-NN", "top1": j["top1"] }),
            );
            if which.json {
                println!("{}", serde_json::to_string_pretty(&j)?);
            } else {
                println!("weighted k-NN top-1 %: {}", j);
            }
        }
        Command::Finetune {
            which,
            protocol,
            fraction,
            subset,
            from_head_layer,
            epochs,
            batch_size,
            lr,
        } => {
            let (src, shards, device) = source(&which)?;
            let ds = fnc_eval::open_dataset(&shards)?;
            let train = ds
                .split("train")
                .with_context(|| format!("--shards {}", shards.display()))?;
            let seed = which.seed.unwrap_or(0);
            let ids = match &subset {
                Some(file) => fnc_eval::named_subset(&train, file)?,
                None => fnc_eval::balanced_subset(&train, fraction, seed)?,
            };
            let labelled = ids.len();
            let mut cfg = match protocol {
                Protocol::Fast => FinetuneConfig::fast(),
                Protocol::Reference => {
                    FinetuneConfig::reference(labelled as f64 / train.len().max(1) as f64)
                }
            };
            cfg.seed = seed;
            if let Some(v) = from_head_layer {
                cfg.from_head_layer = v;
            }
            if let Some(v) = epochs {
                cfg.epochs = v;
            }
            if let Some(v) = batch_size {
                cfg.batch_size = v;
            }
            if lr.is_some() {
                cfg.lr = lr;
            }
            let main = fnc_eval::finetune(&src, &shards, ids.clone(), &cfg, device)?;
            let base = if which.baseline {
                cfg.random_init = true;
                Some(fnc_eval::finetune(&src, &shards, ids, &cfg, device)?)
            } else {
                None
            };
            let about = serde_json::json!({
                "labelled": labelled,
                "protocol": format!("{protocol:?}").to_lowercase(),
                "from_head_layer": cfg.from_head_layer,
                "epochs": cfg.epochs,
            });
            to_events(
                &src,
                "finetune",
                &accuracy_values(&main, base.as_ref()),
                &about,
            );
            output(
                &which,
                &format!("fine-tuned on {labelled} images"),
                main,
                base,
                about,
            )?;
        }
        Command::Compare {
            runs,
            out,
            epochs,
            device,
            json,
            json_out,
            paired,
            baseline,
        } => {
            let device = fnc_train::parse_device(&device)?;
            let probe = LinearConfig {
                epochs,
                ..LinearConfig::default()
            };
            let check = baseline.as_deref().filter(|_| paired);
            let c = fnc_eval::compare_against(&runs, &probe, device, check)?;
            fnc_eval::compare_plot(&c, &out)?;
            let p = paired
                .then(|| fnc_eval::paired(&c, baseline.as_deref()))
                .transpose()?;
            let mut j = serde_json::to_value(&c)?;
            if let (Some(p), Some(o)) = (&p, j.as_object_mut()) {
                o.insert("paired".into(), serde_json::to_value(p)?);
            }
            if let Some(path) = &json_out {
                std::fs::write(path, serde_json::to_string_pretty(&j)? + "\n")
                    .with_context(|| format!("--json-out {}", path.display()))?;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&j)?);
            } else {
                print_comparison(&c);
                if let Some(p) = &p {
                    print_paired(p);
                }
                println!("\ncurves: {}", out.display());
            }
        }
        Command::Report { run, out } => {
            let out = out.unwrap_or_else(|| run.join("report.png"));
            let n =
                fnc_eval::report(&run, &out).with_context(|| format!("--run {}", run.display()))?;
            println!("wrote {} ({} steps)", out.display(), n);
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
