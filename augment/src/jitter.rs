//! torchvision's colour jitter (brightness, contrast, saturation, hue in a
//! drawn order, clipped to [0, 1] after each; greyscale when asked) in float,
//! on three planes so that every loop runs over contiguous lanes.
//!
//! [`jitter_planar`] is the reference: each op one pass over the whole view.
//! [`jitter_with`] is the same arithmetic, element for element and in the same
//! order, fused over tiles that stay in L1: the ops before contrast in one pass
//! (which also sums the luma for contrast's mean), contrast and the ops after
//! it in a second. Same bytes on every CPU path (no fused multiply-adds; the
//! mean sums eight lanes in the reference's order), tested against the
//! reference.

use crate::params::Jitter;
use crate::simd::{dispatch, greater, lesser, unit, CpuPath};
use crate::tiles::TiledPlanes;

const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// Pixels per tile: three planes of it fill 6 KiB. A multiple of the mean's
/// eight lanes, so a pixel's lane is its index in the view modulo 8.
const TILE: usize = 512;
const _: () = assert!(TILE.is_multiple_of(8), "a tile must start on a lane group");

#[inline(always)]
fn brightness(p: &mut [f32], f: f32) {
    for v in p.iter_mut() {
        *v = unit(*v * f);
    }
}

#[inline(always)]
fn contrast_with_mean(r: &mut [f32], g: &mut [f32], b: &mut [f32], f: f32, mean: f32) {
    let off = (1.0 - f) * mean;
    for p in [r, g, b] {
        for v in p.iter_mut() {
            *v = unit(f * *v + off);
        }
    }
}

/// Adds each pixel's luma to lane `k % 8` of `acc`, `k` its index in the view
/// (tiles start at multiples of 8). Eight independent lanes, each summed in
/// pixel order: the same sums however the loop is vectorised.
#[inline(always)]
fn sum_luma(r: &[f32], g: &[f32], b: &[f32], acc: &mut [f32; 8]) {
    let n = r.len().min(g.len()).min(b.len());
    let whole = n - n % 8;
    let mut lanes = *acc;
    for ((r, g), b) in r[..whole]
        .chunks_exact(8)
        .zip(g[..whole].chunks_exact(8))
        .zip(b[..whole].chunks_exact(8))
    {
        for l in 0..8 {
            lanes[l] += LUMA[0] * r[l] + LUMA[1] * g[l] + LUMA[2] * b[l];
        }
    }
    for k in whole..n {
        lanes[k % 8] += LUMA[0] * r[k] + LUMA[1] * g[k] + LUMA[2] * b[k];
    }
    *acc = lanes;
}

#[inline(always)]
fn mean_of(acc: &[f32; 8], n: usize) -> f32 {
    acc.iter().sum::<f32>() / n.max(1) as f32
}

#[inline(always)]
fn saturation(r: &mut [f32], g: &mut [f32], b: &mut [f32], f: f32) {
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let grey = (1.0 - f) * (LUMA[0] * *r + LUMA[1] * *g + LUMA[2] * *b);
        *r = unit(f * *r + grey);
        *g = unit(f * *g + grey);
        *b = unit(f * *b + grey);
    }
}

/// Rotates hue by `shift` of a turn: RGB -> HSV -> RGB as torchvision does,
/// written with selects and without a division. With d = max - min (= V * S)
/// and k = (n + 6 h) mod 6, the channel with offset n is `max - d * clamp(min(k,
/// 4 - k), 0, 1)`; everything is kept in units of d (6 h d is a difference of
/// two channels plus 0, 2 d or 4 d), where the clamp's bounds are 0 and d.
#[inline(always)]
fn hue(r: &mut [f32], g: &mut [f32], b: &mut [f32], shift: f32) {
    // Hue is periodic: the shift in [-1/2, 1/2] of a turn, so that the
    // rotated angle needs at most one wrap each way.
    let s6 = 6.0 * (shift - shift.round());
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let (rv, gv, bv) = (*r, *g, *b);
        let max = greater(greater(rv, gv), bv);
        let min = lesser(lesser(rv, gv), bv);
        let d = max - min;
        let d6 = 6.0 * d;
        // 6 h d in [-d, 5 d), then rotated: in [-4 d, 8 d), wrapped to [0, 6 d).
        let h = if max == rv {
            gv - bv
        } else if max == gv {
            2.0 * d + (bv - rv)
        } else {
            4.0 * d + (rv - gv)
        };
        let k0 = h + s6 * d;
        let k0 = if k0 < 0.0 { k0 + d6 } else { k0 };
        let k0 = if k0 >= d6 { k0 - d6 } else { k0 };
        let chan = |n: f32| {
            let k = n * d + k0;
            let k = if k >= d6 { k - d6 } else { k };
            max - lesser(greater(lesser(k, 4.0 * d - k), 0.0), d)
        };
        *r = chan(5.0);
        *g = chan(3.0);
        *b = chan(1.0);
    }
}

#[inline(always)]
fn grey(r: &mut [f32], g: &mut [f32], b: &mut [f32]) {
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let y = LUMA[0] * *r + LUMA[1] * *g + LUMA[2] * *b;
        *r = y;
        *g = y;
        *b = y;
    }
}

/// One of the ops other than contrast (0 brightness, 2 saturation, 3 hue).
#[inline(always)]
fn pointwise(op: u8, r: &mut [f32], g: &mut [f32], b: &mut [f32], j: &Jitter) {
    match op {
        0 => {
            brightness(r, j.brightness);
            brightness(g, j.brightness);
            brightness(b, j.brightness);
        }
        2 => saturation(r, g, b, j.saturation),
        _ => hue(r, g, b, j.hue),
    }
}

/// Byte planes of a tile, between the packed pixels and the float planes:
/// the float conversions then run over contiguous lanes.
type BytePlanes = [[u8; TILE]; 3];

#[inline(always)]
fn load(px: &[u8], r: &mut [f32], g: &mut [f32], b: &mut [f32], bytes: &mut BytePlanes) {
    let [r8, g8, b8] = bytes;
    let m = px.len() / 3;
    for (k, p) in px.chunks_exact(3).enumerate().take(TILE) {
        r8[k] = p[0];
        g8[k] = p[1];
        b8[k] = p[2];
    }
    for (f, q) in [(r, &r8[..]), (g, &g8[..]), (b, &b8[..])] {
        for (f, &q) in f.iter_mut().zip(&q[..m.min(TILE)]) {
            *f = q as f32 * (1.0 / 255.0);
        }
    }
}

#[inline(always)]
fn store(r: &[f32], g: &[f32], b: &[f32], px: &mut [u8], bytes: &mut BytePlanes) {
    let [r8, g8, b8] = bytes;
    for (q, f) in [(&mut r8[..], r), (&mut g8[..], g), (&mut b8[..], b)] {
        for (q, &f) in q.iter_mut().zip(f) {
            *q = crate::simd::byte_of(f * 255.0 + 0.5);
        }
    }
    for (k, p) in px.chunks_exact_mut(3).enumerate().take(TILE) {
        p[0] = r8[k];
        p[1] = g8[k];
        p[2] = b8[k];
    }
}

/// The reference: colour distortion of the packed RGB8 `img` in float, each op
/// a pass over the whole view (`planes` is scratch), then greyscale when asked,
/// then one rounding back to u8.
pub fn jitter_planar(img: &mut [u8], j: &Jitter, grey_too: bool, planes: &mut Vec<f32>) {
    let n = img.len() / 3;
    planes.resize(3 * n, 0.0);
    let (r, gb) = planes.split_at_mut(n);
    let (g, b) = gb.split_at_mut(n);
    for (k, p) in img.chunks_exact(3).enumerate() {
        r[k] = p[0] as f32 * (1.0 / 255.0);
        g[k] = p[1] as f32 * (1.0 / 255.0);
        b[k] = p[2] as f32 * (1.0 / 255.0);
    }
    for op in j.order {
        if op == 1 {
            let mut acc = [0f32; 8];
            sum_luma(r, g, b, &mut acc);
            contrast_with_mean(r, g, b, j.contrast, mean_of(&acc, n));
        } else {
            pointwise(op, r, g, b, j);
        }
    }
    if grey_too {
        grey(r, g, b);
    }
    for (k, p) in img.chunks_exact_mut(3).enumerate() {
        p[0] = (r[k] * 255.0 + 0.5) as u8;
        p[1] = (g[k] * 255.0 + 0.5) as u8;
        p[2] = (b[k] * 255.0 + 0.5) as u8;
    }
}

/// [`jitter_planar`]'s result, fused over tiles, on a chosen CPU path
/// (`planes` holds the view between the two passes when ops precede contrast).
pub fn jitter_with(
    path: CpuPath,
    img: &mut [u8],
    j: &Jitter,
    grey_too: bool,
    planes: &mut Vec<f32>,
) {
    dispatch(
        path,
        #[inline(always)]
        || jitter_tiled(img, j, grey_too, planes),
    )
}

#[inline(always)]
fn jitter_tiled(img: &mut [u8], j: &Jitter, grey_too: bool, planes: &mut Vec<f32>) {
    if j.order.iter().filter(|&&op| op == 1).count() > 1 {
        // Not a permutation (the sampler never draws one): the passes below
        // split at a single contrast.
        return jitter_planar(img, j, grey_too, planes);
    }
    let n = img.len() / 3;
    let img = &mut img[..3 * n];
    // A permutation always holds contrast; an order without it runs none,
    // and all its ops after the (skipped) first pass.
    let c = j.order.iter().position(|&op| op == 1);
    let (pre, post) = match c {
        Some(c) => (&j.order[..c], &j.order[c + 1..]),
        None => (&j.order[..0], &j.order[..]),
    };
    let mut bytes: BytePlanes = [[0u8; TILE]; 3];
    // When ops precede contrast, the view waits between the passes in
    // `planes`, else in one tile.
    let mut planes = TiledPlanes::<TILE>::new(planes, n, !pre.is_empty());
    // Pass 1: the ops before contrast, and the luma sum for its mean.
    let mut acc = [0f32; 8];
    if c.is_some() {
        for (i, px) in img.chunks(3 * TILE).enumerate() {
            let (r, g, b) = planes.tile(i, px.len() / 3);
            load(px, r, g, b, &mut bytes);
            for &op in pre {
                pointwise(op, r, g, b, j);
            }
            sum_luma(r, g, b, &mut acc);
        }
    }
    let mean = mean_of(&acc, n);
    // Pass 2: contrast, the ops after it, greyscale, rounding.
    let fresh = !planes.kept();
    for (i, px) in img.chunks_mut(3 * TILE).enumerate() {
        let (r, g, b) = planes.tile(i, px.len() / 3);
        if fresh {
            load(px, r, g, b, &mut bytes);
        }
        if c.is_some() {
            contrast_with_mean(r, g, b, j.contrast, mean);
        }
        for &op in post {
            pointwise(op, r, g, b, j);
        }
        if grey_too {
            grey(r, g, b);
        }
        store(r, g, b, px, &mut bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::available_paths;

    #[test]
    fn planes_holding_nan_give_the_bytes_of_fresh_ones() {
        let img: Vec<u8> = (0..1000 * 3).map(|i| (i * 7919 % 251) as u8).collect();
        for path in available_paths() {
            for order in [[0u8, 1, 2, 3], [2, 3, 1, 0], [1, 0, 3, 2]] {
                let j = Jitter {
                    order,
                    brightness: 1.2,
                    contrast: 0.8,
                    saturation: 1.3,
                    hue: -0.1,
                };
                let (mut a, mut b) = (img.clone(), img.clone());
                jitter_with(path, &mut a, &j, false, &mut Vec::new());
                jitter_with(path, &mut b, &j, false, &mut vec![f32::NAN; 10_000]);
                assert!(a == b, "{order:?}, {path:?}");
            }
        }
    }
}
