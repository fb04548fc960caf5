//! What `fnc-eval` prints, and the results it adds to a run's TensorBoard events.

use anyhow::Result;
use fnc_eval::{Accuracy, Source};

use crate::cli::Which;

fn table(rows: &[(&str, Accuracy)]) {
    println!("{:<28} {:>8} {:>8}", "encoder", "top-1 %", "top-5 %");
    for (name, a) in rows {
        println!("{:<28} {:>8.2} {:>8.2}", name, a.top1, a.top5);
    }
}

pub fn output(
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
pub fn to_events(src: &Source, kind: &str, values: &[(String, f64)], about: &serde_json::Value) {
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
pub fn accuracy_values(main: &Accuracy, base: Option<&Accuracy>) -> Vec<(String, f64)> {
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
pub fn print_paired(p: &fnc_eval::Paired) {
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
pub fn print_comparison(c: &fnc_eval::Comparison) {
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
