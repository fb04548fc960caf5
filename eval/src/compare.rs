//! `fnc-eval compare`: several runs side by side. Runs whose configs differ
//! only in `--seed` (and in flags that do not change what is learned: device,
//! workers, checkpoint and monitor cadence, the run directory) form a group;
//! each group reports the mean and spread of its final linear and k-NN
//! accuracy, and one PNG draws every group's training curves with their spread.
//! Each run's probe takes the weight decay that a held-out slice of its train
//! features prefers (`choose_weight_decay`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde::Serialize;
use serde_json::Value;
use tch::Device;

use fnc_train::StepMetrics;

use crate::error::EvalError;
use crate::features::features;
use crate::linear::{
    accuracy, choose_weight_decay, linear_probe_logits, LinearConfig, WEIGHT_DECAYS,
};
use crate::source::resolve;
use fnc_train::report::{panel_chart, register_font};

/// Config keys that do not change what a run learns, left out of grouping.
const IGNORED: [&str; 8] = [
    "seed",
    "stop_at_step",
    "device",
    "workers",
    "checkpoint_every",
    "knn_every",
    "max_bad_records",
    "shards",
];

/// Mean, sample standard deviation and the values they summarise.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Spread {
    pub mean: f64,
    /// Sample standard deviation (n - 1); 0 for a single value.
    pub std: f64,
    pub values: Vec<f64>,
}

impl Spread {
    pub fn of(values: Vec<f64>) -> Spread {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n.max(1.0);
        let std = if values.len() > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        Spread { mean, std, values }
    }
}

/// One run's final figures.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub run: PathBuf,
    pub seed: u64,
    pub linear_top1: f64,
    pub knn_top1: f64,
    /// Mean FN precision, chance rate and recall over the last quarter of
    /// training (where logged).
    pub fn_precision: Option<f64>,
    pub fn_chance: Option<f64>,
    pub fn_recall: Option<f64>,
    pub steps: u64,
    /// The probe's weight decay, chosen on a held-out slice of train.
    pub weight_decay: f64,
    /// The dataset evaluated on (pairs must share it, image by image).
    pub dataset_id: String,
    #[serde(skip)]
    pub metrics: Vec<StepMetrics>,
    /// Whether the linear probe got each evaluation image right (paired tests).
    #[serde(skip)]
    pub linear_correct: Vec<bool>,
}

/// Runs that differ only in their seed.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    /// The group's values of the flags that differ between groups.
    pub flags: BTreeMap<String, Value>,
    pub runs: Vec<RunResult>,
    pub linear_top1: Spread,
    pub knn_top1: Spread,
    pub fn_precision: Option<Spread>,
    pub fn_recall: Option<Spread>,
}

impl Group {
    /// `flag=value ...`, or `all` when no flag differs.
    pub fn label(&self) -> String {
        label_of(&self.flags)
    }
}

/// The one arm that `name` names: a label, or one `flag=value` of a label; an
/// arm named by none or by several is an error listing the arms.
pub(crate) fn arm_index(labels: &[String], name: &str) -> Result<usize, EvalError> {
    let exact: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == name).collect();
    let found: Vec<usize> = if exact.is_empty() {
        (0..labels.len())
            .filter(|&i| labels[i].split(' ').any(|f| f == name))
            .collect()
    } else {
        exact
    };
    match found[..] {
        [i] => Ok(i),
        _ => Err(EvalError::Input {
            what: format!("--baseline {name}"),
            detail: format!(
                "names {} of the arms (one is needed): {}",
                if found.is_empty() { "none" } else { "several" },
                labels.join("; ")
            ),
        }),
    }
}

fn label_of(flags: &BTreeMap<String, Value>) -> String {
    if flags.is_empty() {
        return "all".into();
    }
    flags
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The comparison of some runs.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Config keys whose values differ between groups.
    pub differing: Vec<String>,
    pub groups: Vec<Group>,
}

/// Flattens nested config tables into `table.key` entries.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

fn tail_mean(m: &[StepMetrics], f: impl Fn(&StepMetrics) -> Option<f64>) -> Option<f64> {
    let tail = &m[m.len() * 3 / 4..];
    let v: Vec<f64> = tail.iter().filter_map(&f).collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Evaluates each run's latest checkpoint (linear probe with `probe`, k-NN
/// with the monitor's defaults, on the run's own shards) and groups them.
pub fn compare(
    runs: &[PathBuf],
    probe: &LinearConfig,
    device: Device,
) -> Result<Comparison, EvalError> {
    compare_against(runs, probe, device, None)
}

/// [`compare`], checking first (before anything is evaluated) that
/// `baseline`, when given, names exactly one arm ([`crate::paired`]).
pub fn compare_against(
    runs: &[PathBuf],
    probe: &LinearConfig,
    device: Device,
    baseline: Option<&str>,
) -> Result<Comparison, EvalError> {
    if runs.is_empty() {
        return Err(EvalError::Input {
            what: "fnc-eval compare".into(),
            detail: "name at least one run directory".into(),
        });
    }
    // The runs' configs first: the groups, and the baseline among them.
    let mut configs = Vec::with_capacity(runs.len());
    for run in runs {
        let src = resolve(Some(run), None)?;
        let cfg = serde_json::to_value(&src.config).map_err(|e| EvalError::Input {
            what: src.run.config_path().display().to_string(),
            detail: e.to_string(),
        })?;
        let mut flat = BTreeMap::new();
        flatten("", &cfg, &mut flat);
        for k in IGNORED {
            flat.remove(k);
        }
        configs.push((run, src, flat));
    }
    let mut keys: Vec<&BTreeMap<String, Value>> = Vec::new();
    for (_, _, flat) in &configs {
        if !keys.contains(&flat) {
            keys.push(flat);
        }
    }
    let all_keys: std::collections::BTreeSet<&String> =
        keys.iter().flat_map(|k| k.keys()).collect();
    let differing: Vec<String> = all_keys
        .into_iter()
        .filter(|k| keys.iter().any(|g| g.get(*k) != keys[0].get(*k)))
        .cloned()
        .collect();
    let flags_of = |key: &BTreeMap<String, Value>| -> BTreeMap<String, Value> {
        differing
            .iter()
            .map(|k| (k.clone(), key.get(k).cloned().unwrap_or(Value::Null)))
            .collect()
    };
    if let Some(name) = baseline {
        let labels: Vec<String> = keys.iter().map(|k| label_of(&flags_of(k))).collect();
        arm_index(&labels, name)?;
    }
    let mut keyed: Vec<(BTreeMap<String, Value>, RunResult)> = Vec::new();
    for (run, src, flat) in configs {
        let f = features(&src, &src.config.shards, None, device)?;
        let choice = choose_weight_decay(&f.train, f.classes, probe, &WEIGHT_DECAYS)?;
        let cfg = LinearConfig {
            weight_decay: choice.chosen,
            ..*probe
        };
        let logits = linear_probe_logits(&f.train, &f.val, f.classes, &cfg)?;
        let linear = accuracy(&logits, &f.val.1);
        let linear_correct: Vec<bool> = Vec::try_from(
            logits
                .argmax(1, false)
                .eq_tensor(&f.val.1)
                .to_device(tch::Device::Cpu),
        )
        .map_err(|e| EvalError::Input {
            what: run.display().to_string(),
            detail: format!("the probe's per-image results: {e}"),
        })?;
        let knn = fnc_train::knn_top1(
            &f.train.0,
            &f.train.1,
            &f.val.0,
            &f.val.1,
            fnc_train::KNN_K,
            fnc_train::KNN_T,
            f.classes,
        );
        let metrics = fnc_train::read_metrics(&src.run.metrics_path())?;
        keyed.push((
            flat,
            RunResult {
                run: run.clone(),
                seed: src.config.seed,
                linear_top1: linear.top1,
                knn_top1: knn,
                fn_precision: tail_mean(&metrics, |s| s.fn_precision),
                fn_chance: tail_mean(&metrics, |s| s.fn_chance),
                fn_recall: tail_mean(&metrics, |s| s.fn_recall),
                steps: metrics.last().map(|s| s.step).unwrap_or(0),
                weight_decay: choice.chosen,
                dataset_id: f.dataset_id.clone(),
                metrics,
                linear_correct,
            },
        ));
    }
    // Group in order of first appearance.
    let mut groups: Vec<(BTreeMap<String, Value>, Vec<RunResult>)> = Vec::new();
    for (key, r) in keyed {
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, rs)) => rs.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    let spread_of = |rs: &[RunResult], f: &dyn Fn(&RunResult) -> Option<f64>| {
        let v: Vec<f64> = rs.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| Spread::of(v))
    };
    let groups = groups
        .into_iter()
        .map(|(key, runs)| Group {
            flags: flags_of(&key),
            linear_top1: Spread::of(runs.iter().map(|r| r.linear_top1).collect()),
            knn_top1: Spread::of(runs.iter().map(|r| r.knn_top1).collect()),
            fn_precision: spread_of(&runs, &|r| r.fn_precision),
            fn_recall: spread_of(&runs, &|r| r.fn_recall),
            runs,
        })
        .collect();
    Ok(Comparison { differing, groups })
}

/// Per step: (step, mean, min, max) over the runs that logged `f` there.
fn band(runs: &[RunResult], f: &dyn Fn(&StepMetrics) -> Option<f64>) -> Vec<(f64, f64, f64, f64)> {
    let mut at: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for r in runs {
        for s in &r.metrics {
            if let Some(v) = f(s).filter(|v| v.is_finite()) {
                at.entry(s.step).or_default().push(v);
            }
        }
    }
    at.into_iter()
        .map(|(step, v)| {
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let lo = v.iter().copied().fold(f64::MAX, f64::min);
            let hi = v.iter().copied().fold(f64::MIN, f64::max);
            (step as f64, mean, lo, hi)
        })
        .collect()
}

type Curve<'a> = (&'static str, &'a dyn Fn(&StepMetrics) -> Option<f64>);

/// Draws loss, k-NN top-1, FN precision and FN recall per group (the mean
/// over its runs, and their min-max spread shaded) into `out`.
pub fn compare_plot(c: &Comparison, out: &Path) -> Result<(), EvalError> {
    let labelled = register_font();
    let curves: [Curve; 4] = [
        ("loss", &|s| Some(s.loss)),
        ("k-NN top-1 (%)", &|s| s.knn_top1),
        ("FN precision", &|s| s.fn_precision),
        ("FN recall", &|s| s.fn_recall),
    ];
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let root = BitMapBackend::new(out, (1000, 300 * curves.len() as u32)).into_drawing_area();
        root.fill(&WHITE)?;
        let areas = root.split_evenly((curves.len(), 1));
        let max_step = c
            .groups
            .iter()
            .flat_map(|g| g.runs.iter().map(|r| r.steps))
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        for (panel, ((name, f), area)) in curves.iter().zip(areas.iter()).enumerate() {
            let bands: Vec<Vec<(f64, f64, f64, f64)>> =
                c.groups.iter().map(|g| band(&g.runs, *f)).collect();
            let values = bands.iter().flatten().flat_map(|p| [p.2, p.3]);
            let mut chart = panel_chart(area, name, values, max_step, labelled)?;
            for (k, pts) in bands.iter().enumerate() {
                if pts.is_empty() {
                    continue;
                }
                let colour = Palette99::pick(k).to_rgba();
                let mut poly: Vec<(f64, f64)> = pts.iter().map(|p| (p.0, p.3)).collect();
                poly.extend(pts.iter().rev().map(|p| (p.0, p.2)));
                chart.draw_series(std::iter::once(Polygon::new(poly, colour.mix(0.2))))?;
                let line = chart.draw_series(LineSeries::new(
                    pts.iter().map(|p| (p.0, p.1)),
                    colour.stroke_width(2),
                ))?;
                if labelled && panel == 0 {
                    let label = c.groups[k].label();
                    line.label(label).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
                    });
                }
            }
            if labelled && panel == 0 {
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .label_font(("sans-serif", 12))
                    .draw()?;
            }
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| EvalError::Input {
        what: out.display().to_string(),
        detail: format!("cannot draw the comparison: {e}"),
    })
}
