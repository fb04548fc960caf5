//! Any JPEG into a reused packed-RGB8 buffer: the baseline decoder where it
//! takes the file, else zune-jpeg.

use std::cell::RefCell;

use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use crate::cpu::best_path;
use crate::jpeg::{decode_baseline, JpegScratch};

thread_local! {
    /// The baseline decoder's planes, reused by each thread.
    static JPEG: RefCell<JpegScratch> = RefCell::default();
}

/// Decodes the JPEG `data` into `buf` (resized as needed, never shrunk) as
/// packed RGB8 and returns (width, height), or says why it cannot. Baseline
/// 8-bit greyscale and YCbCr files (nearly every photo) decode to
/// libjpeg-turbo's pixels; the rest go to zune-jpeg (progressive, CMYK, odd
/// sampling, lenient with corrupt data).
pub fn decode_jpeg(data: &[u8], buf: &mut Vec<u8>) -> Result<(u32, u32), String> {
    let fast = JPEG.with(|s| {
        let mut s = s.borrow_mut();
        let wh = decode_baseline(best_path(), data, buf, &mut s);
        s.release_if_huge();
        wh
    });
    match fast {
        Some(wh) => Ok(wh),
        None => decode_general(data, buf),
    }
}

/// The largest decode the general decoder makes (bytes of RGB8): the `image`
/// crate's default allocation limit, which ingest decoded under before, so
/// that a small file claiming a huge frame cannot claim the memory.
const MAX_GENERAL_BYTES: usize = 512 << 20;

/// Any JPEG, through zune-jpeg.
fn decode_general(data: &[u8], buf: &mut Vec<u8>) -> Result<(u32, u32), String> {
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
    if n > MAX_GENERAL_BYTES {
        return Err(format!(
            "a {w}x{h} JPEG is over the decoder's {} MiB limit",
            MAX_GENERAL_BYTES >> 20
        ));
    }
    buf.resize(n, 0);
    dec.decode_into(buf)
        .map_err(|e| format!("JPEG data: {e:?}"))?;
    Ok((w as u32, h as u32))
}
