//! Data-parallel training on libtorch's own distributed engine (c10d): a
//! TCPStore rendezvous and a Gloo (CPU) or NCCL (CUDA) process group, reached
//! through the C++ shim `csrc/dist.cpp` (the default `dist` feature), and how
//! a process learns its place in the world (torchrun's and Slurm's
//! environments). Each concern has a file: `ffi` (the shim's C API), `launch`
//! (the environment), `group` (the group and its collectives), `heartbeat`
//! (naming the rank that stopped), `buckets` (gradient buckets), `gather`
//! (the global batch's layout), `globals` (the group BatchNorm sees), `upload` (batches to the GPU on a
//! side stream).

mod buckets;
mod ffi;
mod gather;
mod globals;
mod group;
mod heartbeat;
mod launch;
mod upload;

pub use buckets::Reducer;
pub use gather::share;
pub(crate) use globals::{has_failed, note_failure};
pub use globals::{install, sync_group, take_failure};
pub use group::ProcessGroup;
pub use launch::{first_host, tasks_on_node, Backend, Launch, DEFAULT_PORT};
pub use upload::{upload, Upload};

/// Whether this build can make process groups (the default `dist` feature).
pub const AVAILABLE: bool = cfg!(feature = "dist");

#[cfg(all(test, feature = "dist"))]
mod tests;
