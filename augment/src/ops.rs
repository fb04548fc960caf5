//! The per-view operations, applied in place to a packed RGB8 view.

use crate::params::{AugmentImpl, CropBox, Jitter, ViewDraw};
use crate::simd::{best_path, CpuPath};
use crate::{randaugment, reference};

pub use crate::blur::{blur, blur_kernel_size, blur_weights, blur_with};

/// Buffers one worker reuses from view to view.
#[derive(Default)]
pub struct Scratch {
    resize: crate::resize::ResizeScratch,
    float: Vec<f32>,
    rows: Vec<u16>,
    padded: Vec<u16>,
    float2: Vec<f32>,
    bytes: Vec<u8>,
}

impl Scratch {
    /// The blur's buffers: the pass between its two axes, a padded row.
    pub(crate) fn blur_buffers(&mut self) -> (&mut Vec<u16>, &mut Vec<u16>) {
        (&mut self.rows, &mut self.padded)
    }
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scratch").finish_non_exhaustive()
    }
}

/// Checks that `src` holds a `w` x `h` RGB8 image with at least one pixel and
/// that `crop` is a non-empty box inside it: what every resize relies on.
pub fn check_crop(src: &[u8], w: u32, h: u32, crop: CropBox) -> Result<(), String> {
    if w == 0 || h == 0 {
        return Err(format!("the image is {w}x{h}: it has no pixels"));
    }
    if src.len() as u64 != u64::from(w) * u64::from(h) * 3 {
        return Err(format!("{} bytes for a {w}x{h} RGB image", src.len()));
    }
    let inside = u64::from(crop.x) + u64::from(crop.w) <= u64::from(w)
        && u64::from(crop.y) + u64::from(crop.h) <= u64::from(h);
    if crop.w == 0 || crop.h == 0 || !inside {
        return Err(format!(
            "crop {}x{} at ({}, {}) is empty or outside the {w}x{h} image",
            crop.w, crop.h, crop.x, crop.y
        ));
    }
    Ok(())
}

/// Crops `crop` out of the `w` x `h` RGB8 `src` and resizes it to `side` x `side`
/// into `out` (bilinear; antialiased when downscaling, as the filter support widens
/// with the scale).
pub fn crop_resize(
    src: &[u8],
    w: u32,
    h: u32,
    crop: CropBox,
    side: u32,
    out: &mut [u8],
    scratch: &mut Scratch,
) -> Result<(), String> {
    resize_box(src, (w, h), crop, (side, side), out, scratch)
}

/// Resizes the `crop` box of `src` (`size` = its width, height) to `out_size`.
pub fn resize_box(
    src: &[u8],
    size: (u32, u32),
    crop: CropBox,
    out_size: (u32, u32),
    out: &mut [u8],
    scratch: &mut Scratch,
) -> Result<(), String> {
    resize_box_with(best_path(), src, size, crop, out_size, false, out, scratch)
}

/// [`resize_box`] on a chosen CPU path (every path gives the same bytes), the
/// output mirrored left to right if `flip` (the same bytes as a
/// [`flip_horizontal`] after it).
#[allow(clippy::too_many_arguments)]
pub fn resize_box_with(
    path: CpuPath,
    src: &[u8],
    size: (u32, u32),
    crop: CropBox,
    out_size: (u32, u32),
    flip: bool,
    out: &mut [u8],
    scratch: &mut Scratch,
) -> Result<(), String> {
    check_crop(src, size.0, size.1, crop)?;
    let (ow, oh) = (out_size.0 as usize, out_size.1 as usize);
    if ow == 0 || oh == 0 || out.len() as u64 != ow as u64 * oh as u64 * 3 {
        return Err(format!(
            "{} output bytes for {}x{} pixels",
            out.len(),
            out_size.0,
            out_size.1
        ));
    }
    crate::resize::resize(
        path,
        src,
        size.0 as usize,
        crop,
        (ow, oh),
        flip,
        out,
        &mut scratch.resize,
    );
    Ok(())
}

/// Mirrors each row.
pub fn flip_horizontal(img: &mut [u8], side: usize) {
    for row in img.chunks_exact_mut(side * 3) {
        let (pixels, _) = row.as_chunks_mut::<3>();
        pixels.reverse();
    }
}

/// Greyscale in integer arithmetic (ITU-R 601 weights in Q16).
pub fn grey_u8(img: &mut [u8]) {
    for p in img.chunks_exact_mut(3) {
        let g = (19595 * p[0] as u32 + 38470 * p[1] as u32 + 7471 * p[2] as u32 + 32768) >> 16;
        p.fill(g.min(255) as u8);
    }
}

/// Colour distortion in float, clipping to [0, 1] after each op; also greyscale
/// when asked, before the single rounding back to u8 (see [`crate::jitter`]).
pub fn jitter(img: &mut [u8], j: &Jitter, grey: bool, scratch: &mut Scratch) {
    jitter_with(best_path(), img, j, grey, scratch)
}

/// [`jitter`] on a chosen CPU path: every path gives the same bytes.
pub fn jitter_with(path: CpuPath, img: &mut [u8], j: &Jitter, grey: bool, scratch: &mut Scratch) {
    crate::jitter::jitter_with(path, img, j, grey, &mut scratch.float)
}

/// Inverts pixels at or above the midpoint (BYOL's solarize).
pub fn solarize(img: &mut [u8]) {
    for v in img.iter_mut() {
        if *v >= 128 {
            *v = 255 - *v;
        }
    }
}

/// Makes one view: crop + resize into `out`, then flip, colour, (RandAugment,)
/// grey, blur, solarize, with the semantics of `d.implementation`.
pub fn apply_view(
    src: &[u8],
    w: u32,
    h: u32,
    d: &ViewDraw,
    side: u32,
    out: &mut [u8],
    scratch: &mut Scratch,
) -> Result<(), String> {
    check_crop(src, w, h, d.crop)?;
    if side == 0 || out.len() as u64 != u64::from(side) * u64::from(side) * 3 {
        return Err(format!(
            "{} output bytes for a {side}x{side} view",
            out.len()
        ));
    }
    if d.implementation == AugmentImpl::Reference {
        apply_view_reference(src, w, d, side as usize, out, scratch);
        return Ok(());
    }
    // The flip is done by the resize, writing each row mirrored.
    let s = side as usize;
    resize_box_with(
        best_path(),
        src,
        (w, h),
        d.crop,
        (side, side),
        d.flip,
        out,
        scratch,
    )?;
    if d.randaugment.is_empty() {
        match &d.jitter {
            Some(j) => jitter(out, j, d.grey, scratch),
            None if d.grey => grey_u8(out),
            None => {}
        }
    } else {
        // The reference's RandAugment recipe: greyscale after RandAugment.
        if let Some(j) = &d.jitter {
            jitter(out, j, false, scratch);
        }
        randaugment::apply(&d.randaugment, out, s, s, &mut scratch.bytes);
        if d.grey {
            grey_u8(out);
        }
    }
    if let Some(sigma) = d.blur_sigma {
        blur(out, s, sigma, scratch);
    }
    if d.solarize {
        solarize(out);
    }
    Ok(())
}

/// [`apply_view`] for `--augment-impl reference`: float from the resize to the
/// final rounding, in the reference's order (crop, flip, colour, clip, then
/// either RandAugment on uint8 followed by grey, or grey; blur; clip).
fn apply_view_reference(
    src: &[u8],
    w: u32,
    d: &ViewDraw,
    side: usize,
    out: &mut [u8],
    scratch: &mut Scratch,
) {
    let Scratch {
        float,
        float2,
        bytes,
        ..
    } = scratch;
    reference::crop_resize_bicubic(src, w, d.crop, (side, side), d.flip, float, float2);
    match &d.jitter {
        // The jitter clips after each of its ops: its values need no more.
        Some(j) => reference::jitter(float, j, float2),
        None => reference::clip(float),
    }
    if !d.randaugment.is_empty() {
        reference::to_u8_tf(float, out);
        randaugment::apply(&d.randaugment, out, side, side, bytes);
        reference::from_u8(out, float);
    }
    if d.grey {
        reference::grey(float);
    }
    if let Some(sigma) = d.blur_sigma {
        reference::blur(
            float,
            (side, side),
            reference::blur_radius(side),
            sigma,
            float2,
        );
    }
    reference::round_u8(float, out);
    if d.solarize {
        solarize(out);
    }
}
