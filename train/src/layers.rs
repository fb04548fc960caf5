//! The few layers the models are made of. Convolutions and linear layers keep
//! float32 master weights and run in the dtype of their input: a bfloat16 input
//! casts the weight for that call (differentiably, so gradients land on the
//! float32 weight), which is what bf16 autocast does for these operations.

use std::cell::Cell;

use tch::nn::{self, Init};
use tch::Tensor;

thread_local! {
    /// Set while a forward is replayed for its backward (`--recompute`,
    /// `--micro-batch`): BatchNorm then normalises with the batch statistics
    /// as before but leaves the running statistics alone, which the first
    /// forward of the step already updated.
    static REPLAYING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` as the replay of a forward already run this step (see
/// [`REPLAYING`]); nested calls stay replays.
pub fn replaying<T>(f: impl FnOnce() -> T) -> T {
    /// Restores the flag however `f` ends, a panic included.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            REPLAYING.with(|r| r.set(self.0));
        }
    }
    let _restore = Restore(REPLAYING.with(|r| r.replace(true)));
    f()
}

fn is_replay() -> bool {
    REPLAYING.with(Cell::get)
}

/// `w` in the dtype of `x` (the same tensor when they already agree).
fn like_input(w: &Tensor, x: &Tensor) -> Tensor {
    if w.kind() == x.kind() {
        w.shallow_clone()
    } else {
        w.to_kind(x.kind())
    }
}

/// torchvision's convolution initialisation (Kaiming normal, fan-out, ReLU).
pub const CONV_INIT: Init = Init::Kaiming {
    dist: nn::init::NormalOrUniform::Normal,
    fan: nn::init::FanInOut::FanOut,
    non_linearity: nn::init::NonLinearity::ReLU,
};

/// A square 2-D convolution without bias, variable `weight` under `p`.
#[derive(Debug)]
pub struct Conv2d {
    weight: Tensor,
    stride: i64,
    padding: i64,
}

impl Conv2d {
    pub fn new(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64, init: Init) -> Conv2d {
        Conv2d {
            weight: p.var("weight", &[c_out, c_in, k, k], init),
            stride,
            padding: k / 2,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.conv2d::<Tensor>(
            &like_input(&self.weight, x),
            None,
            [self.stride, self.stride],
            [self.padding, self.padding],
            [1, 1],
            1,
        )
    }
}

/// A linear layer without bias (`weight` of shape `[out, in]`, as PyTorch's).
#[derive(Debug)]
pub struct Linear {
    weight: Tensor,
}

impl Linear {
    pub fn new(p: nn::Path, input: i64, output: i64) -> Linear {
        Linear {
            weight: p.var(
                "weight",
                &[output, input],
                nn::init::DEFAULT_KAIMING_UNIFORM,
            ),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear::<Tensor>(&like_input(&self.weight, x), None)
    }
}

/// BatchNorm as torchvision initialises it (scale 1, shift 0), momentum 0.1
/// (SPEC §5's BN decay 0.9), with tch's variable names (`weight`, `bias`,
/// `running_mean`, `running_var`). Its parameters stay float32 whatever the
/// input. In training mode inside a data-parallel run with synchronised
/// BatchNorm ([`crate::dist::sync_group`]), batch statistics cover the global
/// batch.
#[derive(Debug)]
pub struct BatchNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
}

const BN_MOMENTUM: f64 = 0.1;
const BN_EPS: f64 = 1e-5;

/// See [`BatchNorm`]; `spatial` is accepted for the call sites' clarity (2-D
/// feature maps or flat features work alike).
pub fn batch_norm(p: nn::Path, channels: i64, _spatial: bool) -> BatchNorm {
    BatchNorm {
        weight: p.var("weight", &[channels], Init::Const(1.0)),
        bias: p.var("bias", &[channels], Init::Const(0.0)),
        running_mean: p.zeros_no_train("running_mean", &[channels]),
        running_var: p.ones_no_train("running_var", &[channels]),
    }
}

impl nn::ModuleT for BatchNorm {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        if train {
            if let Some(group) = crate::dist::sync_group() {
                return self.forward_global(x, group);
            }
        }
        // In a replay, no running statistics: libtorch normalises with the
        // batch's and updates nothing.
        let running = !(train && is_replay());
        Tensor::batch_norm(
            x,
            Some(&self.weight),
            Some(&self.bias),
            running.then_some(&self.running_mean),
            running.then_some(&self.running_var),
            train,
            BN_MOMENTUM,
            BN_EPS,
            true,
        )
    }
}

impl BatchNorm {
    /// Training-mode BatchNorm over every rank's batch, as one process
    /// holding the global batch would compute it (outputs, gradients and
    /// running statistics): each rank's moments gathered and merged by
    /// count, the backward's two per-channel sums added over the ranks
    /// ([`crate::dist::ProcessGroup::sync_batch_norm`]). A replay leaves the
    /// running statistics alone.
    fn forward_global(&self, x: &Tensor, group: &crate::dist::ProcessGroup) -> Tensor {
        if crate::dist::has_failed() {
            return x * f64::NAN;
        }
        let running = (!is_replay()).then_some((&self.running_mean, &self.running_var));
        match group.sync_batch_norm(x, &self.weight, &self.bias, running, BN_MOMENTUM, BN_EPS) {
            Ok(y) => y,
            // A module cannot return an error: note it for the step to
            // report, and poison the output so nothing trains on it.
            Err(e) => {
                crate::dist::note_failure(&e);
                x * f64::NAN
            }
        }
    }
}
