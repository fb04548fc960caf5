//! `fnc-eval report`: a PNG of a run's training curves for a person to look at.

use std::path::Path;

use fnc_train::{RunDir, StepMetrics};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::EvalError;

/// Fonts tried for labels; without one the curves are drawn unlabelled.
const FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

pub(crate) fn register_font() -> bool {
    for f in FONTS {
        if let Ok(bytes) = std::fs::read(f) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
    }
    false
}

/// Reads a run's metrics (its `metrics.jsonl`).
pub fn read_metrics(run: &Path) -> Result<Vec<StepMetrics>, EvalError> {
    Ok(fnc_train::read_metrics(&RunDir::new(run).metrics_path())?)
}

type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// One panel's chart on `area`: x from 0 to `max_step`, y the range of the
/// finite `values` padded by 5% (0..1 when there are none); caption and mesh
/// when a font is available.
pub(crate) fn panel_chart<'a, 'b>(
    area: &'a DrawingArea<BitMapBackend<'b>, Shift>,
    name: &str,
    values: impl Iterator<Item = f64>,
    max_step: f64,
    labelled: bool,
) -> Result<Chart<'a, 'b>, Box<dyn std::error::Error>> {
    let (mut lo, mut hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    if lo > hi {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        hi = lo + 1.0;
    }
    let pad = (hi - lo) * 0.05;
    let mut b = ChartBuilder::on(area);
    b.margin(10)
        .x_label_area_size(if labelled { 25 } else { 0 })
        .y_label_area_size(if labelled { 60 } else { 0 });
    if labelled {
        b.caption(name, ("sans-serif", 18));
    }
    let mut chart = b.build_cartesian_2d(0.0..max_step, (lo - pad)..(hi + pad))?;
    if labelled {
        chart.configure_mesh().draw()?;
    }
    Ok(chart)
}

type Series = (&'static str, Vec<(f64, f64)>, Option<Vec<(f64, f64)>>);

/// Draws loss, lr, k-NN top-1, mean |F_i|, FN precision (with its chance
/// rate) and FN recall against the step into `out`.
pub fn report(run: &Path, out: &Path) -> Result<usize, EvalError> {
    let m = read_metrics(run)?;
    if m.is_empty() {
        return Err(EvalError::Input {
            what: RunDir::new(run).metrics_path().display().to_string(),
            detail: "holds no steps".into(),
        });
    }
    let labelled = register_font();
    let xy = |f: &dyn Fn(&StepMetrics) -> Option<f64>| -> Vec<(f64, f64)> {
        m.iter()
            .filter_map(|s| f(s).map(|v| (s.step as f64, v)))
            .collect()
    };
    let panels: Vec<Series> = vec![
        ("loss", xy(&|s| Some(s.loss)), None),
        ("learning rate", xy(&|s| Some(s.lr)), None),
        ("k-NN top-1 (%)", xy(&|s| s.knn_top1), None),
        ("mean |F_i|", xy(&|s| Some(s.mean_fn)), None),
        (
            "FN precision (chance dashed)",
            xy(&|s| s.fn_precision),
            Some(xy(&|s| s.fn_chance)),
        ),
        ("FN recall", xy(&|s| s.fn_recall), None),
    ];
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let root = BitMapBackend::new(out, (900, 250 * panels.len() as u32)).into_drawing_area();
        root.fill(&WHITE)?;
        let areas = root.split_evenly((panels.len(), 1));
        let max_step = m.last().map(|s| s.step as f64).unwrap_or(1.0).max(1.0);
        for ((name, ys, extra), area) in panels.iter().zip(areas.iter()) {
            let values = ys.iter().chain(extra.iter().flatten()).map(|p| p.1);
            let mut chart = panel_chart(area, name, values, max_step, labelled)?;
            chart.draw_series(LineSeries::new(ys.iter().copied(), &BLUE))?;
            if let Some(e) = extra {
                chart.draw_series(DashedLineSeries::new(e.iter().copied(), 6, 4, RED.into()))?;
            }
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| EvalError::Input {
        what: out.display().to_string(),
        detail: format!("cannot draw the report: {e}"),
    })?;
    Ok(m.len())
}
