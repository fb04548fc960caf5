//! `fnc-eval report`: a PNG of a run's training curves for a person to look at
//! (drawn by [`fnc_train::report::draw_report`], which also feeds a run's
//! TensorBoard events).

use std::path::Path;

use fnc_train::{RunDir, StepMetrics};

use crate::error::EvalError;

/// Reads a run's metrics (its `metrics.jsonl`).
pub fn read_metrics(run: &Path) -> Result<Vec<StepMetrics>, EvalError> {
    Ok(fnc_train::read_metrics(&RunDir::new(run).metrics_path())?)
}

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
    let fail = |detail: String| EvalError::Input {
        what: out.display().to_string(),
        detail,
    };
    let img = fnc_train::report::draw_report(&m).map_err(fail)?;
    img.save_with_format(out, image::ImageFormat::Png)
        .map_err(|e| fail(format!("cannot write the report: {e}")))?;
    Ok(m.len())
}
