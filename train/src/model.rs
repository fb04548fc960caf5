//! Encoders (torchvision ResNet names; a small CNN for CPU tests) and the
//! projection head, as functions of an `nn::Path`.

use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

use crate::layers::{batch_norm, BatchNorm, Conv2d, Linear};
use crate::recompute::Segmented;
use crate::resnet;

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

/// The small CNN: four 3x3 conv-BN-ReLU blocks (strides 2, 2, 2, 1), global
/// average pooling; variables `features.{0,3,6,9}` (convs) and
/// `features.{1,4,7,10}` (BatchNorms), as an `nn.Sequential` would name them.
#[derive(Debug)]
pub struct SmallCnn {
    blocks: Vec<(Conv2d, BatchNorm)>,
}

/// See [`SmallCnn`].
pub fn small_cnn(p: &nn::Path) -> SmallCnn {
    let f = p / "features";
    let widths = [(3, 32, 2), (32, 64, 2), (64, 128, 2), (128, 128, 1)];
    let blocks = widths
        .iter()
        .enumerate()
        .map(|(i, &(c_in, c_out, stride))| {
            (
                Conv2d::new(
                    &f / (3 * i),
                    c_in,
                    c_out,
                    3,
                    stride,
                    nn::init::DEFAULT_KAIMING_UNIFORM,
                ),
                batch_norm(&f / (3 * i + 1), c_out, true),
            )
        })
        .collect();
    SmallCnn { blocks }
}

impl ModuleT for SmallCnn {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut y = x.shallow_clone();
        for k in 0..self.segments() {
            y = self.forward_segment(k, &y, train);
        }
        y
    }
}

/// Segments: each conv-BN-ReLU block, the last one with the pooling.
impl Segmented for SmallCnn {
    fn segments(&self) -> usize {
        self.blocks.len()
    }

    fn forward_segment(&self, k: usize, x: &Tensor, train: bool) -> Tensor {
        let (conv, bn) = &self.blocks[k];
        let mut y = bn.forward_t(&conv.forward(x), train);
        let _ = y.relu_();
        if k + 1 == self.blocks.len() {
            y.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
        } else {
            y
        }
    }
}

/// An encoder: a module that is also a sequence of segments.
pub trait Encoder: ModuleT + Segmented + Send {}

impl<T: ModuleT + Segmented + Send> Encoder for T {}

/// The encoder of `arch`, its variables named as torchvision names them.
pub fn encoder(p: &nn::Path, arch: Arch) -> Box<dyn Encoder> {
    match arch {
        Arch::Small => Box::new(small_cnn(p)),
        Arch::Resnet18 => Box::new(resnet::resnet18(p)),
        Arch::Resnet50 => Box::new(resnet::resnet50(p)),
    }
}

/// The projection head (SPEC §4): three linear layers of width `hidden`,
/// `hidden`, `out`, each followed by BatchNorm; ReLU after the first two only;
/// no bias anywhere (BatchNorm's shift replaces it). Variables `0`, `3`, `6`
/// (linear) and `1`, `4`, `7` (BatchNorm) under `p`.
#[derive(Debug)]
pub struct ProjectionHead {
    layers: Vec<(Linear, BatchNorm)>,
}

/// See [`ProjectionHead`].
pub fn projection_head(p: &nn::Path, input: i64, hidden: i64, out: i64) -> ProjectionHead {
    let dims = [(input, hidden), (hidden, hidden), (hidden, out)];
    let layers = dims
        .iter()
        .enumerate()
        .map(|(i, &(a, b))| {
            (
                Linear::new(p / (3 * i), a, b),
                batch_norm(p / (3 * i + 1), b, false),
            )
        })
        .collect();
    ProjectionHead { layers }
}

impl ProjectionHead {
    /// The output of the first `n` layers (0 = the input itself): what the
    /// reference's `ft_proj_selector = n` fine-tunes from.
    pub fn forward_layers(&self, x: &Tensor, n: usize, train: bool) -> Tensor {
        let last = self.layers.len() - 1;
        let mut y = x.shallow_clone();
        for (k, (lin, bn)) in self.layers.iter().enumerate().take(n) {
            if k == last && y.kind() != tch::Kind::Float {
                // The embeddings leave the head in float32: the loss (and its
                // 0.7 threshold) sees them unrounded by bfloat16.
                y = y.to_kind(tch::Kind::Float);
            }
            y = bn.forward_t(&lin.forward(&y), train);
            if k < last {
                let _ = y.relu_();
            }
        }
        y
    }
}

impl ModuleT for ProjectionHead {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward_layers(x, self.layers.len(), train)
    }
}

/// Encoder plus head; the encoder's variables sit at the root of the store (so
/// they carry torchvision's names), the head's under `head.`.
pub struct Model {
    pub arch: Arch,
    pub encoder: Box<dyn Encoder>,
    pub head: ProjectionHead,
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

    /// Width of the encoder's features.
    pub fn feature_dim(&self) -> i64 {
        self.arch.feature_dim()
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

/// Segments: the encoder's, then the projection head as one (its
/// activations are a few rows of features).
impl Segmented for Model {
    fn segments(&self) -> usize {
        self.encoder.segments() + 1
    }

    fn forward_segment(&self, k: usize, x: &Tensor, train: bool) -> Tensor {
        if k < self.encoder.segments() {
            self.encoder.forward_segment(k, x, train)
        } else {
            self.head.forward_t(x, train)
        }
    }
}

/// How a new model's weights are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum InitScheme {
    /// torchvision's: Kaiming-normal (fan-out) convolutions, BatchNorm scale 1
    /// and shift 0 everywhere, the head's linear layers Kaiming-uniform.
    #[default]
    Torchvision,
    /// The reference code's (SimCLR v2's TF ResNet and head): convolutions
    /// variance-scaling fan-in (truncated normal, std sqrt(1 / fan_in)), the
    /// last BatchNorm scale of every residual block 0, head weights
    /// N(0, 0.01), and no shift on the head's last BatchNorm (`center=False`).
    Reference,
}

/// What a model is made of: the one input of [`build_model`]
/// (`TrainConfig::model_spec` gives a run's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSpec {
    pub arch: Arch,
    pub proj_dim: i64,
    pub init: InitScheme,
    /// Convolution weights (and so activations) channels-last.
    pub channels_last: bool,
}

/// The model of `spec` in `vs`, initialised per `spec.init`, its convolution
/// weights channels-last when `spec` says so: the one constructor of online,
/// momentum and evaluation models. Its weights are drawn from libtorch's
/// generator as it stands: a caller that wants a reproducible draw seeds it
/// first (`tch::manual_seed`), as training does with `--seed`.
pub fn build_model(vs: &nn::VarStore, spec: &ModelSpec) -> Model {
    let model = Model::new(&vs.root(), spec.arch, spec.proj_dim);
    if spec.init == InitScheme::Reference {
        reference_init(vs, spec.arch);
    }
    if spec.channels_last {
        to_channels_last(vs);
    }
    model
}

/// The reference's initialisation ([`InitScheme::Reference`]) over a model
/// built by [`Model::new`], found by torchvision's variable names.
pub fn reference_init(vs: &nn::VarStore, arch: Arch) {
    // The last BatchNorm of a residual block: bn2 of a basic block, bn3 of a
    // bottleneck (`layer2.0.bn3.weight`).
    let last_bn = match arch {
        Arch::Resnet18 => Some(".bn2.weight"),
        Arch::Resnet50 => Some(".bn3.weight"),
        Arch::Small => None,
    };
    tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            if t.dim() == 4 {
                let s = t.size();
                let fan_in = (s[1] * s[2] * s[3]) as f64;
                let w = truncated_normal(&s, (1.0 / fan_in).sqrt(), t.device());
                t.copy_(&w);
            } else if name.starts_with("layer") && last_bn.is_some_and(|l| name.ends_with(l)) {
                let _ = t.zero_();
            } else if name.starts_with("head.") && t.dim() == 2 {
                let _ = t.normal_(0.0, 0.01);
            } else if name == HEAD_LAST_BN_SHIFT {
                let _ = t.zero_();
                let _ = t.set_requires_grad(false);
            }
        }
    })
}

/// The shift of the head's last BatchNorm (layers `head.{1,4,7}`).
const HEAD_LAST_BN_SHIFT: &str = "head.7.bias";

/// A truncated normal (within two standard deviations of the underlying
/// normal) whose standard deviation is `std`, as TF's variance scaling draws
/// it: by the inverse CDF of uniforms between Phi(-2) and Phi(2).
fn truncated_normal(shape: &[i64], std: f64, device: tch::Device) -> Tensor {
    const PHI_LO: f64 = 0.022_750_131_948_179_195;
    const PHI_HI: f64 = 0.977_249_868_051_820_8;
    // The std of a standard normal truncated at +-2.
    const TRUNCATED_STD: f64 = 0.879_625_661_034_239_8;
    let u = Tensor::rand(shape, (tch::Kind::Float, device)) * (PHI_HI - PHI_LO) + PHI_LO;
    (u * 2.0 - 1.0).erfinv() * (std::f64::consts::SQRT_2 * std / TRUNCATED_STD)
}

const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Rewrites every 4-D variable of `vs` (the convolution weights) with
/// channels-last strides, in place: the module handles see the change, and
/// optimiser state created afterwards follows it.
pub fn to_channels_last(vs: &nn::VarStore) {
    tch::no_grad(|| {
        for (_, mut v) in vs.variables() {
            if v.dim() == 4 {
                let nhwc = v.permute([0, 2, 3, 1]).contiguous();
                v.set_data(&nhwc.permute([0, 3, 1, 2]));
            }
        }
    })
}

/// Whether a 4-D tensor is laid out channels-last (NHWC strides).
pub fn is_channels_last(x: &Tensor) -> bool {
    let (size, stride) = (x.size(), x.stride());
    if size.len() != 4 {
        return false;
    }
    let (c, h, w) = (size[1], size[2], size[3]);
    stride[1] == 1 && stride[3] == c && stride[2] == w * c && stride[0] == h * w * c
}

/// uint8 NHWC -> normalised NCHW in `kind` (float32 statistics, then cast),
/// channels-last or contiguous.
pub fn normalise_as(x: &Tensor, kind: tch::Kind, channels_last: bool) -> Tensor {
    let x = normalise(x);
    let x = if channels_last { x } else { x.contiguous() };
    if kind == tch::Kind::Float {
        x
    } else {
        x.to_kind(kind)
    }
}

/// uint8 NHWC -> normalised float NCHW on the tensor's device. The permuted
/// view keeps the NHWC storage order, so the result has channels-last strides.
pub fn normalise(x: &Tensor) -> Tensor {
    let dev = x.device();
    let mean = crate::host::upload(&MEAN, dev).view([1, 3, 1, 1]);
    let std = crate::host::upload(&STD, dev).view([1, 3, 1, 1]);
    // Single precision throughout (f64 constants would promote the whole batch).
    let x = x.permute([0, 3, 1, 2]).to_kind(tch::Kind::Float) / 255.0f64;
    (x - mean) / std
}

/// The passes of prepared view groups through the model: consecutive groups
/// of one image size concatenated, so that BatchNorm's batch statistics (and
/// the running statistics used at evaluation) cover all their views, as in
/// the reference's single forward pass of all 2 + S views. Groups of
/// different sizes cannot share a pass: each then has BatchNorm statistics of
/// its own.
pub fn passes(inputs: &[Tensor]) -> Vec<Tensor> {
    let mut out = Vec::new();
    let mut k = 0;
    while k < inputs.len() {
        let side = inputs[k].size()[1..].to_vec();
        let mut j = k + 1;
        while j < inputs.len() && inputs[j].size()[1..] == side[..] {
            j += 1;
        }
        out.push(if j - k == 1 {
            inputs[k].shallow_clone()
        } else {
            Tensor::cat(&inputs[k..j], 0)
        });
        k = j;
    }
    out
}

/// Train-mode projections of prepared view groups ([`passes`] of them),
/// concatenated, as float32: the loss and its detection run in float32
/// whatever the model computes in.
pub fn project_groups(model: &Model, inputs: &[Tensor]) -> Tensor {
    let parts: Vec<Tensor> = passes(inputs)
        .iter()
        .map(|x| model.project(x, true))
        .collect();
    Tensor::cat(&parts, 0).to_kind(tch::Kind::Float)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device, Kind};

    /// The BatchNorm running means of a fresh small model (seeded) after
    /// `pass` runs on it.
    fn running_means(pass: impl Fn(&Model)) -> Vec<Tensor> {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Model::new(&vs.root(), crate::model::Arch::Small, 16);
        pass(&model);
        let mut v: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(n, _)| n.ends_with("running_mean"))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.into_iter().map(|(_, t)| t).collect()
    }

    #[test]
    fn groups_of_one_size_share_one_batchnorm_pass() {
        let _held = crate::generator_lock();
        tch::manual_seed(1);
        let a = Tensor::randn([4, 3, 16, 16], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([6, 3, 16, 16], (Kind::Float, Device::Cpu)) * 2.0 + 1.0;
        let c = Tensor::randn([6, 3, 8, 8], (Kind::Float, Device::Cpu));
        let joint = running_means(|m| {
            let _ = project_groups(m, &[a.shallow_clone(), b.shallow_clone()]);
        });
        let concat = running_means(|m| {
            let _ = m.project(&Tensor::cat(&[&a, &b], 0), true);
        });
        let separate = running_means(|m| {
            let _ = m.project(&a, true);
            let _ = m.project(&b, true);
        });
        assert_eq!(joint.len(), 7, "4 encoder and 3 head BatchNorms");
        for (j, c) in joint.iter().zip(&concat) {
            assert!(
                j.allclose(c, 1e-6, 1e-7, false),
                "one pass = the concatenated batch"
            );
        }
        assert!(
            joint
                .iter()
                .zip(&separate)
                .any(|(j, s)| !j.allclose(s, 1e-4, 1e-5, false)),
            "two passes would give other statistics"
        );
        // A group of another size passes on its own: same as separate passes.
        let mixed = running_means(|m| {
            let _ = project_groups(m, &[a.shallow_clone(), c.shallow_clone()]);
        });
        let apart = running_means(|m| {
            let _ = m.project(&a, true);
            let _ = m.project(&c, true);
        });
        for (x, y) in mixed.iter().zip(&apart) {
            assert!(x.allclose(y, 1e-6, 1e-7, false));
        }
    }
}
