//! What a view's forward keeps for the backward, layer by layer, from the
//! architecture (the same strides, widths and in-place operations as
//! `model.rs` and `resnet.rs`): per segment of `--recompute`, its input,
//! the tensors its layers keep, and its largest tensor.
//!
//! A convolution keeps its input (the previous layer's output, counted
//! there); BatchNorm keeps its input (the convolution's output); the ReLU
//! after it works in place and keeps its output, which is the next
//! convolution's input. So a conv-BN(-ReLU) stage keeps two tensors of its
//! output's size: the BatchNorm input, in the compute dtype (float32 in
//! synchronised BatchNorm, which converts it), and the output. A shortcut's
//! BatchNorm output is added into the block's output and freed: one tensor.
//! Max pooling keeps int64 indices. Average pooling and the head keep a few
//! rows of features.

use crate::model::Arch;

/// Per view, one segment of a network, in elements.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SegmentCost {
    /// The segment's input (kept as a boundary by `--recompute`; in the
    /// plain forward it is the previous segment's output, counted there).
    pub input: u64,
    /// Other activation-sized tensors kept (the stem's pooled output).
    pub other: u64,
    /// Outputs of conv-BN stages that keep both their BatchNorm input and
    /// their output.
    pub stages: u64,
    /// Outputs of BatchNorms that keep only their input (shortcuts).
    pub bn_inputs: u64,
    /// int64 indices (max pooling).
    pub indices: u64,
    /// The largest tensor the segment makes.
    pub largest: u64,
}

/// Bytes per element of the tensors a segment keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dtypes {
    /// Activations (and the segment's input): 4 in float32, 2 in bfloat16.
    pub act: u64,
    /// What BatchNorm keeps of its input: the activation dtype, or 4 where
    /// synchronised BatchNorm keeps a float32 copy.
    pub bn: u64,
}

impl SegmentCost {
    /// Bytes the segment's layers keep for its backward (its input is
    /// the previous segment's output, counted there).
    pub fn kept(&self, d: Dtypes) -> u64 {
        self.other * d.act + self.stages * (d.bn + d.act) + self.bn_inputs * d.bn + self.indices * 8
    }
}

/// Output side of a convolution or pooling of kernel `k`, stride `s`,
/// padding `p` over side `h`.
fn out_side(h: u64, k: u64, s: u64, p: u64) -> u64 {
    (h + 2 * p).saturating_sub(k) / s + 1
}

/// The segments of `arch` for one view of side `side` (see
/// `Segmented` for the model's own split), the projection head last.
pub fn segments(arch: Arch, side: u64, proj_dim: u64) -> Vec<SegmentCost> {
    let mut out = match arch {
        Arch::Small => small(side),
        Arch::Resnet18 => resnet(side, false, [2, 2, 2, 2]),
        Arch::Resnet50 => resnet(side, true, [3, 4, 6, 3]),
    };
    let d = arch.feature_dim() as u64;
    // Three linear + BatchNorm layers of width d, d, proj_dim.
    out.push(SegmentCost {
        input: d,
        stages: 2 * d + proj_dim,
        largest: d,
        ..SegmentCost::default()
    });
    out
}

fn small(side: u64) -> Vec<SegmentCost> {
    let mut h = side;
    let mut c_in = 3;
    [(32, 2), (64, 2), (128, 2), (128, 1)]
        .iter()
        .map(|&(c, s)| {
            let input = c_in * h * h;
            h = out_side(h, 3, s, 1);
            c_in = c;
            SegmentCost {
                input,
                stages: c * h * h,
                largest: input.max(c * h * h),
                ..SegmentCost::default()
            }
        })
        .collect()
}

fn resnet(side: u64, bottleneck: bool, depths: [u64; 4]) -> Vec<SegmentCost> {
    let h1 = out_side(side, 7, 2, 3);
    let h2 = out_side(h1, 3, 2, 1);
    let mut out = vec![SegmentCost {
        input: 3 * side * side,
        stages: 64 * h1 * h1,
        other: 64 * h2 * h2,
        indices: 64 * h2 * h2,
        largest: 64 * h1 * h1,
        ..SegmentCost::default()
    }];
    let (mut h, mut c_in) = (h2, 64);
    for (stage, (&n, width)) in depths.iter().zip([64u64, 128, 256, 512]).enumerate() {
        for i in 0..n {
            let stride = if stage > 0 && i == 0 { 2 } else { 1 };
            let ho = out_side(h, 3, stride, 1);
            let c_out = if bottleneck { 4 * width } else { width };
            let stages = if bottleneck {
                // 1x1 at the input's side, 3x3 (strided), 1x1 widening.
                width * h * h + width * ho * ho + c_out * ho * ho
            } else {
                2 * c_out * ho * ho
            };
            let shortcut = (stride != 1 || c_in != c_out).then_some(c_out * ho * ho);
            out.push(SegmentCost {
                input: c_in * h * h,
                stages,
                bn_inputs: shortcut.unwrap_or(0),
                largest: (c_in * h * h).max(c_out * ho * ho).max(width * h * h),
                ..SegmentCost::default()
            });
            (h, c_in) = (ho, c_out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resnet50_at_224_keeps_what_its_layers_add_up_to() {
        let s = segments(Arch::Resnet50, 224, 128);
        assert_eq!(s.len(), 1 + 16 + 1, "stem, 16 bottlenecks, head");
        // The stem: a 112 x 112 x 64 conv-BN-ReLU, 56 x 56 x 64 indices.
        assert_eq!(s[0].stages, 64 * 112 * 112);
        assert_eq!(s[0].indices, 64 * 56 * 56);
        // The first bottleneck: 64 -> 256 at 56, with a shortcut.
        assert_eq!(s[1].input, 64 * 56 * 56);
        assert_eq!(s[1].stages, (64 + 64 + 256) * 56 * 56);
        assert_eq!(s[1].bn_inputs, 256 * 56 * 56);
        // The last bottleneck: 2048 x 7 x 7 out, no shortcut.
        assert_eq!(s[16].input, 2048 * 7 * 7);
        assert_eq!(s[16].bn_inputs, 0);
        let f32 = Dtypes { act: 4, bn: 4 };
        let total: u64 = s.iter().map(|c| c.kept(f32)).sum();
        // About 86 MB a view in float32 (the figure issue 17 read from the
        // code: 43 MB in bfloat16 with libtorch's BatchNorm).
        assert!((80e6..95e6).contains(&(total as f64)), "{total}");
        let bf16 = Dtypes { act: 2, bn: 2 };
        let half: u64 = s.iter().map(|c| c.kept(bf16)).sum();
        assert_eq!(half, total / 2 + s[0].indices * 4);
    }

    #[test]
    fn boundaries_are_a_fraction_of_the_activations() {
        for arch in [Arch::Small, Arch::Resnet18, Arch::Resnet50] {
            let s = segments(arch, 64, 128);
            let d = Dtypes { act: 4, bn: 4 };
            let all: u64 = s.iter().map(|c| c.kept(d)).sum();
            let inputs: u64 = s.iter().skip(1).map(|c| c.input * 4).sum();
            assert!(inputs * 2 < all, "{arch:?}: {inputs} of {all}");
        }
    }
}
