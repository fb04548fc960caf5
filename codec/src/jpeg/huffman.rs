//! Huffman decoding of baseline JPEG blocks: a 64-bit bit buffer refilled eight
//! bytes at a time where no 0xFF is among them, an 11-bit lookahead table per
//! Huffman table, and for AC tables a second one that also holds the coefficient
//! when the code and its extra bits fit in 11 bits (most coefficients of a
//! photo; 11 measured faster than 9, 10 and 12 on 500x375 photos).

use super::header::ZIGZAG;

const LOOK: u32 = 11;

/// One Huffman table, ready for decoding.
pub(super) struct HuffTable {
    /// Per `LOOK`-bit prefix: (code length << 8) | symbol, or 0 when the code
    /// is longer.
    fast: [u16; 1 << LOOK],
    /// AC tables, per prefix: (coefficient << 16) | (run << 8) | (code length
    /// plus extra bits), where those fit in the prefix and the symbol codes a
    /// coefficient; else 0.
    fast_ac: [i32; 1 << LOOK],
    /// Per code length 1..=16: the largest code of that length (-1 if none).
    maxcode: [i32; 17],
    /// Per code length: the index in `values` of its first symbol minus its first code.
    offset: [i32; 17],
    values: [u8; 256],
}

/// The four DC and four AC tables of a stream, built in place (they are
/// reused from image to image, being too large to move about).
pub(super) struct Tables {
    pub dc: [Box<HuffTable>; 4],
    pub ac: [Box<HuffTable>; 4],
    /// Which tables this image defined.
    pub dc_set: [bool; 4],
    pub ac_set: [bool; 4],
}

impl Default for Tables {
    fn default() -> Tables {
        let empty = || HuffTable::empty();
        Tables {
            dc: std::array::from_fn(|_| empty()),
            ac: std::array::from_fn(|_| empty()),
            dc_set: [false; 4],
            ac_set: [false; 4],
        }
    }
}

impl HuffTable {
    fn empty() -> Box<HuffTable> {
        Box::new(HuffTable {
            fast: [0; 1 << LOOK],
            fast_ac: [0; 1 << LOOK],
            maxcode: [-1; 17],
            offset: [0; 17],
            values: [0; 256],
        })
    }

    /// Makes this the table of the DHT's 16 counts and its symbols; `None` if
    /// the counts do not make a prefix code or there are over 256 symbols.
    pub(super) fn build(&mut self, counts: &[u8; 16], symbols: &[u8], ac: bool) -> Option<()> {
        if symbols.len() > 256 {
            return None;
        }
        let t = self;
        t.fast.fill(0);
        t.fast_ac.fill(0);
        t.maxcode = [-1; 17];
        t.offset = [0; 17];
        t.values[..symbols.len()].copy_from_slice(symbols);
        let mut code: u32 = 0;
        let mut k = 0usize;
        for len in 1..=16u32 {
            let n = u32::from(counts[len as usize - 1]);
            t.offset[len as usize] = k as i32 - code as i32;
            for _ in 0..n {
                if code >= 1 << len {
                    return None;
                }
                if len <= LOOK {
                    let first = (code << (LOOK - len)) as usize;
                    let entry = (len << 8) as u16 | u16::from(symbols[k]);
                    t.fast[first..first + (1 << (LOOK - len))].fill(entry);
                }
                code += 1;
                k += 1;
            }
            // libjpeg's rule: the codes of a length leave its all-ones code
            // free (a table that uses it is refused there).
            if code >= 1 << len {
                return None;
            }
            if n > 0 {
                t.maxcode[len as usize] = code as i32 - 1;
            }
            code <<= 1;
        }
        if ac {
            for (i, &e) in t.fast.iter().enumerate() {
                let (len, rs) = (u32::from(e >> 8), u32::from(e & 0xFF));
                let (run, size) = (rs >> 4, rs & 15);
                if e != 0 && size != 0 && len + size <= LOOK {
                    let extra = (i as u32 >> (LOOK - len - size)) & ((1 << size) - 1);
                    let v = extend(extra, size);
                    t.fast_ac[i] = (v << 16) | (run << 8) as i32 | (len + size) as i32;
                }
            }
        }
        Some(())
    }

    /// A new table (see [`HuffTable::build`]).
    #[cfg(test)]
    fn new(counts: &[u8; 16], symbols: &[u8], ac: bool) -> Option<Box<HuffTable>> {
        let mut t = HuffTable::empty();
        t.build(counts, symbols, ac)?;
        Some(t)
    }

    /// The (code length, symbol) at the top of `bits` (at least 16 valid bits);
    /// `None` for a code that is not in the table.
    #[inline(always)]
    fn decode(&self, bits: u64) -> Option<(u32, u8)> {
        let e = self.fast[(bits >> (64 - LOOK)) as usize];
        if e != 0 {
            return Some((u32::from(e >> 8), (e & 0xFF) as u8));
        }
        self.decode_long(bits)
    }

    #[inline(never)]
    fn decode_long(&self, bits: u64) -> Option<(u32, u8)> {
        for len in LOOK + 1..=16 {
            let code = (bits >> (64 - len)) as i32;
            if code <= self.maxcode[len as usize] {
                let i = self.offset[len as usize] + code;
                return Some((len, self.values[i as usize & 0xFF]));
            }
        }
        None
    }
}

/// The signed value of `size` extra bits `v` (JPEG's EXTEND).
#[inline(always)]
fn extend(v: u32, size: u32) -> i32 {
    if v < 1 << (size - 1) {
        v as i32 - (1 << size) + 1
    } else {
        v as i32
    }
}

/// The entropy-coded data of a scan, read MSB first with byte stuffing removed.
/// At a marker or the end of the data it reads zero bits, and counts them, so
/// that a scan which needed them can be told from one that only padded.
pub(super) struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    /// Valid bits at the top; the bits below them are zero or the next byte's.
    acc: u64,
    n: u32,
    /// Zero bytes read in place of data.
    phantom: u32,
}

impl<'a> Bits<'a> {
    pub(super) fn new(data: &'a [u8], pos: usize) -> Bits<'a> {
        Bits {
            data,
            pos,
            acc: 0,
            n: 0,
            phantom: 0,
        }
    }

    /// Fills the buffer to at least 57 bits.
    #[cfg(test)]
    fn refill(&mut self) {
        (self.acc, self.n) = self.refilled(self.acc, self.n);
    }

    /// `acc` holding `n` bits filled to at least 57. The hot loop keeps the
    /// buffer in registers and passes it through here.
    #[inline(always)]
    fn refilled(&mut self, acc: u64, n: u32) -> (u64, u32) {
        if n > 56 {
            return (acc, n);
        }
        if let Some(word) = self.data.get(self.pos..).and_then(|s| s.first_chunk::<8>()) {
            let w = u64::from_be_bytes(*word);
            // No byte of w is 0xFF: take as many whole bytes as fit. The bits
            // below them are the next byte's first, which its own read ORs in
            // again.
            if (!w).wrapping_sub(0x0101_0101_0101_0101) & w & 0x8080_8080_8080_8080 == 0 {
                let take = (64 - n) / 8;
                self.pos += take as usize;
                return (acc | w >> n, n + take * 8);
            }
        }
        self.refilled_bytewise(acc, n)
    }

    #[inline(never)]
    fn refilled_bytewise(&mut self, mut acc: u64, mut n: u32) -> (u64, u32) {
        while n <= 56 {
            let b = match self.data.get(self.pos) {
                Some(&0xFF) => {
                    if self.data.get(self.pos + 1) == Some(&0) {
                        self.pos += 2;
                        0xFF
                    } else {
                        // A marker: zeros from here, the marker left unread.
                        self.phantom = self.phantom.saturating_add(1);
                        0
                    }
                }
                Some(&b) => {
                    self.pos += 1;
                    b
                }
                None => {
                    self.phantom = self.phantom.saturating_add(1);
                    0
                }
            };
            acc |= u64::from(b) << (56 - n);
            n += 8;
        }
        (acc, n)
    }

    #[cfg(test)]
    fn refill_bytewise(&mut self) {
        (self.acc, self.n) = self.refilled_bytewise(self.acc, self.n);
    }

    /// The next `size` (1..=16) bits.
    #[cfg(test)]
    fn take(&mut self, size: u32) -> u32 {
        let v = (self.acc >> (64 - size)) as u32;
        self.acc <<= size;
        self.n -= size;
        v
    }

    /// Whether every bit decoded so far was in the data (none was a zero read at
    /// a marker or past the end).
    pub(super) fn all_real(&self) -> bool {
        self.phantom <= self.n / 8
    }

    /// Goes past restart marker `RSTm` (`m` = 0..8) after the padding of the
    /// interval before it; `false` if it is not next.
    pub(super) fn restart(&mut self, m: u8) -> bool {
        if !self.all_real() {
            return false;
        }
        self.acc = 0;
        self.n = 0;
        self.phantom = 0;
        let Some(rest) = self.data.get(self.pos..) else {
            return false;
        };
        let fill = rest.iter().take_while(|&&b| b == 0xFF).count();
        if fill == 0 || rest.get(fill) != Some(&(0xD0 + m)) {
            return false;
        }
        self.pos += fill + 1;
        true
    }

    /// Decodes one block's coefficients (zig-zag order mapped to natural) into
    /// `block`, which must hold zeros; `pred` is the component's DC predictor.
    /// Returns whether any AC coefficient is coded, or `None` for data that is
    /// not a valid block.
    #[inline(always)]
    pub(super) fn block(
        &mut self,
        dc: &HuffTable,
        ac: &HuffTable,
        pred: &mut i32,
        block: &mut [i16; 64],
    ) -> Option<bool> {
        // The buffer in locals (registers) for the block, back in `self` after.
        let (mut acc, mut n) = self.refilled(self.acc, self.n);
        let (len, size) = dc.decode(acc)?;
        acc <<= len;
        n -= len;
        let size = u32::from(size);
        // libjpeg refuses DC differences of over 15 bits.
        if size > 15 {
            return None;
        }
        if size > 0 {
            let v = (acc >> (64 - size)) as u32;
            acc <<= size;
            n -= size;
            *pred = pred.wrapping_add(extend(v, size));
        }
        block[0] = *pred as i16;
        let mut k = 1usize;
        let mut any = false;
        while k < 64 {
            if n < 32 {
                (acc, n) = self.refilled(acc, n);
            }
            let f = ac.fast_ac[(acc >> (64 - LOOK)) as usize];
            if f != 0 {
                k += ((f >> 8) & 15) as usize;
                let len = (f & 0xFF) as u32;
                acc <<= len;
                n -= len;
                if k > 63 {
                    return None;
                }
                block[usize::from(ZIGZAG[k & 63]) & 63] = (f >> 16) as i16;
                any = true;
                k += 1;
                continue;
            }
            let (len, rs) = ac.decode(acc)?;
            acc <<= len;
            n -= len;
            let (run, size) = (usize::from(rs >> 4), u32::from(rs & 15));
            if size == 0 {
                if run == 15 {
                    k += 16;
                    continue;
                }
                break;
            }
            k += run;
            if k > 63 {
                return None;
            }
            let v = (acc >> (64 - size)) as u32;
            acc <<= size;
            n -= size;
            block[usize::from(ZIGZAG[k & 63]) & 63] = extend(v, size) as i16;
            any = true;
            k += 1;
        }
        (self.acc, self.n) = (acc, n);
        Some(any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_full_code_lengths_are_refused_as_libjpeg_does() {
        // Two codes of length 1 would use the all-ones code "1"; one is fine,
        // and so are "0", "10", "110" after it.
        let mut counts = [0u8; 16];
        counts[0] = 2;
        assert!(HuffTable::new(&counts, &[0, 1], false).is_none());
        counts[0] = 1;
        assert!(HuffTable::new(&counts, &[0], false).is_some());
        counts[1] = 1;
        counts[2] = 1;
        assert!(HuffTable::new(&counts, &[0, 1, 2], false).is_some());
        counts[2] = 2;
        assert!(HuffTable::new(&counts, &[0, 1, 2, 3], false).is_none());
    }

    #[test]
    fn long_codes_decode_through_the_slow_path() {
        // One code per length 1..=16: the longest codes lie beyond the
        // lookahead, and the all-ones 16-bit code is left free.
        let counts = [1u8; 16];
        let symbols: Vec<u8> = (0..16).collect();
        let t = HuffTable::new(&counts, &symbols, false).unwrap();
        // Length L's code is L-1 ones then a zero.
        for len in 1..=16u32 {
            let code: u64 = ((1u64 << (len - 1)) - 1) << 1;
            let bits = code << (64 - len);
            assert_eq!(t.decode(bits), Some((len, (len - 1) as u8)), "length {len}");
        }
        assert_eq!(t.decode(u64::MAX), None);
    }

    #[test]
    fn stuffed_bytes_and_markers_read_as_the_standard_says() {
        // 0xFF 0x00 is one 0xFF byte; a marker ends the data (zeros after it).
        let data = [0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD9];
        let mut b = Bits::new(&data, 0);
        b.refill();
        assert_eq!(b.take(8), 0x12);
        assert_eq!(b.take(8), 0xFF);
        assert_eq!(b.take(8), 0x34);
        assert!(b.all_real());
        assert_eq!(b.take(16), 0);
        // 16 bits past the data are zeros read at the marker.
        assert!(!b.all_real());
    }

    #[test]
    fn the_word_refill_agrees_with_the_byte_refill() {
        let data: Vec<u8> = (0..64u32).map(|i| (i * 37 % 251) as u8).collect();
        let mut fast = Bits::new(&data, 0);
        let mut slow = Bits::new(&data, 0);
        for step in 0..100u32 {
            let size = 1 + step % 13;
            fast.refill();
            slow.refill_bytewise();
            assert_eq!(fast.take(size), slow.take(size), "step {step}");
        }
    }
}
