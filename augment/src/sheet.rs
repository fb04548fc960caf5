//! The contact sheet of `fnc-augment preview`: one row per image, the original
//! then its views, each under a small label.

use std::sync::Arc;

use fnc_formats::SplitReader;
use rayon::prelude::*;

use crate::decode::decode_into;
use crate::engine::{make_views, EngineConfig};
use crate::error::AugmentError;
use crate::ops::{resize_box, Scratch};
use crate::params::CropBox;
use crate::sampler::Sampler;

const LABEL_H: u32 = 14;
/// The largest sheet drawn (RGB bytes).
const MAX_SHEET_BYTES: u64 = 1 << 30;
const GAP: u32 = 4;

/// 3x5 glyphs, one row per u8 (3 low bits, left = 4).
fn glyph(c: char) -> [u8; 5] {
    match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        'o' => [0, 7, 5, 5, 7],
        'r' => [0, 7, 4, 4, 4],
        'i' => [2, 0, 2, 2, 2],
        'g' => [7, 5, 7, 1, 7],
        'm' => [0, 7, 7, 5, 5],
        's' => [0, 7, 6, 3, 7],
        'c' => [0, 7, 4, 4, 7],
        'l' => [4, 4, 4, 4, 7],
        _ => [0; 5],
    }
}

fn draw_text(img: &mut image::RgbImage, x0: u32, y0: u32, text: &str) {
    let scale = 2;
    for (k, c) in text.chars().enumerate() {
        let g = glyph(c);
        for (row, bits) in g.iter().enumerate() {
            for col in 0..3 {
                if bits & (4 >> col) != 0 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let x = x0 + (k as u32 * 4 + col) * scale + dx;
                            let y = y0 + row as u32 * scale + dy;
                            if x < img.width() && y < img.height() {
                                img.put_pixel(x, y, image::Rgb([255, 255, 255]));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One row's pictures: the fitted original and the views.
struct SheetRow {
    orig: Vec<u8>,
    ow: u32,
    oh: u32,
    views: Vec<Vec<u8>>,
    _label: u32,
}

/// Renders the sheet for the first `images` records of epoch 0's order.
pub fn contact_sheet(
    split: Arc<SplitReader>,
    cfg: &EngineConfig,
    images: usize,
) -> Result<image::RgbImage, AugmentError> {
    if images == 0 {
        return Err(AugmentError::Config {
            flag: "--images",
            detail: "0 rows make no sheet; use at least 1".into(),
        });
    }
    let mut sampler = Sampler::new(split.len(), cfg.seed(), 0, 1);
    let n = images.min(usize::try_from(split.len()).unwrap_or(usize::MAX));
    let (epoch, indices) = sampler
        .next_batch(n as u64)
        .ok_or_else(|| AugmentError::Config {
            flag: "--split",
            detail: format!("split {} has no records", split.name()),
        })?;
    let v = cfg.views();
    let cell = (0..v).map(|k| cfg.view_side(k)).max().unwrap_or(224);
    let cols = v as u32 + 1;
    let (cw, ch) = (cell + GAP, cell + LABEL_H + GAP);
    let (sw, sh) = (
        u64::from(cols) * u64::from(cw) + u64::from(GAP),
        n as u64 * u64::from(ch) + u64::from(GAP),
    );
    if sw * sh * 3 > MAX_SHEET_BYTES {
        return Err(AugmentError::Config {
            flag: "--images",
            detail: format!(
                "{n} rows of {cols} cells of {cell} px make a {sw}x{sh} sheet, larger than {} MiB; \
                 use fewer --images, --support or a smaller --size",
                MAX_SHEET_BYTES >> 20
            ),
        });
    }
    // Both sides fit in u32: each is below MAX_SHEET_BYTES.
    let mut sheet = image::RgbImage::from_pixel(sw as u32, sh as u32, image::Rgb([32, 32, 32]));
    let rows: Vec<Result<SheetRow, AugmentError>> = indices
        .par_iter()
        .map(|&idx| {
            let mut views: Vec<Vec<u8>> = (0..v)
                .map(|k| vec![0u8; (cfg.view_side(k).pow(2) * 3) as usize])
                .collect();
            let mut slots: Vec<&mut [u8]> = views.iter_mut().map(|b| b.as_mut_slice()).collect();
            let label = make_views(&split, cfg, epoch, idx, &mut slots)?;
            // The original, fitted into a cell, aspect kept.
            let rec = split.get(idx)?;
            let mut buf = Vec::new();
            let (w, h) = decode_into(&rec, &mut buf).map_err(AugmentError::Format)?;
            let s = cell as f64 / w.max(h) as f64;
            let (ow, oh) = (
                ((w as f64 * s).round() as u32).max(1),
                ((h as f64 * s).round() as u32).max(1),
            );
            let mut orig = vec![0u8; (ow * oh * 3) as usize];
            resize_box(
                &buf,
                (w, h),
                CropBox { x: 0, y: 0, w, h },
                (ow, oh),
                &mut orig,
                &mut Scratch::default(),
            )
            .map_err(AugmentError::Format)?;
            Ok(SheetRow {
                orig,
                ow,
                oh,
                views,
                _label: label,
            })
        })
        .collect();
    for (r, row) in rows.into_iter().enumerate() {
        let SheetRow {
            orig,
            ow,
            oh,
            views,
            ..
        } = row?;
        let y0 = GAP + r as u32 * ch;
        let mut blit = |col: u32, data: &[u8], w: u32, h: u32, text: &str| {
            let x0 = GAP + col * cw;
            draw_text(&mut sheet, x0 + 1, y0 + 1, text);
            for y in 0..h {
                for x in 0..w {
                    let i = ((y * w + x) * 3) as usize;
                    sheet.put_pixel(
                        x0 + x,
                        y0 + LABEL_H + y,
                        image::Rgb([data[i], data[i + 1], data[i + 2]]),
                    );
                }
            }
        };
        blit(0, &orig, ow, oh, "orig");
        for (k, view) in views.iter().enumerate() {
            let side = cfg.view_side(k);
            let text = if k < 2 {
                format!("m{k}")
            } else {
                format!("s{}", k - 2)
            };
            blit(k as u32 + 1, view, side, side, &text);
        }
    }
    Ok(sheet)
}
