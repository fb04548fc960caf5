//! Evaluation views: one unaugmented view per record (a centre crop, or the
//! whole image at small sizes), decoded on the current rayon pool.

use fnc_formats::SplitReader;
use rayon::prelude::*;

use super::{read_error, record_error, WORK};
use crate::decode::decode_into;
use crate::error::AugmentError;
use crate::ops::crop_resize;
use crate::params::CropBox;

/// What an evaluation view of an image is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EvalView {
    /// The centre square of this fraction of the shorter side (0.875 in the
    /// reference).
    Centre(f64),
    /// The whole image, its aspect not kept: the reference's evaluation at
    /// 32 px and below, where it takes no crop.
    Whole,
}

impl EvalView {
    /// How the view is named in results and cache keys.
    pub fn describe(self) -> String {
        match self {
            EvalView::Centre(c) => format!("centre crop {c}"),
            EvalView::Whole => "whole image, no crop".into(),
        }
    }
}

/// Evaluation views: the centre `crop` fraction of each image's shorter side
/// (0.875 in the reference), resized to `side` x `side` (bilinear,
/// antialiased), no other augmentation, for the records `indices`, written
/// into `out` (`[indices.len(), side, side, 3]` uint8 NHWC). Runs on the
/// current rayon pool; returns the labels. An error names the shard and record.
pub fn centre_crops(
    split: &SplitReader,
    indices: &[u64],
    side: u32,
    crop: f64,
    out: &mut [u8],
) -> Result<Vec<u32>, AugmentError> {
    eval_views(split, indices, side, EvalView::Centre(crop), out)
}

/// [`centre_crops`] for any [`EvalView`].
pub fn eval_views(
    split: &SplitReader,
    indices: &[u64],
    side: u32,
    view: EvalView,
    out: &mut [u8],
) -> Result<Vec<u32>, AugmentError> {
    let per = (side * side * 3) as usize;
    let crop = match view {
        EvalView::Centre(c) => c,
        EvalView::Whole => 1.0,
    };
    if side == 0 || out.len() != per * indices.len() || !(crop > 0.0 && crop <= 1.0) {
        return Err(AugmentError::Config {
            flag: "centre crop",
            detail: format!(
                "{} output bytes for {} views of {side} px, crop {crop} (want {} bytes, a side of 1 px at least, crop in (0, 1])",
                out.len(),
                indices.len(),
                per * indices.len()
            ),
        });
    }
    out.par_chunks_mut(per)
        .zip(indices.par_iter())
        .map(|(slot, &i)| {
            WORK.with(|w| {
                let (buf, scratch) = &mut *w.borrow_mut();
                let rec = split.get(i).map_err(|e| read_error(split, i, e))?;
                let (w, h) = decode_into(&rec, buf).map_err(|e| record_error(split, i, e))?;
                let bx = match view {
                    EvalView::Whole => CropBox { x: 0, y: 0, w, h },
                    EvalView::Centre(_) => {
                        let short = w.min(h);
                        let s = ((short as f64 * crop).round() as u32).clamp(1, short);
                        CropBox {
                            x: (w - s) / 2,
                            y: (h - s) / 2,
                            w: s,
                            h: s,
                        }
                    }
                };
                crop_resize(buf, w, h, bx, side, slot, scratch)
                    .map_err(|e| record_error(split, i, e))?;
                Ok(rec.label)
            })
        })
        .collect()
}
