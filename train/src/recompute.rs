//! Exact activation recomputation (`--recompute`): a network is a sequence of
//! segments (the stem, each residual block, the head); the forward keeps only
//! each segment's input, and the backward runs the segments again, last
//! first, each with gradient from its kept input, and backpropagates the
//! gradient of its output through it. Only one segment's activations are
//! alive at a time.
//!
//! The replay is the forward of the same inputs with the same weights, so
//! its outputs, and the gradients, are those of the plain step. BatchNorm
//! normalises with the same batch statistics (under synchronised BatchNorm
//! the replay runs the same collectives, in the same order, on every rank)
//! and leaves its running statistics, which the first forward updated, alone
//! ([`crate::layers::replaying`]).

use tch::{Kind, Tensor};

use crate::layers::replaying;

/// A network as a sequence of segments, each a function of the previous
/// one's output: what recomputation stores the boundaries of.
pub trait Segmented {
    /// How many segments the network has.
    fn segments(&self) -> usize;
    /// Segment `k` of the forward.
    fn forward_segment(&self, k: usize, x: &Tensor, train: bool) -> Tensor;
}

/// The train-mode forward of `net` on `x` without gradient, keeping the
/// input of every segment: the output (detached) and the boundaries.
pub fn forward_kept(net: &dyn Segmented, x: &Tensor) -> (Tensor, Vec<Tensor>) {
    tch::no_grad(|| {
        let mut kept = Vec::with_capacity(net.segments());
        let mut y = x.shallow_clone();
        for k in 0..net.segments() {
            let next = net.forward_segment(k, &y, true);
            kept.push(y);
            y = next;
        }
        (y, kept)
    })
}

/// Adds `grads` (as many as `acc`, undefined where a parameter was not
/// reached) into `acc`.
pub fn accumulate(acc: &mut [Option<Tensor>], grads: Vec<Tensor>) {
    for (a, g) in acc.iter_mut().zip(grads) {
        if !g.defined() {
            continue;
        }
        *a = Some(match a.take() {
            None => g,
            Some(sum) => sum + g,
        });
    }
}

/// The gradients of `<y, grad_y>` with respect to `inputs`: backpropagates
/// `grad_y` through the graph of `y` (libtorch's backward seeds its roots
/// with ones; the product's backward hands `grad_y` on unchanged).
pub fn backpropagate(
    y: &Tensor,
    grad_y: &Tensor,
    inputs: &[&Tensor],
) -> Result<Vec<Tensor>, tch::TchError> {
    let grad_y = if grad_y.kind() == y.kind() {
        grad_y.shallow_clone()
    } else {
        grad_y.f_to_kind(y.kind())?
    };
    let root = y.f_mul(&grad_y)?.f_sum(Kind::Float)?;
    Tensor::f_run_backward(&[root], inputs, false, false)
}

/// The backward of a pass run by [`forward_kept`]: `grad_out` (the gradient
/// of the pass's output) through the segments, last first, each replayed
/// from its kept input; the parameters' gradients are added into `acc` (one
/// per entry of `params`).
pub fn backward_kept(
    net: &dyn Segmented,
    kept: Vec<Tensor>,
    grad_out: &Tensor,
    params: &[&Tensor],
    acc: &mut [Option<Tensor>],
) -> Result<(), tch::TchError> {
    let mut grad = grad_out.shallow_clone();
    let mut kept = kept;
    for k in (0..net.segments()).rev() {
        let Some(input) = kept.pop() else {
            break;
        };
        // The first segment's input is the images: no gradient wanted.
        let x = if k > 0 {
            input.detach().set_requires_grad(true)
        } else {
            input
        };
        let y = replaying(|| net.forward_segment(k, &x, true));
        let mut inputs: Vec<&Tensor> = params.to_vec();
        if k > 0 {
            inputs.push(&x);
        }
        let mut grads = backpropagate(&y, &grad, &inputs)?;
        if k > 0 {
            if let Some(g) = grads.pop() {
                grad = g;
            }
        }
        accumulate(acc, grads);
    }
    Ok(())
}
