//! `fnc-eval`: linear, k-NN and fine-tuning evaluation; run reports.

mod cli;
mod print;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;
use fnc_eval::{FinetuneConfig, LinearConfig, ReferenceLinearConfig, Source};

use cli::{parse_weight_decay, validate, Cli, Command, Protocol, Which};
use print::{accuracy_values, output, print_comparison, print_paired, to_events};

fn source(w: &Which) -> Result<(Source, PathBuf, tch::Device)> {
    let src = fnc_eval::resolve(w.run.as_deref(), w.checkpoint.as_deref())?;
    let shards = w
        .shards
        .clone()
        .unwrap_or_else(|| src.config.shards.clone());
    let device = fnc_train::parse_device(&w.device)?;
    Ok((src, shards, device))
}

/// What a linear evaluation ran on and how (its protocol, schedule, run,
/// checkpoint, encoder and shards), with the protocol's own fields `more`.
fn described(
    protocol: &str,
    epochs: usize,
    batch_size: impl serde::Serialize,
    src: &Source,
    shards: &Path,
    more: serde_json::Value,
) -> serde_json::Value {
    let mut v = serde_json::json!({
        "protocol": protocol,
        "epochs": epochs,
        "batch_size": batch_size,
        "run": src.run.path(),
        "checkpoint": src.checkpoint.dir(),
        "arch": src.config.arch.name(),
        "shards": shards,
    });
    if let (Some(all), serde_json::Value::Object(more)) = (v.as_object_mut(), more) {
        all.extend(more);
    }
    v
}

/// `linear --protocol reference`: SimCLR's linear evaluation.
fn linear_reference(
    which: &Which,
    epochs: Option<usize>,
    lr: Option<f64>,
    batch_size: Option<usize>,
) -> Result<()> {
    let (src, shards, device) = source(which)?;
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
    let extra = described(
        "reference",
        cfg.epochs,
        cfg.batch_size,
        &src,
        &shards,
        serde_json::json!({}),
    );
    to_events(
        &src,
        "linear",
        &accuracy_values(&main, base.as_ref()),
        &extra,
    );
    output(
        which,
        &format!(
            "{} ({}), reference protocol",
            src.config.arch.name(),
            src.tag()
        ),
        main,
        base,
        extra,
    )
}

/// `linear` (fast): a classifier on cached features, its weight decay fixed
/// or chosen on train alone, then refitted on all of it.
fn linear_fast(
    which: &Which,
    epochs: Option<usize>,
    lr: Option<f64>,
    batch_size: Option<usize>,
    weight_decay: Option<&str>,
) -> Result<()> {
    let (src, shards, device) = source(which)?;
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
    let fixed = weight_decay.map(parse_weight_decay).transpose()?.flatten();
    let f = fnc_eval::features(&src, &shards, None, device)
        .context("features of the trained encoder")?;
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
    let more = serde_json::json!({
        "train_images": f.train.1.size()[0],
        "val_images": f.val.1.size()[0],
        "eval_split": f.eval_split,
        "eval_view": fnc_train::eval_view(src.config.image_size).describe(),
        "weight_decay": cfg.weight_decay,
        "weight_decay_choice": choice,
        "baseline_weight_decay": baseline_wd,
    });
    let extra = described("fast", cfg.epochs, cfg.batch_size, &src, &shards, more);
    to_events(
        &src,
        "linear",
        &accuracy_values(&main, base.as_ref()),
        &extra,
    );
    output(
        which,
        &format!("{} ({})", src.config.arch.name(), src.tag()),
        main,
        base,
        extra,
    )
}

/// `knn`: weighted k-NN top-1 at k = 20 and 200.
fn knn(which: &Which) -> Result<()> {
    let (src, shards, device) = source(which)?;
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
    Ok(())
}

/// `finetune`'s flags past the run's.
struct FinetuneFlags {
    protocol: Protocol,
    fraction: f64,
    subset: Option<PathBuf>,
    from_head_layer: Option<usize>,
    epochs: Option<usize>,
    batch_size: Option<usize>,
    lr: Option<f64>,
}

/// `finetune`: the whole network on a labelled subset of train.
fn finetune(which: &Which, flags: FinetuneFlags) -> Result<()> {
    let (src, shards, device) = source(which)?;
    let ds = fnc_eval::open_dataset(&shards)?;
    let train = ds
        .split("train")
        .with_context(|| format!("--shards {}", shards.display()))?;
    let seed = which.seed.unwrap_or(0);
    let ids = match &flags.subset {
        Some(file) => fnc_eval::named_subset(&train, file)?,
        None => fnc_eval::balanced_subset(&train, flags.fraction, seed)?,
    };
    let labelled = ids.len();
    let mut cfg = match flags.protocol {
        Protocol::Fast => FinetuneConfig::fast(),
        Protocol::Reference => {
            FinetuneConfig::reference(labelled as f64 / train.len().max(1) as f64)
        }
    };
    cfg.seed = seed;
    if let Some(v) = flags.from_head_layer {
        cfg.from_head_layer = v;
    }
    if let Some(v) = flags.epochs {
        cfg.epochs = v;
    }
    if let Some(v) = flags.batch_size {
        cfg.batch_size = v;
    }
    if flags.lr.is_some() {
        cfg.lr = flags.lr;
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
        "protocol": format!("{:?}", flags.protocol).to_lowercase(),
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
        which,
        &format!("fine-tuned on {labelled} images"),
        main,
        base,
        about,
    )
}

/// `compare`'s flags.
struct CompareFlags {
    runs: Vec<PathBuf>,
    out: PathBuf,
    epochs: usize,
    device: String,
    json: bool,
    json_out: Option<PathBuf>,
    paired: bool,
    baseline: Option<String>,
}

/// `compare`: runs grouped by arm, optionally paired against a baseline arm.
fn compare(flags: CompareFlags) -> Result<()> {
    let device = fnc_train::parse_device(&flags.device)?;
    let probe = LinearConfig {
        epochs: flags.epochs,
        ..LinearConfig::default()
    };
    let baseline = flags.baseline.as_deref();
    let check = baseline.filter(|_| flags.paired);
    let c = fnc_eval::compare_against(&flags.runs, &probe, device, check)?;
    fnc_eval::compare_plot(&c, &flags.out)?;
    let p = flags
        .paired
        .then(|| fnc_eval::paired(&c, baseline))
        .transpose()?;
    let mut j = serde_json::to_value(&c)?;
    if let (Some(p), Some(o)) = (&p, j.as_object_mut()) {
        o.insert("paired".into(), serde_json::to_value(p)?);
    }
    if let Some(path) = &flags.json_out {
        std::fs::write(path, serde_json::to_string_pretty(&j)? + "\n")
            .with_context(|| format!("--json-out {}", path.display()))?;
    }
    if flags.json {
        println!("{}", serde_json::to_string_pretty(&j)?);
    } else {
        print_comparison(&c);
        if let Some(p) = &p {
            print_paired(p);
        }
        println!("\ncurves: {}", flags.out.display());
    }
    Ok(())
}

/// `report`: a run's curves as a PNG.
fn report(run: &Path, out: Option<PathBuf>) -> Result<()> {
    let out = out.unwrap_or_else(|| run.join("report.png"));
    let n = fnc_eval::report(run, &out).with_context(|| format!("--run {}", run.display()))?;
    println!("wrote {} ({} steps)", out.display(), n);
    Ok(())
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
        } => linear_reference(&which, epochs, lr, batch_size),
        Command::Linear {
            which,
            protocol: Protocol::Fast,
            epochs,
            lr,
            batch_size,
            weight_decay,
        } => linear_fast(&which, epochs, lr, batch_size, weight_decay.as_deref()),
        Command::Knn { which } => knn(&which),
        Command::Finetune {
            which,
            protocol,
            fraction,
            subset,
            from_head_layer,
            epochs,
            batch_size,
            lr,
        } => finetune(
            &which,
            FinetuneFlags {
                protocol,
                fraction,
                subset,
                from_head_layer,
                epochs,
                batch_size,
                lr,
            },
        ),
        Command::Compare {
            runs,
            out,
            epochs,
            device,
            json,
            json_out,
            paired,
            baseline,
        } => compare(CompareFlags {
            runs,
            out,
            epochs,
            device,
            json,
            json_out,
            paired,
            baseline,
        }),
        Command::Report { run, out } => report(&run, out),
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
