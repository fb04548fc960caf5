//! Row kernels per CPU feature behind one dispatch. The scalar kernels are the
//! reference and always compiled; the AVX2 ones are the same code compiled with
//! AVX2 enabled (256-bit lanes, `vpmulld`), which the x86-64 baseline lacks.
//! Integer kernels: every path gives identical results (tested).
#![allow(unsafe_code)]

use std::sync::OnceLock;

/// The instruction-set paths the kernels have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuPath {
    Scalar,
    Avx2,
}

/// Every path this CPU can run (for tests and benchmarks).
pub fn available_paths() -> Vec<CpuPath> {
    let mut v = vec![CpuPath::Scalar];
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        v.push(CpuPath::Avx2);
    }
    v
}

/// The best path of this CPU, detected once.
pub fn best_path() -> CpuPath {
    static PATH: OnceLock<CpuPath> = OnceLock::new();
    *PATH.get_or_init(|| available_paths().last().copied().unwrap_or(CpuPath::Scalar))
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
    #[target_feature(enable = "avx2")]
    pub unsafe fn mac_u8(acc: &mut [u32], src: &[u8], w: u32) {
        super::scalar::mac_u8(acc, src, w)
    }

    #[target_feature(enable = "avx2")]
    pub unsafe fn mac_u16(acc: &mut [u32], src: &[u16], w: u32) {
        super::scalar::mac_u16(acc, src, w)
    }
}

/// `acc[i] += w * src[i]` over the shorter of the two.
pub fn mac_u8(path: CpuPath, acc: &mut [u32], src: &[u8], w: u32) {
    match path {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: CpuPath::Avx2 is only produced by available_paths() after
        // is_x86_feature_detected!("avx2") returned true on this CPU.
        CpuPath::Avx2 => unsafe { avx2::mac_u8(acc, src, w) },
        _ => scalar::mac_u8(acc, src, w),
    }
}

/// `acc[i] += w * src[i]` over the shorter of the two.
pub fn mac_u16(path: CpuPath, acc: &mut [u32], src: &[u16], w: u32) {
    match path {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in mac_u8: Avx2 only exists when the CPU has AVX2.
        CpuPath::Avx2 => unsafe { avx2::mac_u16(acc, src, w) },
        _ => scalar::mac_u16(acc, src, w),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Runs `f` compiled for `path`: `f`'s body (and what it inlines) is vectorised
/// for that instruction set.
#[inline(always)]
pub fn dispatch<R>(path: CpuPath, f: impl FnOnce() -> R) -> R {
    match path {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Avx2 only exists when the CPU has AVX2 (see available_paths).
        CpuPath::Avx2 => unsafe { run_avx2(f) },
        _ => f(),
    }
}
