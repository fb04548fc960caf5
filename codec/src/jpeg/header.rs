//! The markers of a baseline JPEG up to its first scan: the frame, the quantisation
//! and Huffman tables, the restart interval. Anything this decoder does not take
//! (progressive, lossless or arithmetic coding, 12-bit samples, several scans, RGB
//! or CMYK colour, unusual sampling) is answered `None`, for the general decoder.

use super::huffman::Tables;

/// One colour component of the frame.
#[derive(Debug, Clone, Copy)]
pub(super) struct Component {
    /// Horizontal and vertical sampling factors.
    pub h: usize,
    pub v: usize,
    /// Quantisation table index.
    pub tq: usize,
    /// DC and AC Huffman table indices (from the scan header).
    pub td: usize,
    pub ta: usize,
}

/// What the scan needs: the frame, its tables and where the coded data starts.
pub(super) struct Header {
    pub width: usize,
    pub height: usize,
    /// One (greyscale) or three (Y, Cb, Cr) components, in frame order, which is
    /// also the scan's order.
    pub comps: Vec<Component>,
    /// Quantisation tables in natural (row-major) order.
    pub qt: [[u16; 64]; 4],
    /// MCUs between restart markers, 0 for none.
    pub restart: usize,
    /// Offset of the first byte of entropy-coded data.
    pub data_start: usize,
}

/// Zig-zag index -> natural (row-major) index of an 8x8 block.
pub(super) const ZIGZAG: [u8; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Option<u8> {
        let b = *self.data.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from(self.u8()?) << 8 | u16::from(self.u8()?))
    }

    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.data.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }

    /// The payload of a marker segment (its length field counts itself).
    fn segment(&mut self) -> Option<&'a [u8]> {
        let len = usize::from(self.u16()?);
        self.bytes(len.checked_sub(2)?)
    }
}

struct Frame {
    width: usize,
    height: usize,
    /// (component id, h, v, tq)
    comps: Vec<(u8, usize, usize, usize)>,
}

/// Parses the markers up to the first scan, building the Huffman tables in
/// `tables`; `None` for anything not baseline 8-bit greyscale or YCbCr in one
/// interleaved scan, or malformed.
pub(super) fn parse(data: &[u8], tables: &mut Tables) -> Option<Header> {
    let mut r = Reader { data, pos: 0 };
    if r.u16()? != 0xFFD8 {
        return None;
    }
    let mut qt = [[0u16; 64]; 4];
    let mut qt_set = [false; 4];
    tables.dc_set = [false; 4];
    tables.ac_set = [false; 4];
    let mut restart = 0usize;
    let mut frame: Option<Frame> = None;
    let mut adobe_transform: Option<u8> = None;
    loop {
        // A marker: 0xFF, any fill 0xFFs, then its code.
        if r.u8()? != 0xFF {
            return None;
        }
        let mut m = r.u8()?;
        while m == 0xFF {
            m = r.u8()?;
        }
        match m {
            0xC0 | 0xC1 => {
                if frame.is_some() {
                    return None;
                }
                frame = Some(parse_frame(r.segment()?)?);
            }
            // Progressive, lossless, hierarchical, arithmetic coding.
            0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return None,
            0xC4 => parse_huffman(r.segment()?, tables)?,
            0xDB => parse_quant(r.segment()?, &mut qt, &mut qt_set)?,
            0xDD => {
                let s = r.segment()?;
                if s.len() != 2 {
                    return None;
                }
                restart = usize::from(u16::from(s[0]) << 8 | u16::from(s[1]));
            }
            0xEE => {
                let s = r.segment()?;
                if s.len() >= 12 && s.starts_with(b"Adobe") {
                    adobe_transform = Some(s[11]);
                }
            }
            0xDA => {
                let f = frame?;
                let comps = parse_scan(r.segment()?, &f, &qt_set, tables, adobe_transform)?;
                return Some(Header {
                    width: f.width,
                    height: f.height,
                    comps,
                    qt,
                    restart,
                    data_start: r.pos,
                });
            }
            // APPn and COM: skipped by their length.
            0xE0..=0xEF | 0xFE => {
                r.segment()?;
            }
            // Anything else (arithmetic conditioning, JPG extensions, reserved
            // codes) libjpeg refuses or reads otherwise.
            _ => return None,
        }
    }
}

fn parse_frame(s: &[u8]) -> Option<Frame> {
    let mut r = Reader { data: s, pos: 0 };
    if r.u8()? != 8 {
        return None;
    }
    let height = usize::from(r.u16()?);
    let width = usize::from(r.u16()?);
    let n = usize::from(r.u8()?);
    if width == 0 || height == 0 || !(n == 1 || n == 3) || s.len() != 6 + 3 * n {
        return None;
    }
    let mut comps = Vec::with_capacity(n);
    for _ in 0..n {
        let id = r.u8()?;
        let hv = r.u8()?;
        let tq = usize::from(r.u8()?);
        let (h, v) = (usize::from(hv >> 4), usize::from(hv & 15));
        if !(1..=4).contains(&h) || !(1..=4).contains(&v) || tq > 3 {
            return None;
        }
        if comps.iter().any(|c: &(u8, usize, usize, usize)| c.0 == id) {
            return None;
        }
        comps.push((id, h, v, tq));
    }
    if n == 3 {
        // Luma at 1x1, 2x1 or 2x2 of chroma at 1x1: 4:4:4, 4:2:2, 4:2:0.
        let luma = (comps[0].1, comps[0].2);
        let chroma_ok = comps[1..].iter().all(|c| c.1 == 1 && c.2 == 1);
        if !chroma_ok || !matches!(luma, (1, 1) | (2, 1) | (2, 2)) {
            return None;
        }
        // Components named R, G, B hold RGB, not YCbCr.
        if comps.iter().map(|c| c.0).eq(*b"RGB") {
            return None;
        }
    }
    Some(Frame {
        width,
        height,
        comps,
    })
}

fn parse_huffman(mut s: &[u8], tables: &mut Tables) -> Option<()> {
    while !s.is_empty() {
        let tc_th = s[0];
        let (class, id) = (tc_th >> 4, usize::from(tc_th & 15));
        let counts: &[u8; 16] = s.get(1..17)?.try_into().ok()?;
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        let symbols = s.get(17..17 + total)?;
        if id > 3 || class > 1 {
            return None;
        }
        let (table, set) = if class == 0 {
            (&mut tables.dc[id], &mut tables.dc_set[id])
        } else {
            (&mut tables.ac[id], &mut tables.ac_set[id])
        };
        *set = false;
        table.build(counts, symbols, class == 1)?;
        *set = true;
        s = &s[17 + total..];
    }
    Some(())
}

fn parse_quant(mut s: &[u8], qt: &mut [[u16; 64]; 4], set: &mut [bool; 4]) -> Option<()> {
    while !s.is_empty() {
        let (pq, id) = (s[0] >> 4, usize::from(s[0] & 15));
        if id > 3 || pq > 1 {
            return None;
        }
        let width = 1 + usize::from(pq);
        let vals = s.get(1..1 + 64 * width)?;
        for (k, &z) in ZIGZAG.iter().enumerate() {
            let q = if pq == 0 {
                u16::from(vals[k])
            } else {
                u16::from(vals[2 * k]) << 8 | u16::from(vals[2 * k + 1])
            };
            // libjpeg-turbo multiplies in 16 bits: past 255 its products can
            // wrap where these do not.
            if q > 255 {
                return None;
            }
            qt[id][usize::from(z)] = q;
        }
        set[id] = true;
        s = &s[1 + 64 * width..];
    }
    Some(())
}

fn parse_scan(
    s: &[u8],
    f: &Frame,
    qt_set: &[bool; 4],
    tables: &Tables,
    adobe_transform: Option<u8>,
) -> Option<Vec<Component>> {
    let mut r = Reader { data: s, pos: 0 };
    let n = usize::from(r.u8()?);
    // One scan with every component (interleaved when there are three).
    if n != f.comps.len() || s.len() != 4 + 2 * n {
        return None;
    }
    // Adobe's marker saying the three components are not YCbCr.
    if n == 3 && adobe_transform.is_some_and(|t| t != 1) {
        return None;
    }
    let mut comps = Vec::with_capacity(n);
    for &(id, h, v, tq) in &f.comps {
        // The scan lists the components in frame order.
        if r.u8()? != id {
            return None;
        }
        let t = r.u8()?;
        let (td, ta) = (usize::from(t >> 4), usize::from(t & 15));
        if td > 3 || ta > 3 || !tables.dc_set[td] || !tables.ac_set[ta] || !qt_set[tq] {
            return None;
        }
        let (h, v) = if n == 1 { (1, 1) } else { (h, v) };
        comps.push(Component { h, v, tq, td, ta });
    }
    // Spectral selection 0..63 and no successive approximation: sequential.
    if (r.u8()?, r.u8()?, r.u8()?) != (0, 63, 0) {
        return None;
    }
    Some(comps)
}
