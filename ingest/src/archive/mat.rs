//! Just enough of MATLAB's level-5 MAT-file format to read the ImageNet devkit's
//! `meta.mat`: numeric, character, struct and cell arrays, little- or big-endian,
//! compressed (zlib) or not. Sparse and object arrays are refused.

use std::io::Read;

use flate2::read::ZlibDecoder;

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MI_UTF8: u32 = 16;
const MI_UTF16: u32 = 17;
const MI_UTF32: u32 = 18;

const MX_CELL: u8 = 1;
const MX_STRUCT: u8 = 2;
const MX_CHAR: u8 = 4;

/// The largest array (elements) and nesting read; `meta.mat` is far below both.
const MAX_ELEMENTS: usize = 1 << 24;
const MAX_DEPTH: usize = 16;
/// The most bytes a compressed variable may inflate to.
const MAX_INFLATED: u64 = 1 << 30;

/// A value of a MAT file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// Any numeric class, as f64, column-major.
    Num(Vec<f64>),
    /// A character array (rows joined).
    Text(String),
    /// A struct array: field names, and per element its fields' values.
    Struct {
        fields: Vec<String>,
        elements: Vec<Vec<Value>>,
    },
    Cell(Vec<Value>),
}

impl Value {
    /// A struct element's field by name.
    pub fn field<'a>(fields: &[String], element: &'a [Value], name: &str) -> Option<&'a Value> {
        fields
            .iter()
            .position(|f| f == name)
            .and_then(|i| element.get(i))
    }

    /// The first number, for a scalar.
    pub fn scalar(&self) -> Option<f64> {
        match self {
            Value::Num(v) => v.first().copied(),
            _ => None,
        }
    }

    pub fn text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// The variables of a MAT file, by name, in file order.
pub(crate) fn parse(bytes: &[u8]) -> Result<Vec<(String, Value)>, String> {
    if bytes.len() < 128 {
        return Err("shorter than a MAT-file header (128 bytes)".into());
    }
    if bytes[124..126] != [0x00, 0x01] && bytes[124..126] != [0x01, 0x00] {
        return Err(
            "not a level-5 MAT-file (version field); MATLAB 7.3 files are HDF5: save with -v7"
                .into(),
        );
    }
    let big = match &bytes[126..128] {
        b"IM" => false,
        b"MI" => true,
        _ => return Err("not a level-5 MAT-file (no MI/IM endian mark at byte 126)".into()),
    };
    let mut out = Vec::new();
    let mut r = Reader {
        bytes: &bytes[128..],
        pos: 0,
        big,
    };
    while r.pos + 8 <= r.bytes.len() {
        let (ty, data) = r.element()?;
        match ty {
            MI_MATRIX => out.push(matrix(data, big, 0)?),
            MI_COMPRESSED => {
                let mut inflated = Vec::new();
                ZlibDecoder::new(data)
                    .take(MAX_INFLATED)
                    .read_to_end(&mut inflated)
                    .map_err(|e| format!("compressed variable: {e}"))?;
                if inflated.len() as u64 == MAX_INFLATED {
                    return Err(format!(
                        "a compressed variable inflates past {MAX_INFLATED} bytes"
                    ));
                }
                let mut inner = Reader {
                    bytes: &inflated,
                    pos: 0,
                    big,
                };
                while inner.pos + 8 <= inner.bytes.len() {
                    let (ty, data) = inner.element()?;
                    if ty == MI_MATRIX {
                        out.push(matrix(data, big, 0)?);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    big: bool,
}

impl<'a> Reader<'a> {
    fn u32_at(&self, at: usize) -> Result<u32, String> {
        let b: [u8; 4] = self
            .bytes
            .get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .ok_or("truncated data element")?;
        Ok(if self.big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    /// The next data element: its type and its bytes.
    fn element(&mut self) -> Result<(u32, &'a [u8]), String> {
        let first = self.u32_at(self.pos)?;
        // The small element format packs the size into the tag's upper half
        // and the data (at most 4 bytes) into the tag's second word.
        if first >> 16 != 0 {
            let (ty, n) = (first & 0xffff, (first >> 16) as usize);
            if n > 4 {
                return Err(format!("small data element of {n} bytes"));
            }
            let data = self
                .bytes
                .get(self.pos + 4..self.pos + 4 + n)
                .ok_or("truncated data element")?;
            self.pos += 8;
            return Ok((ty, data));
        }
        let n = self.u32_at(self.pos + 4)? as usize;
        let start = self.pos + 8;
        let data = self
            .bytes
            .get(start..start.checked_add(n).ok_or("element size overflows")?)
            .ok_or_else(|| format!("data element of {n} bytes runs past the end"))?;
        // Compressed elements are not padded; the others end on 8 bytes.
        let padded = if first == MI_COMPRESSED {
            n
        } else {
            n.div_ceil(8) * 8
        };
        self.pos = start + padded.min(self.bytes.len() - start);
        Ok((first, data))
    }
}

/// The numbers of a numeric data element.
fn numbers(ty: u32, data: &[u8], big: bool) -> Result<Vec<f64>, String> {
    macro_rules! conv {
        ($t:ty, $n:expr) => {
            data.chunks_exact($n)
                .map(|c| {
                    let a: [u8; $n] = c.try_into().unwrap_or([0; $n]);
                    (if big {
                        <$t>::from_be_bytes(a)
                    } else {
                        <$t>::from_le_bytes(a)
                    }) as f64
                })
                .collect()
        };
    }
    Ok(match ty {
        MI_INT8 => data.iter().map(|&b| b as i8 as f64).collect(),
        MI_UINT8 => data.iter().map(|&b| b as f64).collect(),
        MI_INT16 => conv!(i16, 2),
        MI_UINT16 => conv!(u16, 2),
        MI_INT32 => conv!(i32, 4),
        MI_UINT32 => conv!(u32, 4),
        MI_SINGLE => conv!(f32, 4),
        MI_DOUBLE => conv!(f64, 8),
        MI_INT64 => conv!(i64, 8),
        MI_UINT64 => conv!(u64, 8),
        _ => return Err(format!("data type {ty} where numbers belong")),
    })
}

fn text(ty: u32, data: &[u8], big: bool) -> Result<String, String> {
    Ok(match ty {
        MI_UTF8 | MI_UINT8 | MI_INT8 => String::from_utf8_lossy(data).into_owned(),
        MI_UTF16 | MI_UINT16 => {
            let units: Vec<u16> = numbers(MI_UINT16, data, big)?
                .into_iter()
                .map(|v| v as u16)
                .collect();
            String::from_utf16_lossy(&units)
        }
        MI_UTF32 => numbers(MI_UINT32, data, big)?
            .into_iter()
            .map(|v| char::from_u32(v as u32).unwrap_or('\u{fffd}'))
            .collect(),
        _ => return Err(format!("data type {ty} where characters belong")),
    })
}

/// A miMATRIX element's contents: its name and value.
fn matrix(data: &[u8], big: bool, depth: usize) -> Result<(String, Value), String> {
    if depth > MAX_DEPTH {
        return Err("arrays nested too deep".into());
    }
    if data.is_empty() {
        // An empty array (MATLAB writes `[]` fields this way).
        return Ok((String::new(), Value::Num(Vec::new())));
    }
    let mut r = Reader {
        bytes: data,
        pos: 0,
        big,
    };
    let (_, flags) = r.element()?;
    let class = *flags
        .get(if big { 3 } else { 0 })
        .ok_or("array flags too short")?;
    let (_, dims) = r.element()?;
    let count = numbers(MI_INT32, dims, big)?
        .into_iter()
        .try_fold(1usize, |acc, d| {
            acc.checked_mul(d.max(0.0) as usize)
                .filter(|&n| n <= MAX_ELEMENTS)
        })
        .ok_or("array too large")?;
    let (_, name) = r.element()?;
    let name = String::from_utf8_lossy(name).into_owned();
    let value = match class {
        MX_STRUCT => {
            let (_, len) = r.element()?;
            let len = numbers(MI_INT32, len, big)?
                .first()
                .copied()
                .ok_or("struct without field name length")? as usize;
            let (_, names) = r.element()?;
            if len == 0 {
                return Err("struct field name length 0".into());
            }
            let fields: Vec<String> = names
                .chunks(len)
                .map(|c| {
                    let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
                    String::from_utf8_lossy(&c[..end]).into_owned()
                })
                .collect();
            // Each element takes at least a tag: no reservation beyond the bytes.
            let mut elements = Vec::with_capacity(count.min(data.len() / 8));
            for _ in 0..count {
                let mut values = Vec::with_capacity(fields.len());
                for _ in 0..fields.len() {
                    let (ty, d) = r.element()?;
                    if ty != MI_MATRIX {
                        return Err(format!("struct field of data type {ty}"));
                    }
                    values.push(matrix(d, big, depth + 1)?.1);
                }
                elements.push(values);
            }
            Value::Struct { fields, elements }
        }
        MX_CELL => {
            let mut cells = Vec::with_capacity(count.min(data.len() / 8));
            for _ in 0..count {
                let (ty, d) = r.element()?;
                if ty != MI_MATRIX {
                    return Err(format!("cell of data type {ty}"));
                }
                cells.push(matrix(d, big, depth + 1)?.1);
            }
            Value::Cell(cells)
        }
        MX_CHAR => {
            if count == 0 {
                Value::Text(String::new())
            } else {
                let (ty, d) = r.element()?;
                Value::Text(text(ty, d, big)?)
            }
        }
        6..=15 => {
            if count == 0 {
                Value::Num(Vec::new())
            } else {
                let (ty, d) = r.element()?;
                Value::Num(numbers(ty, d, big)?)
            }
        }
        c => return Err(format!("variable {name}: array class {c} is not read")),
    };
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little-endian data element (padded).
    fn el(ty: u32, data: &[u8]) -> Vec<u8> {
        let mut v = ty.to_le_bytes().to_vec();
        v.extend((data.len() as u32).to_le_bytes());
        v.extend(data);
        while !v.len().is_multiple_of(8) {
            v.push(0);
        }
        v
    }

    fn header() -> Vec<u8> {
        let mut h = vec![b' '; 116];
        h.extend([0u8; 8]);
        h.extend(0x0100u16.to_le_bytes());
        h.extend(b"IM");
        h
    }

    fn array(class: u8, dims: &[i32], name: &str, rest: &[u8]) -> Vec<u8> {
        let mut body = el(MI_UINT32, &[class, 0, 0, 0, 0, 0, 0, 0]);
        let d: Vec<u8> = dims.iter().flat_map(|x| x.to_le_bytes()).collect();
        body.extend(el(MI_INT32, &d));
        body.extend(el(MI_INT8, name.as_bytes()));
        body.extend(rest);
        el(MI_MATRIX, &body)
    }

    #[test]
    fn doubles_stored_as_small_integers_and_small_elements_are_read() {
        // MATLAB stores integer-valued doubles in the smallest integer type,
        // and data of up to 4 bytes in the tag itself.
        let mut small = (MI_UINT8 | (3 << 16)).to_le_bytes().to_vec();
        small.extend([7u8, 8, 9, 0]);
        let mut file = header();
        file.extend(array(6, &[1, 3], "x", &small));
        let vars = parse(&file).unwrap();
        assert_eq!(vars, vec![("x".into(), Value::Num(vec![7.0, 8.0, 9.0]))]);
    }

    #[test]
    fn damaged_files_are_errors_not_panics() {
        let mut file = header();
        file.extend(array(6, &[1, 3], "x", &el(MI_DOUBLE, &[0; 24])));
        for cut in 0..file.len() {
            let _ = parse(&file[..cut]);
        }
        assert!(parse(&file[..100]).is_err());
        let mut odd = file.clone();
        odd[126] = b'X';
        assert!(parse(&odd).unwrap_err().contains("MI/IM"));
    }
}
