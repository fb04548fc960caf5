//! RandAugment as the reference calls it: the TF AutoAugment op set of
//! EfficientNet's `autoaugment.py` (`distort_image_with_randaugment`), on uint8
//! images. Each layer picks one of 16 operations uniformly and applies it at the
//! fixed magnitude (no per-op probability: the reference draws one and drops
//! it); rotations, shears and translations take a random sign; geometric ops
//! sample nearest and fill with grey 128.
//!
//! Faithful to the reference where it is surprising, since the paper's numbers
//! were made with it: `Contrast` blends towards a constant grey equal to the
//! pixel count / 256 (the histogram's sum, not its mean), clipped to 255;
//! `Posterize` keeps `int(4 m / 10)` bits (2 at magnitude 7). Translations (100
//! px at magnitude 10) and cutout (40 px) are the reference's at a 224 px view
//! and scale with the view side elsewhere, so that a 64 px view is not wiped out.

use serde::{Deserialize, Serialize};

use crate::rng::ViewRng;
use crate::simd::byte_of;

/// RandAugment settings: `layers` operations per view at `magnitude` (0..=10).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandAugment {
    pub layers: u32,
    pub magnitude: f64,
}

impl RandAugment {
    /// The reference's `distort_image_with_randaugment(image, 2, 7)`.
    pub const REFERENCE: RandAugment = RandAugment {
        layers: 2,
        magnitude: 7.0,
    };
    /// The most layers a view can carry.
    pub const MAX_LAYERS: u32 = 8;

    /// Checks the settings, naming what is wrong.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=Self::MAX_LAYERS).contains(&self.layers) {
            return Err(format!(
                "{} layers is not in 1..={}",
                self.layers,
                Self::MAX_LAYERS
            ));
        }
        if !(0.0..=MAX_LEVEL).contains(&self.magnitude) {
            return Err(format!(
                "magnitude {} is not in 0..={MAX_LEVEL}",
                self.magnitude
            ));
        }
        Ok(())
    }
}

/// Parses `LAYERS,MAGNITUDE` (e.g. `2,7`) or `off`.
pub fn parse_randaugment(s: &str) -> Result<Option<RandAugment>, String> {
    if s == "off" || s == "none" {
        return Ok(None);
    }
    let (l, m) = s
        .split_once(',')
        .ok_or_else(|| format!("{s:?} is not LAYERS,MAGNITUDE (e.g. 2,7) or off"))?;
    let ra = RandAugment {
        layers: l
            .trim()
            .parse()
            .map_err(|_| format!("{l:?} is not a layer count"))?,
        magnitude: m
            .trim()
            .parse()
            .map_err(|_| format!("{m:?} is not a magnitude"))?,
    };
    ra.check()?;
    Ok(Some(ra))
}

const MAX_LEVEL: f64 = 10.0;
/// The view side the reference's pixel constants are meant for.
const REFERENCE_SIDE: f64 = 224.0;
const TRANSLATE_CONST: f64 = 100.0;
const CUTOUT_CONST: f64 = 40.0;
/// Fill of pixels that geometric ops and cutout uncover.
pub const REPLACE: u8 = 128;

/// One drawn operation with its magnitude-mapped argument.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum RaOp {
    AutoContrast,
    Equalize,
    Invert,
    /// Degrees, signed.
    Rotate(f32),
    /// Bits kept.
    Posterize(u8),
    /// Threshold (pixels below it are kept); 256 keeps all.
    Solarize(u16),
    Color(f32),
    Contrast(f32),
    Brightness(f32),
    Sharpness(f32),
    ShearX(f32),
    ShearY(f32),
    /// Pixels at a 224 px view, signed (scaled to the view side when applied).
    TranslateX(f64),
    TranslateY(f64),
    /// Half-side at a 224 px view, and the centre as fractions of the height
    /// and width.
    Cutout {
        pad: f64,
        cy: f64,
        cx: f64,
    },
    /// Added to pixels below 128.
    SolarizeAdd(u8),
}

/// The operations of one view, in order.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct RaOps {
    ops: [Option<RaOp>; RandAugment::MAX_LAYERS as usize],
}

impl RaOps {
    pub fn iter(&self) -> impl Iterator<Item = &RaOp> {
        self.ops.iter().flatten()
    }

    pub fn is_empty(&self) -> bool {
        self.ops[0].is_none()
    }

    /// Operations given explicitly (tests, fixtures). At most `MAX_LAYERS`.
    pub fn from_ops(list: &[RaOp]) -> RaOps {
        let mut r = RaOps::default();
        for (slot, op) in r.ops.iter_mut().zip(list) {
            *slot = Some(*op);
        }
        r
    }
}

/// The reference's operation list, in its order (the index drawn picks one).
pub const OP_NAMES: [&str; 16] = [
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "Posterize",
    "Solarize",
    "Color",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Cutout",
    "SolarizeAdd",
];

/// Operation `index` of [`OP_NAMES`] at magnitude `m`; `positive` is the sign
/// of signed arguments; `centre` the cutout centre as fractions.
pub fn op_at(index: usize, m: f64, positive: bool, centre: (f64, f64)) -> RaOp {
    let level = m / MAX_LEVEL;
    let sign = |v: f64| if positive { v } else { -v };
    let enhance = (level * 1.8 + 0.1) as f32;
    match index {
        0 => RaOp::AutoContrast,
        1 => RaOp::Equalize,
        2 => RaOp::Invert,
        3 => RaOp::Rotate(sign(level * 30.0) as f32),
        4 => RaOp::Posterize((level * 4.0) as u8),
        5 => RaOp::Solarize((level * 256.0) as u16),
        6 => RaOp::Color(enhance),
        7 => RaOp::Contrast(enhance),
        8 => RaOp::Brightness(enhance),
        9 => RaOp::Sharpness(enhance),
        10 => RaOp::ShearX(sign(level * 0.3) as f32),
        11 => RaOp::ShearY(sign(level * 0.3) as f32),
        12 => RaOp::TranslateX(sign(level * TRANSLATE_CONST)),
        13 => RaOp::TranslateY(sign(level * TRANSLATE_CONST)),
        14 => RaOp::Cutout {
            pad: level * CUTOUT_CONST,
            cy: centre.0,
            cx: centre.1,
        },
        _ => RaOp::SolarizeAdd((level * 110.0) as u8),
    }
}

/// Draws the operations of one view.
pub fn draw(rng: &mut ViewRng, ra: &RandAugment) -> RaOps {
    let mut r = RaOps::default();
    for slot in r.ops.iter_mut().take(ra.layers as usize) {
        let index = rng.below(OP_NAMES.len() as u64) as usize;
        let positive = rng.bernoulli(0.5);
        let centre = (rng.unit(), rng.unit());
        *slot = Some(op_at(index, ra.magnitude, positive, centre));
    }
    r
}

/// Applies `ops` in order to the `w` x `h` RGB8 `img`; `tmp` is scratch.
pub fn apply(ops: &RaOps, img: &mut [u8], w: usize, h: usize, tmp: &mut Vec<u8>) {
    for op in ops.iter() {
        apply_op(op, img, w, h, tmp);
    }
}

/// Applies one operation in place.
pub fn apply_op(op: &RaOp, img: &mut [u8], w: usize, h: usize, tmp: &mut Vec<u8>) {
    apply_op_with(crate::simd::best_path(), op, img, w, h, tmp)
}

/// [`apply_op`] on a chosen CPU path (every path gives the same bytes).
pub fn apply_op_with(
    path: crate::simd::CpuPath,
    op: &RaOp,
    img: &mut [u8],
    w: usize,
    h: usize,
    tmp: &mut Vec<u8>,
) {
    crate::simd::dispatch(
        path,
        #[inline(always)]
        || apply_op_impl(op, img, w, h, tmp),
    )
}

#[inline(always)]
fn apply_op_impl(op: &RaOp, img: &mut [u8], w: usize, h: usize, tmp: &mut Vec<u8>) {
    let scale = |px: f64| px * ((w.min(h)) as f64 / REFERENCE_SIDE);
    match *op {
        RaOp::AutoContrast => autocontrast(img),
        RaOp::Equalize => equalize(img),
        RaOp::Invert => img.iter_mut().for_each(|v| *v = 255 - *v),
        RaOp::Rotate(deg) => rotate(img, w, h, deg, tmp),
        RaOp::Posterize(bits) => {
            let shift = 8u32.saturating_sub(bits as u32);
            img.iter_mut()
                .for_each(|v| *v = v.checked_shr(shift).map_or(0, |x| x << shift));
        }
        RaOp::Solarize(t) => img
            .iter_mut()
            .filter(|v| (**v as u16) >= t)
            .for_each(|v| *v = 255 - *v),
        RaOp::SolarizeAdd(a) => img
            .iter_mut()
            .filter(|v| **v < 128)
            .for_each(|v| *v = v.saturating_add(a)),
        RaOp::Color(f) => {
            tmp.clear();
            tmp.extend_from_slice(img);
            grey_u8_tf(tmp);
            blend(tmp, img, f);
        }
        RaOp::Contrast(f) => {
            // The reference's grey level: the histogram's sum over 256.
            let mean = ((w * h) as f32 / 256.0).clamp(0.0, 255.0) as u8;
            tmp.clear();
            tmp.resize(img.len(), mean);
            blend(tmp, img, f);
        }
        RaOp::Brightness(f) => {
            tmp.clear();
            tmp.resize(img.len(), 0);
            blend(tmp, img, f);
        }
        RaOp::Sharpness(f) => {
            smooth(img, w, h, tmp);
            blend(tmp, img, f);
        }
        RaOp::ShearX(s) => affine(img, w, h, [1.0, s, 0.0, 0.0, 1.0, 0.0], tmp),
        RaOp::ShearY(s) => affine(img, w, h, [1.0, 0.0, 0.0, s, 1.0, 0.0], tmp),
        RaOp::TranslateX(px) => affine(img, w, h, [1.0, 0.0, scale(px) as f32, 0.0, 1.0, 0.0], tmp),
        RaOp::TranslateY(px) => affine(img, w, h, [1.0, 0.0, 0.0, 0.0, 1.0, scale(px) as f32], tmp),
        RaOp::Cutout { pad, cy, cx } => {
            let pad = scale(pad) as usize;
            let cy = ((cy * h as f64) as usize).min(h - 1);
            let cx = ((cx * w as f64) as usize).min(w - 1);
            let (y0, y1) = (cy.saturating_sub(pad), (cy + pad).min(h));
            let (x0, x1) = (cx.saturating_sub(pad), (cx + pad).min(w));
            for y in y0..y1 {
                img[(y * w + x0) * 3..(y * w + x1) * 3].fill(REPLACE);
            }
        }
    }
}

/// TF's `blend(degenerate, image, factor)`, written into `image`: float
/// interpolation, truncated to uint8, clipped only when extrapolating.
#[inline(always)]
fn blend(degenerate: &[u8], img: &mut [u8], f: f32) {
    if f == 0.0 {
        img.copy_from_slice(degenerate);
        return;
    }
    if f == 1.0 {
        return;
    }
    for (v, &d) in img.iter_mut().zip(degenerate) {
        let d = d as f32;
        let t = d + f * (*v as f32 - d);
        *v = byte_of(t.clamp(0.0, 255.0));
    }
}

/// `rgb_to_grayscale` then back to three channels, on uint8 the TF way:
/// to float in [0, 1], weights 0.2989 / 0.5870 / 0.1140, back with x 255.5
/// and truncation.
#[inline(always)]
pub fn grey_u8_tf(img: &mut [u8]) {
    const S: f32 = 1.0 / 255.0;
    for p in img.chunks_exact_mut(3) {
        let g = p[0] as f32 * S * 0.2989 + p[1] as f32 * S * 0.5870 + p[2] as f32 * S * 0.1140;
        p.fill(byte_of(g * 255.5));
    }
}

#[inline(always)]
fn autocontrast(img: &mut [u8]) {
    for c in 0..3 {
        let (mut lo, mut hi) = (255u8, 0u8);
        for p in img.chunks_exact(3) {
            lo = lo.min(p[c]);
            hi = hi.max(p[c]);
        }
        if hi <= lo {
            continue;
        }
        let scale = 255.0 / (hi as f32 - lo as f32);
        let offset = -(lo as f32) * scale;
        for p in img.chunks_exact_mut(3) {
            p[c] = byte_of((p[c] as f32 * scale + offset).clamp(0.0, 255.0));
        }
    }
}

#[inline(always)]
fn equalize(img: &mut [u8]) {
    for c in 0..3 {
        let mut hist = [0i64; 256];
        for p in img.chunks_exact(3) {
            hist[p[c] as usize] += 1;
        }
        let total: i64 = hist.iter().sum();
        let last = hist.iter().rev().find(|&&n| n != 0).copied().unwrap_or(0);
        let step = (total - last) / 255;
        if step == 0 {
            continue;
        }
        let mut lut = [0u8; 256];
        let mut cum = 0i64;
        for i in 0..255 {
            cum += hist[i];
            lut[i + 1] = ((cum + step / 2) / step).clamp(0, 255) as u8;
        }
        for p in img.chunks_exact_mut(3) {
            p[c] = lut[p[c] as usize];
        }
    }
}

/// The reference's SMOOTH kernel (1 1 1 / 1 5 1 / 1 1 1, / 13) over the
/// interior, truncated to uint8; the border keeps the original pixels. Each
/// pixel sums its nine taps in row-major order; whole rows at a time.
#[inline(always)]
fn smooth(img: &[u8], w: usize, h: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(img);
    if w < 3 || h < 3 {
        return;
    }
    let k1 = 1.0f32 / 13.0;
    let k5 = 5.0f32 / 13.0;
    let n = (w - 2) * 3;
    // Every pixel as float once, not once per tap.
    let f: Vec<f32> = img.iter().map(|&v| v as f32).collect();
    let mut acc = vec![0f32; n];
    for y in 1..h - 1 {
        acc.fill(0.0);
        for dy in 0..3 {
            let line = &f[(y + dy - 1) * w * 3..(y + dy) * w * 3];
            for dx in 0..3 {
                let k = if dy == 1 && dx == 1 { k5 } else { k1 };
                for (a, &v) in acc.iter_mut().zip(&line[dx * 3..dx * 3 + n]) {
                    *a += v * k;
                }
            }
        }
        for (o, &a) in out[(y * w + 1) * 3..(y * w + 1) * 3 + n]
            .iter_mut()
            .zip(&acc)
        {
            *o = byte_of(a.clamp(0.0, 255.0));
        }
    }
}

/// Rotation by `deg` degrees about the centre, as TF's `angles_to_projective_transforms`.
#[inline(always)]
fn rotate(img: &mut [u8], w: usize, h: usize, deg: f32, tmp: &mut Vec<u8>) {
    let rad = (deg as f64 * (std::f64::consts::PI / 180.0)) as f32;
    let (c, s) = (rad.cos(), rad.sin());
    let (wm, hm) = ((w - 1) as f32, (h - 1) as f32);
    let xo = (wm - (c * wm - s * hm)) / 2.0;
    let yo = (hm - (s * wm + c * hm)) / 2.0;
    affine(img, w, h, [c, -s, xo, s, c, yo], tmp);
}

/// Projective transform without perspective: output pixel (x, y) reads input
/// (a0 x + a1 y + a2, b0 x + b1 y + b2), rounded half away from zero; outside
/// the image it is [`REPLACE`].
#[inline(always)]
fn affine(img: &mut [u8], w: usize, h: usize, t: [f32; 6], tmp: &mut Vec<u8>) {
    tmp.clear();
    tmp.extend_from_slice(img);
    for y in 0..h {
        for x in 0..w {
            let (xf, yf) = (x as f32, y as f32);
            let ix = (t[0] * xf + t[1] * yf + t[2]).round();
            let iy = (t[3] * xf + t[4] * yf + t[5]).round();
            let o = (y * w + x) * 3;
            if ix >= 0.0 && iy >= 0.0 && (ix as usize) < w && (iy as usize) < h {
                let i = (iy as usize * w + ix as usize) * 3;
                img[o..o + 3].copy_from_slice(&tmp[i..i + 3]);
            } else {
                img[o..o + 3].fill(REPLACE);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magnitude_seven_maps_to_the_reference_arguments() {
        let m = 7.0;
        assert_eq!(op_at(3, m, false, (0.0, 0.0)), RaOp::Rotate(-21.0));
        assert_eq!(op_at(4, m, true, (0.0, 0.0)), RaOp::Posterize(2));
        assert_eq!(op_at(5, m, true, (0.0, 0.0)), RaOp::Solarize(179));
        assert_eq!(op_at(6, m, true, (0.0, 0.0)), RaOp::Color(1.36));
        assert_eq!(op_at(10, m, true, (0.0, 0.0)), RaOp::ShearX(0.21));
        assert_eq!(op_at(12, m, false, (0.0, 0.0)), RaOp::TranslateX(-70.0));
        assert_eq!(op_at(15, m, true, (0.0, 0.0)), RaOp::SolarizeAdd(77));
        match op_at(14, m, true, (0.5, 0.5)) {
            RaOp::Cutout { pad, .. } => assert_eq!(pad as usize, 28),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn draws_cover_every_op_and_both_signs() {
        let ra = RandAugment::REFERENCE;
        let mut seen = [0u32; 16];
        let (mut pos, mut neg) = (0, 0);
        for i in 0..4000 {
            let mut rng = ViewRng::new(3, 0, i, 0);
            let ops = draw(&mut rng, &ra);
            assert_eq!(ops.iter().count(), 2);
            for op in ops.iter() {
                let debug = format!("{op:?}");
                let name: String = debug.chars().take_while(|c| c.is_alphanumeric()).collect();
                let k = OP_NAMES
                    .iter()
                    .position(|n| *n == name)
                    .expect("a known op");
                seen[k] += 1;
                if let RaOp::Rotate(d) = op {
                    if *d > 0.0 {
                        pos += 1
                    } else {
                        neg += 1
                    }
                }
            }
        }
        // 8000 draws over 16 ops: 500 each, sd ~22.
        for (k, n) in seen.iter().enumerate() {
            assert!((400..600).contains(n), "{} drawn {n} times", OP_NAMES[k]);
        }
        assert!(pos > 180 && neg > 180, "rotation signs {pos} / {neg}");
    }

    #[test]
    fn parse_accepts_layers_and_magnitude() {
        assert_eq!(
            parse_randaugment("2,7").unwrap(),
            Some(RandAugment::REFERENCE)
        );
        assert_eq!(parse_randaugment("off").unwrap(), None);
        assert!(parse_randaugment("0,7").is_err());
        assert!(parse_randaugment("2,11").is_err());
        assert!(parse_randaugment("2").is_err());
    }
}
