//! Encoders (torchvision ResNet names; a small CNN for CPU tests) and the
//! projection head, as functions of an `nn::Path`.

use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Encoder architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// A 4-layer CNN (128 features), for CPU tests and the demo.
    Small,
    /// torchvision ResNet-18 (512 features).
    Resnet18,
    /// torchvision ResNet-50 (2048 features).
    Resnet50,
}

impl Arch {
    pub fn feature_dim(self) -> i64 {
        match self {
            Arch::Small => 128,
            Arch::Resnet18 => 512,
            Arch::Resnet50 => 2048,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::Small => "small",
            Arch::Resnet18 => "resnet18",
            Arch::Resnet50 => "resnet50",
        }
    }
}

fn conv_bn(p: &nn::Path, c_in: i64, c_out: i64, stride: i64, i: usize) -> nn::SequentialT {
    let conv = nn::ConvConfig {
        stride,
        padding: 1,
        bias: false,
        ..Default::default()
    };
    nn::seq_t()
        .add(nn::conv2d(p / "features" / (3 * i), c_in, c_out, 3, conv))
        .add(nn::batch_norm2d(
            p / "features" / (3 * i + 1),
            c_out,
            Default::default(),
        ))
        .add_fn(|x| x.relu())
}

/// The small CNN: four 3x3 conv-BN-ReLU blocks (strides 2, 2, 2, 1), global
/// average pooling.
pub fn small_cnn(p: &nn::Path) -> nn::SequentialT {
    nn::seq_t()
        .add(conv_bn(p, 3, 32, 2, 0))
        .add(conv_bn(p, 32, 64, 2, 1))
        .add(conv_bn(p, 64, 128, 2, 2))
        .add(conv_bn(p, 128, 128, 1, 3))
        .add_fn(|x| x.adaptive_avg_pool2d([1, 1]).flatten(1, -1))
}

/// The encoder of `arch`, its variables named as torchvision names them.
pub fn encoder(p: &nn::Path, arch: Arch) -> Box<dyn ModuleT + Send> {
    match arch {
        Arch::Small => Box::new(small_cnn(p)),
        Arch::Resnet18 => Box::new(tch::vision::resnet::resnet18_no_final_layer(p)),
        Arch::Resnet50 => Box::new(tch::vision::resnet::resnet50_no_final_layer(p)),
    }
}

/// The projection head (SPEC §4): three linear layers of width `hidden`,
/// `hidden`, `out`, each followed by BatchNorm; ReLU after the first two only;
/// no bias anywhere (BatchNorm's shift replaces it).
pub fn projection_head(p: &nn::Path, input: i64, hidden: i64, out: i64) -> nn::SequentialT {
    let lin = nn::LinearConfig {
        bias: false,
        ..Default::default()
    };
    nn::seq_t()
        .add(nn::linear(p / "0", input, hidden, lin))
        .add(nn::batch_norm1d(p / "1", hidden, Default::default()))
        .add_fn(|x| x.relu())
        .add(nn::linear(p / "3", hidden, hidden, lin))
        .add(nn::batch_norm1d(p / "4", hidden, Default::default()))
        .add_fn(|x| x.relu())
        .add(nn::linear(p / "6", hidden, out, lin))
        .add(nn::batch_norm1d(p / "7", out, Default::default()))
}

/// Encoder plus head; the encoder's variables sit at the root of the store (so
/// they carry torchvision's names), the head's under `head.`.
pub struct Model {
    pub arch: Arch,
    pub encoder: Box<dyn ModuleT + Send>,
    pub head: nn::SequentialT,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("arch", &self.arch)
            .finish_non_exhaustive()
    }
}

impl Model {
    pub fn new(root: &nn::Path, arch: Arch, proj_dim: i64) -> Model {
        let d = arch.feature_dim();
        Model {
            arch,
            encoder: encoder(root, arch),
            head: projection_head(&(root / "head"), d, d, proj_dim),
        }
    }

    /// Features of normalised NCHW float images.
    pub fn features(&self, x: &Tensor, train: bool) -> Tensor {
        self.encoder.forward_t(x, train)
    }

    /// Projections z (not normalised; the loss normalises).
    pub fn project(&self, x: &Tensor, train: bool) -> Tensor {
        self.head.forward_t(&self.features(x, train), train)
    }
}

const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// uint8 NHWC -> normalised float NCHW on the tensor's device.
pub fn normalise(x: &Tensor) -> Tensor {
    let dev = x.device();
    let mean = Tensor::from_slice(&MEAN).to_device(dev).view([1, 3, 1, 1]);
    let std = Tensor::from_slice(&STD).to_device(dev).view([1, 3, 1, 1]);
    // Single precision throughout (f64 constants would promote the whole batch).
    let x = x.permute([0, 3, 1, 2]).to_kind(tch::Kind::Float) / 255.0f64;
    (x - mean) / std
}
