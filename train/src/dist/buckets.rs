//! Gradients summed over the ranks in buckets of about 25 MB per dtype and
//! device: one collective per bucket rather than per tensor.

use tch::Tensor;

use super::group::ProcessGroup;
use crate::error::TrainError;

impl ProcessGroup {
    /// Sums gradients over the ranks in place, in buckets of about 25 MB per
    /// dtype and device (one collective per bucket rather than per tensor).
    pub fn all_reduce_grads(&self, grads: &[Tensor]) -> Result<(), TrainError> {
        const BUCKET: i64 = 25 << 20;
        let mut bucket: Vec<&Tensor> = Vec::new();
        let mut bytes = 0i64;
        let flush = |bucket: &mut Vec<&Tensor>| -> Result<(), TrainError> {
            if bucket.is_empty() {
                return Ok(());
            }
            let flat: Vec<Tensor> = bucket.iter().map(|g| g.reshape([-1])).collect();
            let joined = Tensor::cat(&flat, 0);
            self.all_reduce(&joined)?;
            let mut at = 0;
            for g in bucket.iter() {
                let n = g.numel() as i64;
                let mut g = g.shallow_clone();
                let part = joined.narrow(0, at, n).view_as(&g);
                g.copy_(&part);
                at += n;
            }
            bucket.clear();
            Ok(())
        };
        for g in grads.iter().filter(|g| g.defined()) {
            if let Some(first) = bucket.first() {
                if first.kind() != g.kind() || first.device() != g.device() || bytes >= BUCKET {
                    flush(&mut bucket)?;
                    bytes = 0;
                }
            }
            bytes += g.numel() as i64 * g.kind().elt_size_in_bytes() as i64;
            bucket.push(g);
        }
        flush(&mut bucket)
    }
}
