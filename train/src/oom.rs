//! Out of memory as an error: recognising libtorch's allocation failures (a
//! CPU allocation, CUDA out of memory) in an error's text or in the payload
//! of the panic that tch's non-`f_` methods raise on them, and reading the
//! bytes asked and free from the message.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use crate::error::TrainError;

/// What a failed allocation's message says: the bytes asked, and the device's
/// free bytes where the message gives them (CUDA does, the CPU does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    pub asked: Option<u64>,
    pub free: Option<u64>,
    /// The device's whole memory, where the message gives it (CUDA's does).
    pub total: Option<u64>,
}

/// The phrases of libtorch's allocation failures: its CPU allocator, the CUDA
/// caching allocator, a CUDA runtime or library call that could not allocate,
/// and a C++ `new` that threw.
const PHRASES: [&str; 7] = [
    "DefaultCPUAllocator: can't allocate memory",
    "DefaultCPUAllocator: not enough memory",
    "CUDA out of memory",
    "CUDA error: out of memory",
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_ALLOC_FAILED",
    "std::bad_alloc",
];

/// Whether `text` (an error's message, or a panic's) says that libtorch
/// could not allocate memory.
pub fn is_allocation_failure(text: &str) -> bool {
    PHRASES.iter().any(|p| text.contains(p))
}

/// The text of a panic's payload (`panic!` hands over a `&str` or a `String`).
pub fn panic_text(payload: &(dyn Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

/// The bytes asked and free that an allocation failure's message names;
/// `None` when `text` is not an allocation failure.
pub fn parse(text: &str) -> Option<Allocation> {
    if !is_allocation_failure(text) {
        return None;
    }
    // CPU: "... you tried to allocate 123 bytes."
    let asked = after(text, "you tried to allocate ")
        .and_then(|rest| size(rest, false))
        // CUDA: "Tried to allocate 2.00 GiB."
        .or_else(|| after(text, "Tried to allocate ").and_then(|rest| size(rest, true)));
    // CUDA since PyTorch 2.1: "... of which 1.23 GiB is free."; before:
    // "(GPU 0; 15.78 GiB total capacity; ...; 3.44 MiB free; ...)".
    let free = after(text, " of which ")
        .and_then(|rest| size(rest, true))
        .or_else(|| {
            let end = text.find(" free;")?;
            let start = text[..end].rfind("; ")? + 2;
            size(&text[start..], true)
        });
    // CUDA: "GPU 0 has a total capacity of 79.15 GiB"; before PyTorch 2.1:
    // "(GPU 0; 15.78 GiB total capacity; ...".
    let total = after(text, "total capacity of ")
        .and_then(|rest| size(rest, true))
        .or_else(|| {
            let end = text.find(" total capacity")?;
            let start = text[..end].rfind("; ")? + 2;
            size(&text[start..], true)
        });
    Some(Allocation { asked, free, total })
}

/// The text after the first `marker` in `text`.
fn after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    text.find(marker).map(|i| &text[i + marker.len()..])
}

/// The size at the start of `text`: "123 bytes", or with `units` a
/// PyTorch-formatted "2.00 GiB" (KiB, MiB, GiB, TiB, bytes).
fn size(text: &str, units: bool) -> Option<u64> {
    let mut words = text.split_whitespace();
    let number = words.next()?;
    let unit = words.next()?;
    let unit = unit.trim_end_matches(|c: char| !c.is_ascii_alphabetic());
    let scale: u64 = match unit {
        "bytes" | "B" => 1,
        "KiB" if units => 1 << 10,
        "MiB" if units => 1 << 20,
        "GiB" if units => 1 << 30,
        "TiB" if units => 1 << 40,
        _ => return None,
    };
    if scale == 1 {
        return number.parse().ok();
    }
    let x: f64 = number.parse().ok()?;
    (x.is_finite() && x >= 0.0).then(|| (x * scale as f64).round() as u64)
}

thread_local! {
    /// Set while [`guard`] runs on this thread: a panic of a failed
    /// allocation then becomes an error, and a panic hook may stay silent.
    static GUARDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread runs inside [`guard`], whose caller reports a failed
/// allocation as an error (a panic hook need not print it).
pub fn is_guarded() -> bool {
    GUARDED.with(std::cell::Cell::get)
}

/// Runs `f` (a step's compute), turning an allocation failure into
/// `Err(Allocation)`: an error whose text says so, or a panic (tch's `unwrap`
/// of libtorch's exception) whose payload does. Any other panic goes on
/// unchanged; any other error comes back as `Ok(Err(e))`.
pub(crate) fn guard<T>(
    f: impl FnOnce() -> Result<T, TrainError>,
) -> Result<Result<T, TrainError>, Allocation> {
    let before = GUARDED.with(|g| g.replace(true));
    let caught = catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(before));
    match caught {
        Ok(Err(e)) => match parse(&e.to_string()) {
            Some(a) => Err(a),
            None => Ok(Err(e)),
        },
        Ok(ok) => Ok(ok),
        Err(payload) => match panic_text(payload.as_ref()).and_then(parse) {
            Some(a) => Err(a),
            None => resume_unwind(payload),
        },
    }
}

/// This machine's available memory in bytes (`MemAvailable` of
/// /proc/meminfo), when known.
pub(crate) fn host_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// This process's address-space limit in bytes (`ulimit -v`, RLIMIT_AS:
/// "Max address space" of /proc/self/limits), when one is set.
pub(crate) fn address_space_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max address space"))?;
    line["Max address space".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The [`TrainError::OutOfMemory`] of `a` at `step` on `device`; the free
/// memory of the CPU is the host's available memory now. `checkpoint` says
/// which checkpoint to resume from.
pub(crate) fn out_of_memory(
    a: Allocation,
    step: u64,
    device: tch::Device,
    advice: String,
    checkpoint: String,
) -> TrainError {
    let (device, free, limit) = match device {
        tch::Device::Cpu => (
            "cpu".to_string(),
            a.free.or_else(host_available),
            address_space_limit(),
        ),
        tch::Device::Cuda(i) => (format!("cuda:{i}"), a.free, None),
        d => (format!("{d:?}"), a.free, None),
    };
    TrainError::OutOfMemory {
        step,
        device,
        asked: a.asked,
        free,
        limit,
        next: format!("{advice} {checkpoint}"),
    }
}

/// The memory of one of `device`'s kind that a plan can be made for: the
/// CUDA message's total capacity, or this machine's memory (under its
/// address-space limit, if any).
pub(crate) fn device_total(a: &Allocation, device: tch::Device) -> Option<u64> {
    match device {
        tch::Device::Cpu => match (crate::device::host_memory(), address_space_limit()) {
            (Some(m), Some(l)) => Some(m.min(l)),
            (m, l) => m.or(l),
        },
        _ => a.total,
    }
}

/// "an allocation of N bytes (x GiB) failed; M bytes (y GiB) free, under an
/// address-space limit of L bytes" as far as known: the middle of
/// [`TrainError::OutOfMemory`]'s message.
pub(crate) fn describe(asked: &Option<u64>, free: &Option<u64>, limit: &Option<u64>) -> String {
    let gib = |n: u64| format!("{n} bytes ({:.2} GiB)", n as f64 / (1u64 << 30) as f64);
    let mut text = match asked {
        Some(n) => format!("an allocation of {} failed", gib(*n)),
        None => "an allocation failed (its size is not in libtorch's message)".into(),
    };
    if let Some(n) = free {
        text += &format!("; {} free", gib(*n));
    }
    if let Some(n) = limit {
        text += &format!(", under an address-space limit (ulimit -v) of {}", gib(*n));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The panic text of tch's `unwrap` of a CPU allocation failure, with the
    /// C++ backtrace libtorch appends (as `Debug` of the error: escaped).
    const CPU_PANIC: &str =
        "called `Result::unwrap()` on an `Err` value: Torch(\"[enforce fail at \
        alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate memory: you tried to \
        allocate 12845056000 bytes. Error code 12 (Cannot allocate memory)\\nframe #0: \
        c10::ThrowEnforceNotMet(char const*, int, char const*, std::string const&, void const*) \
        + 0x55 (0x7f1e2c8a3f45 in /venv/lib/python3.12/site-packages/torch/lib/libc10.so)\\n\
        frame #1: c10::alloc_cpu(unsigned long) + 0x3a9 (0x7f1e2c88f9a9 in libc10.so)\\n\")";

    const CUDA_ERROR: &str = "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total \
        capacity of 139.72 GiB of which 1.25 GiB is free. Including non-PyTorch memory, this \
        process has 138.45 GiB memory in use. Of the allocated memory 135.10 GiB is allocated \
        by PyTorch, and 1.82 GiB is reserved by PyTorch but unallocated. If reserved but \
        unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True \
        to avoid fragmentation.  See documentation for Memory Management  \
        (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)\n\
        Exception raised from malloc at /pytorch/c10/cuda/CUDACachingAllocator.cpp:1300 (most \
        recent call first):\nframe #0: c10::Error::Error(c10::SourceLocation, std::string) + \
        0x98 (0x7f5 in libc10.so)\nframe #1: <unknown function> + 0x3b2f1 (0x7f6 in \
        libc10_cuda.so)\n";

    #[test]
    fn reads_the_bytes_of_a_cpu_failure_in_a_panic_with_its_backtrace() {
        assert!(is_allocation_failure(CPU_PANIC));
        let a = parse(CPU_PANIC).unwrap();
        assert_eq!(a.asked, Some(12_845_056_000));
        assert_eq!(a.free, None);
        // The older wording of the same allocator.
        let old =
            "DefaultCPUAllocator: not enough memory: you tried to allocate 64 bytes. Buy new RAM!";
        assert_eq!(parse(old).unwrap().asked, Some(64));
    }

    #[test]
    fn reads_asked_and_free_of_a_cuda_failure_old_and_new() {
        let a = parse(CUDA_ERROR).unwrap();
        assert_eq!(a.asked, Some(2 << 30));
        assert_eq!(a.total, Some((139.72 * (1u64 << 30) as f64).round() as u64));
        assert_eq!(a.free, Some((1.25 * (1u64 << 30) as f64) as u64));
        let old = "CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 15.78 GiB total \
            capacity; 14.56 GiB already allocated; 3.44 MiB free; 14.71 GiB reserved in total \
            by PyTorch)\nframe #0: c10::Error::Error";
        let a = parse(old).unwrap();
        assert_eq!(a.asked, Some(20 << 20));
        assert_eq!(a.free, Some((3.44 * (1u64 << 20) as f64).round() as u64));
        assert_eq!(a.total, Some((15.78 * (1u64 << 30) as f64).round() as u64));
        // The same message as tch's panic shows it.
        let panic = format!("called `Result::unwrap()` on an `Err` value: Torch({CUDA_ERROR:?})");
        assert_eq!(parse(&panic), parse(CUDA_ERROR));
    }

    #[test]
    fn failures_without_sizes_are_recognised_and_others_are_not() {
        let a = parse("CUDA error: out of memory\nCUDA kernel errors might be ...").unwrap();
        assert_eq!(
            a,
            Allocation {
                asked: None,
                free: None,
                total: None
            }
        );
        assert!(parse("std::bad_alloc").is_some());
        for other in [
            "shape '[2, 3]' is invalid for input of size 7",
            "index out of range in self",
            "called `Option::unwrap()` on a `None` value",
            "you tried to allocate 5 bytes",
        ] {
            assert!(!is_allocation_failure(other), "{other}");
            assert_eq!(parse(other), None);
        }
    }

    #[test]
    fn guard_turns_allocation_failures_into_errors_and_resumes_other_panics() {
        // The default hook prints the panics below; that is harmless here.
        let a = guard::<()>(|| panic!("{}", CPU_PANIC)).unwrap_err();
        assert_eq!(a.asked, Some(12_845_056_000));
        let e = TrainError::Torch(tch::TchError::Torch(CUDA_ERROR.into()));
        assert_eq!(
            guard::<()>(|| Err(e)).unwrap_err().free,
            Some(1_342_177_280)
        );
        let other = TrainError::EngineStopped;
        assert!(matches!(
            guard::<()>(|| Err(other)),
            Ok(Err(TrainError::EngineStopped))
        ));
        assert_eq!(guard(|| Ok(7)).unwrap().unwrap(), 7);
        let resumed = catch_unwind(|| guard::<()>(|| panic!("index out of range")));
        let payload = resumed.unwrap_err();
        assert_eq!(panic_text(payload.as_ref()), Some("index out of range"));
    }

    #[test]
    fn the_message_names_step_device_bytes_and_what_to_do() {
        let a = Allocation {
            asked: Some(3 << 30),
            free: Some(1 << 30),
            total: Some(80_000_000_000),
        };
        // What the paper's preset on 8 such GPUs would use.
        let cfg: crate::config::TrainConfig =
            toml::from_str(include_str!("../../configs/fnc-paper.toml")).unwrap();
        let advice = {
            let _held = crate::generator_lock();
            crate::plan::advice(&cfg, 8, device_total(&a, tch::Device::Cuda(1)), true)
        };
        let e = out_of_memory(
            a,
            7,
            tch::Device::Cuda(1),
            advice,
            "The last good checkpoint is x.".into(),
        );
        let text = e.to_string();
        for want in [
            "step 7",
            "cuda:1",
            "3221225472 bytes (3.00 GiB)",
            "1073741824 bytes (1.00 GiB) free",
            "`fnc-train plan` for this config on 8 device(s) of 80.0 GB would use --micro-batch",
            "The last good checkpoint is x.",
        ] {
            assert!(text.contains(want), "{want:?} not in {text}");
        }
    }
}
