//! The k-NN monitor of `--knn-every`: weighted k-NN top-1 of the encoder on
//! the val split, against the features of the training split. In a
//! data-parallel run every rank extracts its share of both splits, so no rank
//! waits in a collective while another works alone; the val features are
//! gathered, each rank finds the neighbours among its training share, and the
//! shares' neighbours are merged: the same answer as one process.

use std::sync::Arc;

use fnc_formats::SplitReader;
use tch::{Device, Tensor};

use crate::dist::{share, ProcessGroup};
use crate::error::TrainError;
use crate::features::{extract_range, knn_neighbours, knn_vote, merge_neighbours, KNN_K, KNN_T};
use crate::model::Model;

/// Batch of the monitor's feature extraction.
const BATCH: usize = 256;

/// The splits the monitor reads.
#[derive(Debug)]
pub(crate) struct Monitor {
    pub train: Arc<SplitReader>,
    pub val: SplitReader,
    pub classes: i64,
}

impl Monitor {
    /// Weighted k-NN top-1 (percent) of `model`'s features at `size` px.
    pub fn knn_top1(
        &self,
        model: &Model,
        size: u32,
        device: Device,
        group: Option<&ProcessGroup>,
    ) -> Result<f64, TrainError> {
        let (rank, world) = group.map(|g| (g.rank, g.world)).unwrap_or((0, 1));
        let (nt, nv) = (self.train.len(), self.val.len());
        let embed = |split: &SplitReader, n: u64| {
            extract_range(model, split, share(n, rank, world), size, BATCH, device)
        };
        let extracted = embed(&self.train, nt).and_then(|t| Ok((t, embed(&self.val, nv)?)));
        if let Some(g) = group {
            // A record that fails to decode fails one rank's share: every rank
            // learns it before the gathers, and all stop together.
            let failed = Tensor::from_slice(&[i64::from(extracted.is_err())]).to_device(g.device);
            g.all_reduce(&failed)?;
            let n = failed.to_device(Device::Cpu).int64_value(&[0]);
            if n > 0 && extracted.is_ok() {
                return Err(g.error(
                    "the k-NN monitor",
                    format!("{n} rank(s) could not embed their share (their errors say why)"),
                ));
            }
        }
        let ((tf, tl), (vf, vl)) = extracted?;
        let k = KNN_K.min(nt as i64);
        let Some(g) = group else {
            let (sims, labels) = knn_neighbours(&tf, &tl, &vf, k);
            return Ok(knn_vote(&sims, &labels, &vl, KNN_T, self.classes));
        };
        let vf = g.all_gather_shares(&vf, nv)?;
        let vl = g.all_gather_shares(&vl, nv)?;
        let (sims, labels) = knn_neighbours(&tf, &tl, &vf, k);
        // [world * Nv, k] -> each val row's world * k candidates side by side.
        let side = |t: Tensor| -> Result<Tensor, TrainError> {
            let w = g.world as i64;
            Ok(g.all_gather(&t)?
                .to_device(Device::Cpu)
                .view([w, nv as i64, k])
                .permute([1, 0, 2])
                .reshape([nv as i64, w * k]))
        };
        let (sims, labels) = merge_neighbours(&side(sims)?, &side(labels)?, k);
        Ok(knn_vote(&sims, &labels, &vl, KNN_T, self.classes))
    }
}
