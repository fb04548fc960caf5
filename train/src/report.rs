//! The report of a run: its training curves drawn into one image (loss, lr,
//! k-NN top-1, mean |F_i|, FN precision with its chance rate, FN recall).
//! `fnc-eval report` saves it as a PNG; a run with TensorBoard events adds it
//! at each checkpoint.

use std::path::Path;

use image::RgbImage;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::TrainError;
use crate::events::Events;
use crate::metrics::{read_metrics, StepMetrics};

/// Fonts tried for labels; without one the curves are drawn unlabelled.
const FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Makes a font available to plotters; false when this machine has none.
pub fn register_font() -> bool {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *REGISTERED.get_or_init(|| {
        for f in FONTS {
            if let Ok(bytes) = std::fs::read(f) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// A chart of a drawing area on an in-memory bitmap.
pub type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// One panel's chart on `area`: x from 0 to `max_step`, y the range of the
/// finite `values` padded by 5% (0..1 when there are none); caption and mesh
/// when a font is available.
pub fn panel_chart<'a, 'b>(
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

/// Draws the curves of `m` (steps in order) against the step.
pub fn draw_report(m: &[StepMetrics]) -> Result<RgbImage, String> {
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
    let (w, h) = (900u32, 250 * panels.len() as u32);
    let mut buf = vec![0u8; (w * h * 3) as usize];
    let mut draw = || -> Result<(), Box<dyn std::error::Error>> {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
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
    draw().map_err(|e| format!("cannot draw the report: {e}"))?;
    RgbImage::from_raw(w, h, buf).ok_or_else(|| "report buffer of the wrong size".into())
}

/// Adds the report of the run so far (its `metrics.jsonl`) to `events` at `step`.
pub(crate) fn to_events(events: &mut Events, metrics: &Path, step: u64) -> Result<(), TrainError> {
    let m = read_metrics(metrics)?;
    let img = draw_report(&m).map_err(|detail| TrainError::Io {
        path: metrics.to_path_buf(),
        err: std::io::Error::other(detail),
    })?;
    events.image(step, "report", &img)
}
