//! The CPU paths of the kernels behind one dispatch. The scalar path is the
//! reference and always compiled; the AVX2 and AVX-512 ones are the same code
//! compiled with those instruction sets enabled (256-bit lanes, `vpmulld` and
//! fused multiply-adds; 512-bit lanes and mask registers), which the x86-64
//! baseline lacks, plus intrinsics kernels where a path has them. Integer
//! kernels, and float code whose only fused multiply-adds are explicit
//! (`mul_add`, IEEE's fused operation on every path; Rust never contracts `a
//! * b + c`): every path gives identical results (tested).
//!
//! A [`CpuPath`] is a proof that this CPU can run its instruction set: the only
//! ways to obtain the AVX2 and AVX-512 paths are [`CpuPath::avx2`] and
//! [`CpuPath::avx512`], which detect the features first, so safe code cannot ask
//! for an instruction set this CPU lacks.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
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

    /// The AVX2 path (AVX2 and FMA), if this CPU has them (`None` otherwise
    /// and off x86-64).
    pub fn avx2() -> Option<CpuPath> {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return Some(CpuPath(Isa::Avx2));
        }
        None
    }

    /// The AVX-512 path (F, BW, VL and DQ, with AVX2 and FMA), if this CPU
    /// has them (`None` otherwise and off x86-64).
    pub fn avx512() -> Option<CpuPath> {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512dq")
        {
            return Some(CpuPath(Isa::Avx512));
        }
        None
    }

    /// A short name: `scalar`, `avx2` or `avx512`.
    pub fn name(self) -> &'static str {
        match self.0 {
            Isa::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => "avx512",
        }
    }

    /// Whether this path may run AVX2 code (the AVX2 and AVX-512 paths): true
    /// only where the CPU has AVX2, as a `CpuPath` is only ever detected.
    pub fn has_avx2(self) -> bool {
        match self.0 {
            Isa::Scalar => false,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Avx512 => true,
        }
    }

    /// Whether this path may run AVX-512 (F, BW, VL, DQ) code: true only
    /// where the CPU has it, as a `CpuPath` is only ever detected.
    pub fn has_avx512(self) -> bool {
        match self.0 {
            Isa::Scalar => false,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => false,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => true,
        }
    }

    fn code(self) -> u8 {
        match self.0 {
            Isa::Scalar => 1,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => 2,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => 3,
        }
    }
}

/// Every path this CPU can run, scalar first, widest last (for tests and
/// benchmarks).
pub fn available_paths() -> Vec<CpuPath> {
    detected().to_vec()
}

// The paths of this CPU, detected once.
fn detected() -> &'static [CpuPath] {
    static PATHS: OnceLock<Vec<CpuPath>> = OnceLock::new();
    PATHS.get_or_init(|| {
        let mut v = vec![CpuPath::scalar()];
        v.extend(CpuPath::avx2());
        v.extend(CpuPath::avx512());
        v
    })
}

/// The path of this CPU by its [`CpuPath::name`], if this CPU has it.
pub fn path_named(name: &str) -> Option<CpuPath> {
    detected().iter().copied().find(|p| p.name() == name)
}

// The chosen path's code (0: not chosen yet, then the default).
static CHOSEN: AtomicU8 = AtomicU8::new(0);

/// The default path: the widest this CPU has (AVX-512, else AVX2, else
/// scalar). Measured (docs/benchmarks.md): on an AMD EPYC (Zen 4) AVX-512 made
/// the plain recipe 8-10% faster than AVX2 (its jitter ~20%); on an Intel Xeon
/// it was level with AVX2 (587 against 580 views/s). The clock drop of 512-bit
/// code on older Xeons is taken anyway where libtorch runs its own AVX-512
/// kernels. [`use_path`] (`fnc-augment bench --cpu-path`) runs another.
fn default_path() -> CpuPath {
    CpuPath::avx512()
        .or(CpuPath::avx2())
        .unwrap_or(CpuPath::scalar())
}

/// The path the ops run on: [`default_path`]'s, unless [`use_path`] chose
/// another.
pub fn best_path() -> CpuPath {
    let code = CHOSEN.load(Ordering::Relaxed);
    if let Some(p) = detected().iter().find(|p| p.code() == code) {
        return *p;
    }
    let default = default_path();
    // Only if nothing was chosen meanwhile: a use_path on another thread wins.
    match CHOSEN.compare_exchange(0, default.code(), Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => default,
        Err(code) => detected()
            .iter()
            .copied()
            .find(|p| p.code() == code)
            .unwrap_or(default),
    }
}

/// Makes every op of this process run on `path` (benchmarks compare paths).
/// A `CpuPath` only exists for instruction sets this CPU has, so no choice
/// can be unsafe; the views do not depend on it.
pub fn use_path(path: CpuPath) {
    CHOSEN.store(path.code(), Ordering::Relaxed);
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// # Safety
/// The CPU must support AVX-512 F, BW, VL, DQ, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")]
unsafe fn run_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Runs `f` compiled for `path`: `f`'s body (and what it inlines) is vectorised
/// for that instruction set. Only what is inlined into the path's function is
/// compiled for it, so `f` must be an `#[inline(always)]` closure calling
/// `#[inline(always)]` code: a closure left out of line is compiled for the
/// x86-64 baseline (SSE2, `floorf` a library call) whatever the path.
#[inline(always)]
pub fn dispatch<R>(path: CpuPath, f: impl FnOnce() -> R) -> R {
    match path.0 {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Isa::Avx2 only exists when the CPU has AVX2 and FMA
        // (CpuPath::avx2).
        Isa::Avx2 => unsafe { run_avx2(f) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Isa::Avx512 only exists when the CPU has AVX2, FMA and
        // AVX-512 F, BW, VL and DQ (CpuPath::avx512).
        Isa::Avx512 => unsafe { run_avx512(f) },
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
            std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
        );
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            CpuPath::avx512().is_some(),
            std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vl")
                && std::is_x86_feature_detected!("avx512dq")
                && std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
        );
        #[cfg(not(target_arch = "x86_64"))]
        assert!(CpuPath::avx2().is_none() && CpuPath::avx512().is_none());
        assert_eq!(available_paths()[0], CpuPath::scalar());
        assert!(available_paths().contains(&best_path()));
        for p in available_paths() {
            assert_eq!(path_named(p.name()), Some(p));
        }
        assert_eq!(path_named("avx1024"), None);
    }
}
