//! Row kernels per CPU feature behind one dispatch. The scalar kernels are the
//! reference and always compiled; the AVX2 ones are the same code compiled with
//! AVX2 enabled (256-bit lanes, `vpmulld`), which the x86-64 baseline lacks.
//! Integer kernels: every path gives identical results (tested).
//!
//! A [`CpuPath`] is a proof that this CPU can run its instruction set: the only
//! way to obtain the AVX2 path is [`CpuPath::avx2`], which detects the feature
//! first, so safe code cannot ask for AVX2 on a CPU without it.
#![allow(unsafe_code)]

use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

/// An instruction-set path of the kernels that this CPU supports. Opaque: it
/// is obtained from [`CpuPath::scalar`], [`CpuPath::avx2`] (only when detected),
/// [`available_paths`] or [`best_path`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuPath(Isa);

impl CpuPath {
    /// The portable reference path, available everywhere.
    pub const fn scalar() -> CpuPath {
        CpuPath(Isa::Scalar)
    }

    /// The AVX2 path, if this CPU has AVX2 (`None` otherwise and off x86-64).
    pub fn avx2() -> Option<CpuPath> {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            return Some(CpuPath(Isa::Avx2));
        }
        None
    }

    /// A short name: `scalar` or `avx2`.
    pub fn name(self) -> &'static str {
        match self.0 {
            Isa::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => "avx2",
        }
    }
}

/// Every path this CPU can run, scalar first (for tests and benchmarks).
pub fn available_paths() -> Vec<CpuPath> {
    let mut v = vec![CpuPath::scalar()];
    v.extend(CpuPath::avx2());
    v
}

/// The best path of this CPU, detected once.
pub fn best_path() -> CpuPath {
    static PATH: OnceLock<CpuPath> = OnceLock::new();
    *PATH.get_or_init(|| CpuPath::avx2().unwrap_or(CpuPath::scalar()))
}

mod scalar {
    pub fn mac_u8(acc: &mut [u32], src: &[u8], w: u32) {
        for (a, &v) in acc.iter_mut().zip(src) {
            *a += w * v as u32;
        }
    }

    pub fn mac_u16(acc: &mut [u32], src: &[u16], w: u32) {
        for (a, &v) in acc.iter_mut().zip(src) {
            *a += w * v as u32;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn mac_u8(acc: &mut [u32], src: &[u8], w: u32) {
        super::scalar::mac_u8(acc, src, w)
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn mac_u16(acc: &mut [u32], src: &[u16], w: u32) {
        super::scalar::mac_u16(acc, src, w)
    }
}

/// `acc[i] += w * src[i]` over the shorter of the two.
pub fn mac_u8(path: CpuPath, acc: &mut [u32], src: &[u8], w: u32) {
    match path.0 {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a CpuPath holding Isa::Avx2 is only made by CpuPath::avx2,
        // after is_x86_feature_detected!("avx2") returned true on this CPU.
        Isa::Avx2 => unsafe { avx2::mac_u8(acc, src, w) },
        Isa::Scalar => scalar::mac_u8(acc, src, w),
    }
}

/// `acc[i] += w * src[i]` over the shorter of the two.
pub fn mac_u16(path: CpuPath, acc: &mut [u32], src: &[u16], w: u32) {
    match path.0 {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in mac_u8: Isa::Avx2 only exists when the CPU has AVX2.
        Isa::Avx2 => unsafe { avx2::mac_u16(acc, src, w) },
        Isa::Scalar => scalar::mac_u16(acc, src, w),
    }
}

/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Runs `f` compiled for `path`: `f`'s body (and what it inlines) is vectorised
/// for that instruction set.
#[inline(always)]
pub fn dispatch<R>(path: CpuPath, f: impl FnOnce() -> R) -> R {
    match path.0 {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Isa::Avx2 only exists when the CPU has AVX2 (CpuPath::avx2).
        Isa::Avx2 => unsafe { run_avx2(f) },
        Isa::Scalar => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avx2_is_offered_exactly_when_detected() {
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            CpuPath::avx2().is_some(),
            std::is_x86_feature_detected!("avx2")
        );
        #[cfg(not(target_arch = "x86_64"))]
        assert!(CpuPath::avx2().is_none());
        assert_eq!(available_paths()[0], CpuPath::scalar());
        assert!(available_paths().contains(&best_path()));
    }
}
