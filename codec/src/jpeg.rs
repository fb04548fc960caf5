//! A decoder for the JPEGs that make up nearly all of a photo dataset: baseline
//! (sequential Huffman) 8-bit greyscale, or YCbCr 4:4:4, 4:2:2 or 4:2:0 in one
//! interleaved scan, with or without restart markers. It decodes as libjpeg and
//! libjpeg-turbo do by default (islow inverse DCT, fancy upsampling, JFIF's
//! matrix in their fixed point). Anything else, and any file it finds malformed,
//! it leaves to the general decoder by answering `None`: progressive and
//! arithmetic coding, 12-bit samples, several scans, RGB or CMYK, other
//! sampling, truncated or corrupt data.
//!
//! It exists for speed: Huffman decoding is most of a photo's decode time, and
//! this one reads eight bytes at a time and decodes most coefficients with one
//! table lookup.

mod color;
mod header;
mod huffman;
mod idct;
mod idct_avx2;

use crate::cpu::{dispatch, CpuPath};
use color::{Plane, Rows};
use header::Header;
use huffman::{Bits, HuffTable, Tables};

/// Buffers reused from image to image: the decoded planes and the rows of the
/// colour conversion.
#[derive(Default)]
pub(crate) struct JpegScratch {
    tables: Tables,
    planes: [Vec<u8>; 3],
    rows: Rows,
}

/// The largest image (in pixels) this decoder takes (8192 x 8192); a larger
/// one goes to the general decoder with its own limits.
const MAX_PIXELS: usize = 1 << 26;

/// Planes larger than this (bytes) are not kept for the next image.
const KEEP_BYTES: usize = 1 << 24;

impl JpegScratch {
    /// Frees the planes after an unusually large image, so that one such image
    /// does not hold its memory in every worker for the rest of the run.
    pub(crate) fn release_if_huge(&mut self) {
        for p in &mut self.planes {
            if p.capacity() > KEEP_BYTES {
                *p = Vec::new();
            }
        }
    }
}

/// Decodes `data` into `out` (resized to width x height x 3, packed RGB8) and
/// returns (width, height), or `None` (with `out` in an unspecified state) where
/// the general decoder should take it.
pub(crate) fn decode_baseline(
    path: CpuPath,
    data: &[u8],
    out: &mut Vec<u8>,
    scratch: &mut JpegScratch,
) -> Option<(u32, u32)> {
    let h = header::parse(data, &mut scratch.tables)?;
    if h.width * h.height > MAX_PIXELS || blocks(&h) > 8 * data.len().saturating_sub(h.data_start) {
        // Too large, or more blocks than the data has room for (each takes a
        // bit at least): a header that should not size the buffers.
        return None;
    }
    out.resize(h.width * h.height * 3, 0);
    let ok = dispatch(
        path,
        #[inline(always)]
        || decode_scan(path, &h, data, out, scratch),
    );
    ok.then_some((h.width as u32, h.height as u32))
}

/// The largest sampling factors (hmax, vmax) and the MCUs across and down.
fn mcu_grid(h: &Header) -> (usize, usize, usize, usize) {
    let hmax = h.comps.iter().map(|c| c.h).max().unwrap_or(1);
    let vmax = h.comps.iter().map(|c| c.v).max().unwrap_or(1);
    let (mcux, mcuy) = (h.width.div_ceil(8 * hmax), h.height.div_ceil(8 * vmax));
    (hmax, vmax, mcux, mcuy)
}

/// The blocks of the scan.
fn blocks(h: &Header) -> usize {
    let (_, _, mcux, mcuy) = mcu_grid(h);
    mcux * mcuy * h.comps.iter().map(|c| c.h * c.v).sum::<usize>()
}

/// One component's layout in its plane, and its tables.
struct Layout<'a> {
    h: usize,
    v: usize,
    stride: usize,
    /// Samples of the image (not padding) across and down.
    width: usize,
    height: usize,
    dc: &'a HuffTable,
    ac: &'a HuffTable,
    q: &'a [u16; 64],
}

#[inline(always)]
fn decode_scan(
    path: CpuPath,
    h: &Header,
    data: &[u8],
    out: &mut [u8],
    scratch: &mut JpegScratch,
) -> bool {
    let (hmax, vmax, mcux, mcuy) = mcu_grid(h);
    let mut layouts = Vec::with_capacity(h.comps.len());
    for c in &h.comps {
        let (dc, ac) = (&*scratch.tables.dc[c.td], &*scratch.tables.ac[c.ta]);
        layouts.push(Layout {
            h: c.h,
            v: c.v,
            stride: mcux * c.h * 8,
            width: (h.width * c.h).div_ceil(hmax),
            height: (h.height * c.v).div_ceil(vmax),
            dc,
            ac,
            q: &h.qt[c.tq],
        });
    }
    for (plane, l) in scratch.planes.iter_mut().zip(&layouts) {
        plane.resize(l.stride * mcuy * l.v * 8, 0);
    }
    let mut bits = Bits::new(data, h.data_start);
    let mut preds = [0i32; 3];
    let mut block = [0i16; 64];
    let mut marker = 0u8;
    for mcu in 0..mcux * mcuy {
        // A row of MCUs that needed bits past the data: truncated or corrupt,
        // and no use decoding the rest from zeros.
        if mcu % mcux == 0 && !bits.all_real() {
            return false;
        }
        if h.restart > 0 && mcu > 0 && mcu % h.restart == 0 {
            if !bits.restart(marker) {
                return false;
            }
            marker = (marker + 1) & 7;
            preds = [0; 3];
        }
        let (mx, my) = (mcu % mcux, mcu / mcux);
        for ((l, plane), pred) in layouts.iter().zip(&mut scratch.planes).zip(&mut preds) {
            for by in 0..l.v {
                for bx in 0..l.h {
                    let Some(any) = bits.block(l.dc, l.ac, pred, &mut block) else {
                        return false;
                    };
                    let (x, y) = ((mx * l.h + bx) * 8, (my * l.v + by) * 8);
                    idct_avx2::idct_block(
                        path,
                        &block,
                        l.q,
                        !any,
                        &mut plane[y * l.stride + x..],
                        l.stride,
                    );
                    block = [0; 64];
                }
            }
        }
    }
    if !bits.all_real() {
        return false;
    }
    let plane = |i: usize| Plane {
        data: &scratch.planes[i],
        stride: layouts[i].stride,
        width: layouts[i].width,
        height: layouts[i].height,
    };
    if layouts.len() == 1 {
        color::grey_to_rgb(plane(0), out);
    } else {
        let sub = (hmax / layouts[1].h, vmax / layouts[1].v);
        let planes = [plane(0), plane(1), plane(2)];
        color::ycc_to_rgb(planes, sub, h.width, h.height, &mut scratch.rows, out);
    }
    true
}

#[cfg(test)]
mod tests;
