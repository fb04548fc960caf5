//! Decoding a record once into a reused packed-RGB8 buffer.

use fnc_formats::{Encoding, Record};

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
        // The same decode as ingest's, so that a JPEG stored raw and one kept
        // give the same pixels.
        Encoding::Jpeg => fnc_codec::decode_jpeg(rec.data, buf),
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
