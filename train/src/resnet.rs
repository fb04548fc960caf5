//! torchvision's ResNet-18 and ResNet-50 (v1.5: the stride on the 3x3
//! convolution of a bottleneck) without the classifier, parameters named as
//! torchvision names them (`layer2.0.downsample.1.running_var`).
//!
//! ReLUs and the residual sum work in place, as torchvision's do: each
//! out-of-place one would allocate an activation-sized tensor per block, and on
//! the CPU those fresh allocations cost page faults on every step.

use tch::nn::{self, ModuleT};
use tch::Tensor;

use crate::layers::{batch_norm, BatchNorm, Conv2d, CONV_INIT};
use crate::recompute::Segmented;

/// A conv followed by its BatchNorm.
#[derive(Debug)]
struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm,
}

impl ConvBn {
    #[allow(clippy::too_many_arguments)]
    fn new(p: &nn::Path, conv: &str, bn: &str, c_in: i64, c_out: i64, k: i64, s: i64) -> ConvBn {
        ConvBn {
            conv: Conv2d::new(p / conv, c_in, c_out, k, s, CONV_INIT),
            bn: batch_norm(p / bn, c_out, true),
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        self.bn.forward_t(&self.conv.forward(x), train)
    }
}

/// A residual block: two (basic) or three (bottleneck) conv-BN stages, ReLU
/// between them, the shortcut added before the last ReLU.
#[derive(Debug)]
struct Block {
    stages: Vec<ConvBn>,
    downsample: Option<ConvBn>,
}

impl Block {
    fn basic(p: &nn::Path, c_in: i64, c_out: i64, stride: i64) -> Block {
        Block {
            stages: vec![
                ConvBn::new(p, "conv1", "bn1", c_in, c_out, 3, stride),
                ConvBn::new(p, "conv2", "bn2", c_out, c_out, 3, 1),
            ],
            downsample: (stride != 1 || c_in != c_out)
                .then(|| ConvBn::new(&(p / "downsample"), "0", "1", c_in, c_out, 1, stride)),
        }
    }

    fn bottleneck(p: &nn::Path, c_in: i64, width: i64, stride: i64) -> Block {
        let c_out = 4 * width;
        Block {
            stages: vec![
                ConvBn::new(p, "conv1", "bn1", c_in, width, 1, 1),
                ConvBn::new(p, "conv2", "bn2", width, width, 3, stride),
                ConvBn::new(p, "conv3", "bn3", width, c_out, 1, 1),
            ],
            downsample: (stride != 1 || c_in != c_out)
                .then(|| ConvBn::new(&(p / "downsample"), "0", "1", c_in, c_out, 1, stride)),
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let last = self.stages.len() - 1;
        let mut y = x.shallow_clone();
        for (k, stage) in self.stages.iter().enumerate() {
            y = stage.forward(&y, train);
            if k < last {
                let _ = y.relu_();
            }
        }
        // BatchNorm's backward needs its input, not its output, so the sum can
        // overwrite the output.
        match &self.downsample {
            Some(d) => y += d.forward(x, train),
            None => y += x,
        }
        let _ = y.relu_();
        y
    }
}

/// A ResNet trunk: stem, four stages, global average pooling.
#[derive(Debug)]
pub struct ResNet {
    stem: ConvBn,
    blocks: Vec<Block>,
}

impl ResNet {
    fn new(p: &nn::Path, bottleneck: bool, depths: [i64; 4]) -> ResNet {
        let stem = ConvBn::new(p, "conv1", "bn1", 3, 64, 7, 2);
        let mut blocks = Vec::new();
        let mut c_in = 64;
        for (stage, (&n, width)) in depths.iter().zip([64i64, 128, 256, 512]).enumerate() {
            let layer = p / format!("layer{}", stage + 1);
            for i in 0..n {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                let bp = &layer / i;
                if bottleneck {
                    blocks.push(Block::bottleneck(&bp, c_in, width, stride));
                    c_in = 4 * width;
                } else {
                    blocks.push(Block::basic(&bp, c_in, width, stride));
                    c_in = width;
                }
            }
        }
        ResNet { stem, blocks }
    }
}

impl ModuleT for ResNet {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut y = x.shallow_clone();
        for k in 0..self.segments() {
            y = self.forward_segment(k, &y, train);
        }
        y
    }
}

/// Segments: the stem (convolution, BatchNorm, ReLU, max pooling), then each
/// residual block, the last one with the global average pooling.
impl Segmented for ResNet {
    fn segments(&self) -> usize {
        1 + self.blocks.len()
    }

    fn forward_segment(&self, k: usize, x: &Tensor, train: bool) -> Tensor {
        if k == 0 {
            let mut y = self.stem.forward(x, train);
            let _ = y.relu_();
            return y.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        }
        let y = self.blocks[k - 1].forward(x, train);
        if k == self.blocks.len() {
            y.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
        } else {
            y
        }
    }
}

/// ResNet-18 (basic blocks 2-2-2-2), 512 features.
pub fn resnet18(p: &nn::Path) -> ResNet {
    ResNet::new(p, false, [2, 2, 2, 2])
}

/// ResNet-50 (bottlenecks 3-4-6-3), 2048 features.
pub fn resnet50(p: &nn::Path) -> ResNet {
    ResNet::new(p, true, [3, 4, 6, 3])
}
