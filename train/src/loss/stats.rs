//! What a loss hands back: the value, the detected false negatives and their
//! statistics (from counts that sum over a data-parallel step's shards), and
//! the shard of anchors one rank computes.

use tch::Tensor;

/// The loss and what detection found. The statistics are counted on the
/// loss's device (`tally`) and read on the host once, by [`settle`]; the
/// public loss functions return them settled.
///
/// [`settle`]: LossOutput::settle
#[derive(Debug)]
pub struct LossOutput {
    /// Scalar loss (differentiable).
    pub loss: Tensor,
    /// `[B, N]` boolean: candidate rows detected as false negatives of image i.
    pub false_negatives: Tensor,
    /// `[5]` float64 on the loss's device: the [`FnCounts`] in their
    /// order (images, detected, detected with the anchor's label, candidates
    /// with it, candidates).
    pub tally: Tensor,
    /// Mean |F_i| over images.
    pub mean_fn: f64,
    /// Share of detected false negatives with the anchor's label (labels given).
    pub fn_precision: Option<f64>,
    /// Share of all candidates with the anchor's label: precision by chance.
    pub fn_chance: Option<f64>,
    /// Share of the candidates with the anchor's label that were detected.
    pub fn_recall: Option<f64>,
    /// The counts the statistics come from (summed over the shards of a
    /// data-parallel step, they give the global batch's statistics).
    pub counts: FnCounts,
}

/// Raw counts behind the FN statistics of a loss (or of one shard of it).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FnCounts {
    /// Images whose anchors were computed.
    pub images: f64,
    /// Detected false negatives.
    pub detected: f64,
    /// Detected ones with the anchor's label (labels given).
    pub detected_same: f64,
    /// Candidates with the anchor's label.
    pub candidates_same: f64,
    /// All candidates.
    pub candidates: f64,
    /// Whether labels were given (precision, chance and recall exist).
    pub labelled: bool,
}

impl LossOutput {
    /// A loss whose statistics are still on the device (`tally`), for
    /// [`settle`](LossOutput::settle) to read.
    pub(crate) fn unsettled(
        loss: Tensor,
        false_negatives: Tensor,
        tally: Tensor,
        labelled: bool,
    ) -> LossOutput {
        LossOutput {
            loss,
            false_negatives,
            tally,
            mean_fn: 0.0,
            fn_precision: None,
            fn_chance: None,
            fn_recall: None,
            counts: FnCounts {
                labelled,
                ..FnCounts::default()
            },
        }
    }

    /// The loss value and the tally as one `[6]` float64 tensor on
    /// the device (what a data-parallel step sums over the ranks).
    pub(crate) fn totals(&self) -> Result<Tensor, tch::TchError> {
        let loss = self
            .loss
            .f_detach()?
            .f_to_kind(tch::Kind::Double)?
            .f_reshape([1])?;
        Tensor::f_cat(&[loss, self.tally.shallow_clone()], 0)
    }

    /// Reads the loss value and the counts on the host (one synchronisation)
    /// and fills the statistics; returns the loss value.
    pub fn settle(&mut self) -> Result<f64, tch::TchError> {
        let totals = self.totals()?;
        self.settle_with(&totals)
    }

    /// [`settle`] from `totals` (the loss value and tally, e.g. summed over
    /// the ranks of a data-parallel step).
    ///
    /// [`settle`]: LossOutput::settle
    pub(crate) fn settle_with(&mut self, totals: &Tensor) -> Result<f64, tch::TchError> {
        let v = crate::host::read(totals)?;
        if v.len() != 6 {
            return Err(tch::TchError::Shape(format!(
                "a loss's totals hold 6 values (the loss and 5 counts), not {}",
                v.len()
            )));
        }
        let c = |i: usize| v[i];
        self.counts = FnCounts {
            images: c(1),
            detected: c(2),
            detected_same: c(3),
            candidates_same: c(4),
            candidates: c(5),
            labelled: self.counts.labelled,
        };
        (
            self.mean_fn,
            self.fn_precision,
            self.fn_chance,
            self.fn_recall,
        ) = self.counts.stats();
        Ok(c(0))
    }
}

impl FnCounts {
    /// Mean |F_i|, precision, chance rate and recall from the counts.
    pub fn stats(&self) -> (f64, Option<f64>, Option<f64>, Option<f64>) {
        let mean_fn = self.detected / self.images.max(1.0);
        if !self.labelled {
            return (mean_fn, None, None, None);
        }
        (
            mean_fn,
            (self.detected > 0.0).then(|| self.detected_same / self.detected),
            (self.candidates > 0.0).then(|| self.candidates_same / self.candidates),
            (self.candidates_same > 0.0).then(|| self.detected_same / self.candidates_same),
        )
    }
}

/// The images of the global batch whose anchors one rank of a data-parallel
/// step computes: `count` images from `first`. The loss it returns is that
/// shard's part (the sum over the shards is the loss), its statistics are the
/// shard's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub first: i64,
    pub count: i64,
}
