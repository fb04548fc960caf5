//! From decoded planes to packed RGB8: chroma upsampled with libjpeg's "fancy"
//! triangle filter (3/4 of the nearer sample, 1/4 of the farther, in each
//! subsampled direction, libjpeg's rounding), then YCbCr -> RGB in libjpeg's
//! 16-bit fixed point (JFIF's BT.601 full-range matrix), so a row comes out
//! as libjpeg and libjpeg-turbo write it with their default settings.

/// A decoded component: `stride` bytes a row, `width` x `height` samples that
/// belong to the image (the rest pads to whole blocks).
pub(super) struct Plane<'a> {
    pub data: &'a [u8],
    pub stride: usize,
    pub width: usize,
    pub height: usize,
}

impl Plane<'_> {
    #[inline(always)]
    fn row(&self, y: usize) -> &[u8] {
        &self.data[y * self.stride..y * self.stride + self.width]
    }
}

// JFIF's coefficients in 16-bit fixed point.
const CR_R: i32 = 91_881; // 1.402
const CB_B: i32 = 116_130; // 1.772
const CR_G: i32 = 46_802; // 0.71414
const CB_G: i32 = 22_554; // 0.34414
const HALF: i32 = 1 << 15;

/// Writes one RGB row from full-width Y, Cb and Cr rows.
#[inline(always)]
fn ycc_row(y: &[u8], cb: &[u8], cr: &[u8], out: &mut [u8]) {
    for (((px, &y), &cb), &cr) in out.chunks_exact_mut(3).zip(y).zip(cb).zip(cr) {
        let (y, cb, cr) = (i32::from(y), i32::from(cb) - 128, i32::from(cr) - 128);
        let r = y + ((CR_R * cr + HALF) >> 16);
        let g = y + ((HALF - CB_G * cb - CR_G * cr) >> 16);
        let b = y + ((CB_B * cb + HALF) >> 16);
        px[0] = r.clamp(0, 255) as u8;
        px[1] = g.clamp(0, 255) as u8;
        px[2] = b.clamp(0, 255) as u8;
    }
}

/// Doubles a row horizontally: each sample 3/4 itself and 1/4 its neighbour on
/// that side, `bias` added on the left output and on the right, edges repeated.
/// `sum` holds samples times a scale (1 alone, 4 after a vertical pass) and the
/// result is shifted right by `shift` (2 or 4, a division by 4 times the scale).
/// `out` holds 2 * `sum.len()` or one less.
#[inline(always)]
fn double_row(sum: &[u16], out: &mut [u8], shift: u32, bias: (u16, u16)) {
    let n = sum.len();
    if n == 0 {
        return;
    }
    let edge = |i: usize, o: usize, left: u16, right: u16, out: &mut [u8]| {
        let c = 3 * sum[i];
        out[o] = ((c + left + bias.0) >> shift) as u8;
        if let Some(v) = out.get_mut(o + 1) {
            *v = ((c + right + bias.1) >> shift) as u8;
        }
    };
    if n == 1 {
        edge(0, 0, sum[0], sum[0], out);
        return;
    }
    edge(0, 0, sum[0], sum[1], out);
    // The interior, as three shifted slices: vectorises.
    let inner = out[2..2 * n - 2].chunks_exact_mut(2);
    for (((pair, &l), &c), &r) in inner.zip(&sum[..n - 2]).zip(&sum[1..n - 1]).zip(&sum[2..]) {
        let c = 3 * c;
        pair[0] = ((c + l + bias.0) >> shift) as u8;
        pair[1] = ((c + r + bias.1) >> shift) as u8;
    }
    edge(n - 1, 2 * n - 2, sum[n - 2], sum[n - 1], out);
}

/// Reused rows of the conversion.
#[derive(Default)]
pub(super) struct Rows {
    sum_b: Vec<u16>,
    sum_r: Vec<u16>,
    cb: Vec<u8>,
    cr: Vec<u8>,
}

/// Writes the `width` x `height` RGB image of Y, Cb, Cr planes subsampled by
/// (`sub_x`, `sub_y`) ∈ {(1, 1), (2, 1), (2, 2)} into `out`, chroma upsampled
/// as libjpeg-turbo does (its triangle filter where a chroma row has over two
/// samples).
#[inline(always)]
pub(super) fn ycc_to_rgb(
    planes: [Plane<'_>; 3],
    sub: (usize, usize),
    width: usize,
    height: usize,
    rows: &mut Rows,
    out: &mut [u8],
) {
    let [yp, bp, rp] = planes;
    let cw = bp.width;
    for sum in [&mut rows.sum_b, &mut rows.sum_r] {
        sum.resize(cw, 0);
    }
    rows.cb.resize(width, 0);
    rows.cr.resize(width, 0);
    for (y, line) in out.chunks_exact_mut(3 * width).take(height).enumerate() {
        let luma = yp.row(y);
        match sub {
            (1, 1) => ycc_row(luma, bp.row(y), rp.row(y), line),
            // libjpeg-turbo fills chroma rows of one or two samples by
            // repeating each sample, without the triangle filter.
            _ if cw <= 2 => {
                for (p, up) in [(&bp, &mut rows.cb), (&rp, &mut rows.cr)] {
                    let src = p.row(y / sub.1);
                    for (x, u) in up.iter_mut().enumerate() {
                        *u = src[x / 2];
                    }
                }
                ycc_row(luma, &rows.cb, &rows.cr, line);
            }
            (2, 1) => {
                for (p, sum, up) in [
                    (&bp, &mut rows.sum_b, &mut rows.cb),
                    (&rp, &mut rows.sum_r, &mut rows.cr),
                ] {
                    for (s, &v) in sum.iter_mut().zip(p.row(y)) {
                        *s = u16::from(v);
                    }
                    double_row(sum, up, 2, (1, 2));
                }
                ycc_row(luma, &rows.cb, &rows.cr, line);
            }
            _ => {
                // The nearer chroma row and the one beyond it on this row's side.
                let near = y / 2;
                let far = if y % 2 == 0 {
                    near.saturating_sub(1)
                } else {
                    (near + 1).min(bp.height - 1)
                };
                for (p, sum, up) in [
                    (&bp, &mut rows.sum_b, &mut rows.cb),
                    (&rp, &mut rows.sum_r, &mut rows.cr),
                ] {
                    for ((s, &a), &b) in sum.iter_mut().zip(p.row(near)).zip(p.row(far)) {
                        *s = 3 * u16::from(a) + u16::from(b);
                    }
                    double_row(sum, up, 4, (8, 7));
                }
                ycc_row(luma, &rows.cb, &rows.cr, line);
            }
        }
    }
}

/// Copies a greyscale plane's image rows out as RGB.
#[inline(always)]
pub(super) fn grey_to_rgb(p: Plane<'_>, out: &mut [u8]) {
    for (y, line) in out.chunks_exact_mut(3 * p.width).take(p.height).enumerate() {
        for (px, &v) in line.chunks_exact_mut(3).zip(p.row(y)) {
            px.fill(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matrix_matches_jfif_within_rounding() {
        for (y, cb, cr) in [
            (0u8, 0u8, 0u8),
            (255, 255, 255),
            (128, 128, 128),
            (76, 85, 255),
            (150, 44, 21),
            (29, 255, 107),
        ] {
            let mut px = [0u8; 3];
            ycc_row(&[y], &[cb], &[cr], &mut px);
            let (yf, bf, rf) = (f64::from(y), f64::from(cb) - 128.0, f64::from(cr) - 128.0);
            let want = [
                yf + 1.402 * rf,
                yf - 0.344136 * bf - 0.714136 * rf,
                yf + 1.772 * bf,
            ];
            for (o, w) in px.iter().zip(want) {
                assert!(
                    (f64::from(*o) - w.clamp(0.0, 255.0)).abs() <= 0.51,
                    "{y} {cb} {cr}: {px:?} {want:?}"
                );
            }
        }
    }

    #[test]
    fn doubling_keeps_flat_rows_flat_and_weights_three_to_one() {
        let mut out = [0u8; 8];
        double_row(&[7, 7, 7, 7], &mut out, 2, (1, 2));
        assert_eq!(out, [7; 8]);
        double_row(&[0, 100, 0, 0], &mut out, 2, (1, 2));
        // Around the 100: 3/4 of it beside, 1/4 of it one output further.
        assert_eq!(out, [0, 25, 75, 75, 25, 0, 0, 0]);
        // An odd output width leaves the last sample's right half out.
        let mut odd = [0u8; 3];
        double_row(&[40, 80], &mut odd, 2, (1, 2));
        assert_eq!(odd, [40, 50, 70]);
    }
}
