//! Float helpers of the kernels, and the CPU paths they are compiled for
//! ([`fnc_codec::cpu`], re-exported here).
//!
//! The colour kernels' max, min and clamp are plain selects, and `byte_of`
//! converts without Rust's saturating cast, so that the loops vectorise on
//! every path.

pub use fnc_codec::cpu::{available_paths, best_path, dispatch, path_named, use_path, CpuPath};

/// `y as u8` for `y` in [0, 256) (what a caller guarantees; other values give
/// an unspecified byte, never a panic), written so that it vectorises: Rust's
/// saturating float-to-int conversion compiles to a scalar conversion and an
/// insert per byte. `y`'s integer part plus 2^23 is exact, and its low eight
/// mantissa bits are that integer.
#[inline(always)]
pub fn byte_of(y: f32) -> u8 {
    ((y.trunc() + 8_388_608.0).to_bits() & 0xFF) as u8
}

// Max, min and clamp as plain selects: one `maxps` or `minps` each, where
// `f32::max`, `min` and `clamp` add NaN checks (a compare and a blend each).
// For the colour kernels, whose values come from bytes and never hold a NaN.

/// `a` if it is greater than `b`, else `b`.
#[inline(always)]
pub(crate) fn greater(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// `a` if it is less than `b`, else `b`.
#[inline(always)]
pub(crate) fn lesser(a: f32, b: f32) -> f32 {
    if a < b {
        a
    } else {
        b
    }
}

/// `v` clamped to [0, 1].
#[inline(always)]
pub(crate) fn unit(v: f32) -> f32 {
    lesser(greater(v, 0.0), 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_of_is_the_truncating_cast_over_its_range() {
        // Every integer, the floats just below and above it, and a fine grid.
        let mut ys: Vec<f32> = (0..256).map(|i| i as f32).collect();
        for i in 0..256 {
            let y = i as f32;
            ys.push(f32::from_bits(y.to_bits() + 1));
            if i > 0 {
                ys.push(f32::from_bits(y.to_bits() - 1));
            }
        }
        ys.extend((0..256 * 1024).map(|k| k as f32 / 1024.0 + 0.3 / 1024.0));
        ys.push(f32::from_bits(256f32.to_bits() - 1));
        for y in ys {
            assert_eq!(byte_of(y), y as u8, "{y:e}");
        }
    }
}
