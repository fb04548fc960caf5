//! Links libtorch so that binaries run without set-up and really use CUDA, and
//! compiles the c10d shim (`csrc/dist.cpp`) against the same libtorch's headers.
include!("../build/torch_link.rs");

use std::path::{Path, PathBuf};

fn main() {
    link_libtorch();
    // The default `dist` feature: data parallelism through the c10d shim.
    if std::env::var_os("CARGO_FEATURE_DIST").is_some() {
        build_shim();
    }
}

/// The shim needs libtorch's headers (next to the library tch links), gloo's
/// headers (Debian's libgloo-dev: the torch wheel lacks them) and, for the NCCL
/// path, nccl.h and the CUDA runtime headers from the venv's nvidia packages.
fn build_shim() {
    for f in [
        "csrc/dist.cpp",
        "csrc/sync_bn.cpp",
        "csrc/upload.cpp",
        "csrc/shim.hpp",
    ] {
        println!("cargo:rerun-if-changed={f}");
    }
    let lib = match std::env::var("DEP_TCH_LIBTORCH_LIB") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => panic!("DEP_TCH_LIBTORCH_LIB is unset: torch-sys did not find libtorch"),
    };
    let torch = lib.parent().map(Path::to_path_buf).unwrap_or_default();
    let include = torch.join("include");
    let gloo = Path::new("/usr/include/gloo/config.h");
    if !gloo.exists() {
        panic!(
            "the c10d shim needs gloo's headers ({}), which the torch wheel lacks: \
             run `make setup` (as root it installs Debian's libgloo-dev) or \
             `sudo apt-get install libgloo-dev`",
            gloo.display()
        );
    }
    let mut b = cc::Build::new();
    b.cpp(true)
        .file("csrc/dist.cpp")
        .file("csrc/sync_bn.cpp")
        .file("csrc/upload.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .define("USE_C10D_GLOO", None)
        .warnings(false)
        .flag_if_supported("-w");
    // NCCL: only where libtorch has CUDA and the venv carries the headers.
    let site = torch.parent().map(Path::to_path_buf).unwrap_or_default();
    let nccl = site.join("nvidia/nccl/include");
    let cuda = ["cu13", "cuda_runtime"]
        .iter()
        .map(|d| site.join("nvidia").join(d).join("include"))
        .find(|d| {
            ["cuda_runtime_api.h", "crt/host_config.h", "nv/target"]
                .iter()
                .all(|f| d.join(f).exists())
        });
    if let (true, true, Some(cuda)) = (
        lib.join("libtorch_cuda.so").exists(),
        nccl.join("nccl.h").exists(),
        cuda,
    ) {
        b.include(&nccl)
            .include(&cuda)
            .define("USE_C10D_NCCL", None)
            .define("USE_CUDA", None)
            .define("FNC_WITH_NCCL", None);
    }
    b.compile("fnc_dist_shim");
    // The shim calls into libtorch_cpu / libtorch_cuda, linked after it.
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
        println!("cargo:rustc-link-lib=dylib=c10_cuda");
    }
}
