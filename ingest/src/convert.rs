//! Turning one source file into the bytes of one record.

use fast_image_resize as fr;
use fnc_formats::Encoding;

use crate::jpeg;

/// How records are stored (`--encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncodingChoice {
    /// Original bytes when the file is an RGB or greyscale JPEG that needs no
    /// resize; everything else is re-encoded as JPEG.
    Keep,
    /// Every record re-encoded as JPEG at the given quality.
    Jpeg,
    /// Every record encoded as lossy WebP at the given quality.
    WebP,
    /// Every record stored as packed RGB8.
    Raw,
}

impl EncodingChoice {
    pub fn name(self) -> &'static str {
        match self {
            EncodingChoice::Keep => "keep",
            EncodingChoice::Jpeg => "jpeg",
            EncodingChoice::WebP => "webp",
            EncodingChoice::Raw => "raw",
        }
    }
}

/// Which side `--max-side` limits (`--resize-side`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResizeSide {
    /// The longer side is at most max-side.
    Longer,
    /// The shorter side is at most max-side (the usual ImageNet "resize 256").
    Shorter,
}

/// Storage decisions, made once at ingest time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoragePolicy {
    /// 0 = never resize.
    pub max_side: u32,
    pub resize_side: ResizeSide,
    pub encoding: EncodingChoice,
    /// JPEG / WebP quality, 1..=100.
    pub quality: u8,
}

impl Default for StoragePolicy {
    fn default() -> Self {
        StoragePolicy {
            max_side: 512,
            resize_side: ResizeSide::Longer,
            encoding: EncodingChoice::Keep,
            quality: 90,
        }
    }
}

/// A record ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    pub data: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub encoding: Encoding,
    /// The original bytes were stored unchanged.
    pub kept: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceFormat {
    Jpeg,
    Png,
    WebP,
}

fn sniff(b: &[u8]) -> Result<SourceFormat, String> {
    if b.is_empty() {
        return Err("empty file".into());
    }
    if b.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(SourceFormat::Jpeg);
    }
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(SourceFormat::Png);
    }
    if b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP" {
        return Ok(SourceFormat::WebP);
    }
    for (magic, name) in [
        (&b"GIF8"[..], "GIF"),
        (&b"BM"[..], "BMP"),
        (&b"II*\0"[..], "TIFF"),
        (&b"MM\0*"[..], "TIFF"),
    ] {
        if b.starts_with(magic) {
            return Err(format!(
                "unsupported image format ({name}); convert it to JPEG or PNG"
            ));
        }
    }
    Err("not an image (content is not JPEG, PNG or WebP)".into())
}

/// Output size under the policy, or `None` when the image fits as it is.
pub fn target_size(width: u32, height: u32, policy: &StoragePolicy) -> Option<(u32, u32)> {
    if policy.max_side == 0 {
        return None;
    }
    let side = match policy.resize_side {
        ResizeSide::Longer => width.max(height),
        ResizeSide::Shorter => width.min(height),
    };
    if side <= policy.max_side {
        return None;
    }
    let scale = policy.max_side as f64 / side as f64;
    let w = ((width as f64 * scale).round() as u32).max(1);
    let h = ((height as f64 * scale).round() as u32).max(1);
    Some((w, h))
}

/// Converts the bytes of one source file into a record, or says why it can't.
pub fn convert(bytes: &[u8], policy: &StoragePolicy) -> Result<Converted, String> {
    let format = sniff(bytes)?;
    if format == SourceFormat::Jpeg {
        let info = jpeg::probe(bytes)?;
        if !info.complete {
            return Err("truncated JPEG (no end-of-image marker after the scan data)".into());
        }
        let keepable = policy.encoding == EncodingChoice::Keep
            && matches!(info.components, 1 | 3)
            && target_size(info.width, info.height, policy).is_none();
        if keepable {
            return Ok(Converted {
                data: bytes.to_vec(),
                width: info.width,
                height: info.height,
                encoding: Encoding::Jpeg,
                kept: true,
            });
        }
    }
    let (w, h, pixels) = decode(bytes, format)?;
    if w == 0 || h == 0 {
        return Err(format!("image has no pixels ({w}x{h})"));
    }
    let (w, h, pixels) = match target_size(w, h, policy) {
        Some((nw, nh)) => (nw, nh, resize_rgb(pixels, w, h, nw, nh)?),
        None => (w, h, pixels),
    };
    encode(pixels, w, h, policy)
}

/// Decodes a source file to packed RGB8: JPEGs as the engine decodes kept
/// ones (fnc-codec), so that a JPEG stored raw gives the same views as one
/// kept; PNG and WebP through the `image` crate.
fn decode(bytes: &[u8], format: SourceFormat) -> Result<(u32, u32, Vec<u8>), String> {
    let image_format = match format {
        SourceFormat::Jpeg => {
            let mut pixels = Vec::new();
            let (w, h) = fnc_codec::decode_jpeg(bytes, &mut pixels)
                .map_err(|e| format!("cannot decode JPEG: {e}"))?;
            return Ok((w, h, pixels));
        }
        SourceFormat::Png => image::ImageFormat::Png,
        SourceFormat::WebP => image::ImageFormat::WebP,
    };
    let rgb = image::load_from_memory_with_format(bytes, image_format)
        .map_err(|e| format!("cannot decode {image_format:?}: {e}"))?
        .to_rgb8();
    let (w, h) = rgb.dimensions();
    Ok((w, h, rgb.into_raw()))
}

/// Antialiased (convolution) resize of packed RGB8.
pub fn resize_rgb(src: Vec<u8>, w: u32, h: u32, nw: u32, nh: u32) -> Result<Vec<u8>, String> {
    let src = fr::images::Image::from_vec_u8(w, h, src, fr::PixelType::U8x3)
        .map_err(|e| format!("resize: {e}"))?;
    let mut dst = fr::images::Image::new(nw, nh, fr::PixelType::U8x3);
    let opts =
        fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::CatmullRom));
    fr::Resizer::new()
        .resize(&src, &mut dst, &opts)
        .map_err(|e| format!("resize: {e}"))?;
    Ok(dst.into_vec())
}

/// Encodes packed RGB8 per the policy (`Keep` means JPEG here).
pub fn encode(
    pixels: Vec<u8>,
    w: u32,
    h: u32,
    policy: &StoragePolicy,
) -> Result<Converted, String> {
    let (data, encoding) = match policy.encoding {
        EncodingChoice::Raw => (pixels, Encoding::Raw),
        EncodingChoice::Keep | EncodingChoice::Jpeg => {
            (encode_jpeg(&pixels, w, h, policy.quality)?, Encoding::Jpeg)
        }
        EncodingChoice::WebP => {
            if w > 16383 || h > 16383 {
                return Err(format!(
                    "{w}x{h} is too large for WebP (16383 max); use --max-side"
                ));
            }
            let mem = webp::Encoder::from_rgb(&pixels, w, h).encode(policy.quality as f32);
            (mem.to_vec(), Encoding::WebP)
        }
    };
    Ok(Converted {
        data,
        width: w,
        height: h,
        encoding,
        kept: false,
    })
}

/// Baseline JPEG, 4:2:0 chroma subsampling (as PIL and libjpeg default to).
pub fn encode_jpeg(rgb: &[u8], w: u32, h: u32, quality: u8) -> Result<Vec<u8>, String> {
    if w > u16::MAX as u32 || h > u16::MAX as u32 {
        return Err(format!(
            "{w}x{h} is too large for JPEG (65535 max); use --max-side"
        ));
    }
    let mut out = Vec::with_capacity(rgb.len() / 8);
    let mut enc = jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100));
    enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    enc.encode(rgb, w as u16, h as u16, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| format!("JPEG encode: {e}"))?;
    Ok(out)
}
