//! The global batch from the ranks' rows: embeddings gathered view-major,
//! differentiably or not, each rank's share of a split, and the images whose
//! anchors a rank computes.

use tch::Tensor;

use super::group::ProcessGroup;
use crate::error::TrainError;

impl ProcessGroup {
    /// Embeddings `z` (this rank's `[views * b, d]`, view-major) as the
    /// global batch's `[views * world * b, d]` (view-major, images in rank
    /// order), every row differentiable: each rank places its rows in a zero
    /// matrix of the global shape and the ranks' matrices are summed by the
    /// all-reduce whose backward all-reduces, so each rank's rows receive the
    /// gradient of every rank's part of the loss.
    pub fn gather_views_live(&self, z: &Tensor, views: i64) -> Result<Tensor, TrainError> {
        let (n, d) = (z.size()[0], z.size()[1]);
        let b = n / views;
        let w = self.world as i64;
        let r = self.rank as i64;
        let opts = (z.kind(), z.device());
        let mine = z.view([1, views, b, d]);
        let placed = Tensor::cat(
            &[
                Tensor::zeros([r, views, b, d], opts),
                mine,
                Tensor::zeros([w - r - 1, views, b, d], opts),
            ],
            0,
        );
        Ok(view_major(&self.all_reduce_autograd(&placed)?, w, views))
    }

    /// The images of the global batch whose anchors this rank computes.
    pub fn shard(&self, local_images: i64) -> crate::loss::Shard {
        crate::loss::Shard {
            first: self.rank as i64 * local_images,
            count: local_images,
        }
    }

    /// Embeddings `z` (this rank's `[views * b, d]`, view-major) as the
    /// global batch's `[views * world * b, d]`, view-major, images in rank
    /// order, without gradient (the momentum encoder's keys).
    pub fn gather_views(&self, z: &Tensor, views: i64) -> Result<Tensor, TrainError> {
        Ok(view_major(&self.all_gather(z)?, self.world as i64, views))
    }
}

/// Rank `rank`'s contiguous share of `total` items split over `world` ranks
/// (the first `total % world` ranks take one more).
pub fn share(total: u64, rank: usize, world: usize) -> std::ops::Range<u64> {
    let (w, r) = (world.max(1) as u64, rank as u64);
    let (base, extra) = (total / w, total % w);
    let start = r * base + r.min(extra);
    start..start + base + u64::from(r < extra)
}

/// Rank-major rows (`[world * views * b, d]` or `[world, views, b, d]`, each
/// rank's block view-major) as the global batch's view-major
/// `[views * world * b, d]`.
fn view_major(rows: &Tensor, world: i64, views: i64) -> Tensor {
    let d = rows.size().last().copied().unwrap_or(1);
    let n = rows.numel() as i64 / d;
    rows.view([world, views, n / (world * views), d])
        .transpose(0, 1)
        .reshape([n, d])
}
