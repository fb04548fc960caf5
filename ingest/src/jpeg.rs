//! Reading what ingest needs from a JPEG's markers without decoding it.

/// Facts from a JPEG's frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JpegInfo {
    pub width: u32,
    pub height: u32,
    /// 1 = greyscale, 3 = YCbCr (or RGB), 4 = CMYK/YCCK.
    pub components: u8,
    pub progressive: bool,
    /// The scan data ends with an end-of-image marker (a cut file does not).
    pub complete: bool,
}

/// Parses the marker segments up to the first scan.
pub fn probe(b: &[u8]) -> Result<JpegInfo, String> {
    if b.len() < 4 || b[0] != 0xFF || b[1] != 0xD8 {
        return Err("not a JPEG (no start-of-image marker)".into());
    }
    let mut pos = 2;
    let mut frame: Option<(u32, u32, u8, bool)> = None;
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        while pos < b.len() && b[pos] != 0xFF {
            pos += 1;
        }
        while pos < b.len() && b[pos] == 0xFF {
            pos += 1;
        }
        if pos >= b.len() {
            return Err("truncated JPEG (ends inside the headers)".into());
        }
        let marker = b[pos];
        pos += 1;
        match marker {
            0xD0..=0xD7 | 0x01 => continue,
            0xD9 => return Err("JPEG has no image data (end-of-image before any scan)".into()),
            _ => {}
        }
        if pos + 2 > b.len() {
            return Err("truncated JPEG (ends inside a marker)".into());
        }
        let len = u16::from_be_bytes([b[pos], b[pos + 1]]) as usize;
        if len < 2 || pos + len > b.len() {
            return Err("truncated JPEG (a marker segment runs past the end)".into());
        }
        let seg = &b[pos + 2..pos + len];
        match marker {
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                if seg.len() < 6 {
                    return Err("corrupt JPEG (short frame header)".into());
                }
                let height = u16::from_be_bytes([seg[1], seg[2]]) as u32;
                let width = u16::from_be_bytes([seg[3], seg[4]]) as u32;
                let progressive = matches!(marker, 0xC2 | 0xC6 | 0xCA | 0xCE);
                frame = Some((width, height, seg[5], progressive));
            }
            0xDA => {
                let (width, height, components, progressive) =
                    frame.ok_or("corrupt JPEG (scan before frame header)")?;
                if width == 0 || height == 0 {
                    return Err(format!("corrupt JPEG (frame size {width}x{height})"));
                }
                // Entropy-coded data never contains FF D9 (0xFF is stuffed as FF 00),
                // so one after the first scan can only be the end-of-image marker.
                let scan = &b[pos + len..];
                let complete = scan.windows(2).rev().any(|w| w == [0xFF, 0xD9]);
                return Ok(JpegInfo {
                    width,
                    height,
                    components,
                    progressive,
                    complete,
                });
            }
            _ => {}
        }
        pos += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u16, h: u16, progressive: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = jpeg_encoder::Encoder::new(&mut out, 85);
        enc.set_progressive(progressive);
        let px = vec![128u8; w as usize * h as usize * 3];
        enc.encode(&px, w, h, jpeg_encoder::ColorType::Rgb).unwrap();
        out
    }

    #[test]
    fn reads_frame_and_completeness() {
        for progressive in [false, true] {
            let j = jpeg(33, 17, progressive);
            let info = probe(&j).unwrap();
            assert_eq!((info.width, info.height, info.components), (33, 17, 3));
            assert_eq!(info.progressive, progressive);
            assert!(info.complete);
            let cut = probe(&j[..j.len() - 10]).unwrap();
            assert!(!cut.complete);
        }
        assert!(probe(b"hello world").is_err());
        assert!(probe(&jpeg(8, 8, false)[..20]).is_err());
    }
}
