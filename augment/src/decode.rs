//! Decoding a record once into a reused packed-RGB8 buffer.

use std::cell::RefCell;

use fnc_formats::{Encoding, Record};
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use crate::jpeg::{decode_baseline, JpegScratch};
use crate::simd::best_path;

thread_local! {
    /// The fast JPEG decoder's planes, reused by each worker thread.
    static JPEG: RefCell<JpegScratch> = RefCell::default();
}

/// Decodes `rec` into `buf` (resized as needed, never shrunk) as packed RGB8 and
/// returns (width, height). An image without pixels (width or height 0) is an
/// error.
pub fn decode_into(rec: &Record<'_>, buf: &mut Vec<u8>) -> Result<(u32, u32), String> {
    let (w, h) = decode_any(rec, buf)?;
    if w == 0 || h == 0 {
        return Err(format!(
            "the {} image is {w}x{h}: it has no pixels",
            rec.encoding
        ));
    }
    Ok((w, h))
}

fn decode_any(rec: &Record<'_>, buf: &mut Vec<u8>) -> Result<(u32, u32), String> {
    match rec.encoding {
        Encoding::Jpeg => {
            let fast = JPEG.with(|s| {
                let mut s = s.borrow_mut();
                let wh = decode_baseline(best_path(), rec.data, buf, &mut s);
                s.release_if_huge();
                wh
            });
            if let Some(wh) = fast {
                return Ok(wh);
            }
            decode_jpeg_general(rec.data, buf)
        }
        Encoding::Raw => {
            let n = u64::from(rec.width) * u64::from(rec.height) * 3;
            if rec.data.len() as u64 != n {
                return Err(format!(
                    "raw record of {} bytes, expected {}x{}x3",
                    rec.data.len(),
                    rec.width,
                    rec.height
                ));
            }
            buf.clear();
            buf.extend_from_slice(rec.data);
            Ok((rec.width, rec.height))
        }
        Encoding::Png | Encoding::WebP => {
            let fmt = if rec.encoding == Encoding::Png {
                image::ImageFormat::Png
            } else {
                image::ImageFormat::WebP
            };
            let img = image::load_from_memory_with_format(rec.data, fmt)
                .map_err(|e| format!("{fmt:?}: {e}"))?
                .to_rgb8();
            let (w, h) = img.dimensions();
            buf.clear();
            buf.extend_from_slice(img.as_raw());
            Ok((w, h))
        }
    }
}

/// Any JPEG, through zune-jpeg (progressive, CMYK, odd sampling, lenient with
/// corrupt data).
fn decode_jpeg_general(data: &[u8], buf: &mut Vec<u8>) -> Result<(u32, u32), String> {
    let opts = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_max_width(1 << 16)
        .set_max_height(1 << 16);
    let mut dec = JpegDecoder::new_with_options(ZCursor::new(data), opts);
    dec.decode_headers()
        .map_err(|e| format!("JPEG headers: {e:?}"))?;
    let (w, h) = dec
        .dimensions()
        .ok_or_else(|| "JPEG without dimensions".to_string())?;
    let n = dec
        .output_buffer_size()
        .ok_or_else(|| "JPEG output size unknown".to_string())?;
    if n != w * h * 3 {
        return Err(format!("JPEG decodes to {n} bytes, expected {w}x{h}x3"));
    }
    buf.resize(n, 0);
    dec.decode_into(buf)
        .map_err(|e| format!("JPEG data: {e:?}"))?;
    Ok((w as u32, h as u32))
}
