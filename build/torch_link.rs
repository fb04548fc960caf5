// Shared by the build scripts of the crates whose binaries link libtorch
// (train, eval): `include!`d, so the rule lives in one place.
//
// - RUNPATH (new dtags) to the venv's `torch/lib`: binaries run here as they are,
//   while `LD_LIBRARY_PATH` can still point them at another machine's libtorch.
// - `libtorch_cuda.so` linked with `--no-as-needed`: nothing references it
//   directly, so `--as-needed` would drop it and CUDA would silently be missing.
fn link_libtorch() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,--enable-new-dtags,-rpath,{dir}");
        let cuda = std::path::Path::new(&dir).join("libtorch_cuda.so");
        if cuda.exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,-ltorch,--as-needed");
        }
    }
}
