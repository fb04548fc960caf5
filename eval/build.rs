//! Links libtorch so that binaries run without set-up and really use CUDA.
include!("../build/torch_link.rs");

fn main() {
    link_libtorch();
}
