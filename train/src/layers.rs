//! The few layers the models are made of. Convolutions and linear layers keep
//! float32 master weights and run in the dtype of their input: a bfloat16 input
//! casts the weight for that call (differentiably, so gradients land on the
//! float32 weight), which is what bf16 autocast does for these operations.

use tch::nn::{self, Init};
use tch::Tensor;

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
/// (SPEC §5's BN decay 0.9). Its parameters stay float32 whatever the input.
pub fn batch_norm(p: nn::Path, channels: i64, spatial: bool) -> nn::BatchNorm {
    let cfg = nn::BatchNormConfig {
        ws_init: Init::Const(1.0),
        ..Default::default()
    };
    if spatial {
        nn::batch_norm2d(p, channels, cfg)
    } else {
        nn::batch_norm1d(p, channels, cfg)
    }
}
