//! Exact activation recomputation (`--recompute`): a network is a sequence of
//! segments (the stem, each residual block, the head); the forward keeps only
//! each segment's input, and the backward runs the segments again, last
//! first, each with gradient from its kept input, and backpropagates the
//! gradient of its output through it. Only one segment's activations are
//! alive at a time.
//!
//! The plain forward keeps each segment's graph with its input as a leaf
//! ([`forward_segments`]), so its backward also runs segment by segment
//! ([`backward_segments`]), without replays.
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

/// The train-mode forward of `net` on `x` with gradient, segment by segment:
/// each segment's input after the first is a leaf of its own, so that the
/// backward can run one segment at a time (and a segment's parameters have
/// their gradients as soon as it is done) without running anything again.
/// The output and each segment's (input, output).
pub fn forward_segments(net: &dyn Segmented, x: &Tensor) -> (Tensor, Vec<(Tensor, Tensor)>) {
    let mut kept = Vec::with_capacity(net.segments());
    let mut y = x.shallow_clone();
    for k in 0..net.segments() {
        // The first segment's input is the images: no gradient wanted.
        let input = if k > 0 {
            y.detach().set_requires_grad(true)
        } else {
            y
        };
        y = net.forward_segment(k, &input, true);
        kept.push((input, y.shallow_clone()));
    }
    (y, kept)
}

/// Told, after each segment of a backward, the indices of the parameters
/// whose gradients (in the accumulator) are now final.
pub type Ready<'a> = dyn FnMut(&[usize], &[Option<Tensor>]) + 'a;

/// What one pass kept for its backward.
pub enum PassKept {
    /// Each segment's input and output, with its graph ([`forward_segments`]).
    Graph(Vec<(Tensor, Tensor)>),
    /// Each segment's input only ([`forward_kept`]): segments are replayed.
    Inputs(Vec<Tensor>),
}

impl PassKept {
    /// Segment `k`'s input (a leaf wanting its gradient when `k > 0`) and
    /// output with its graph; segments are taken last first.
    fn take(&mut self, net: &dyn Segmented, k: usize) -> Option<(Tensor, Tensor)> {
        match self {
            PassKept::Graph(segs) => segs.pop(),
            PassKept::Inputs(inputs) => {
                let input = inputs.pop()?;
                let x = if k > 0 {
                    input.detach().set_requires_grad(true)
                } else {
                    input
                };
                let y = replaying(|| net.forward_segment(k, &x, true));
                Some((x, y))
            }
        }
    }
}

/// The backward of `passes` through `net` (each what a pass kept and the
/// gradient of its output), segment by segment, last first, each segment for
/// every pass before the next; the parameters' gradients are added into
/// `acc` (one per entry of `params`). After each segment, `ready` gets the
/// indices of the parameters it reached: their gradients are final (a
/// parameter belongs to one segment, which is checked), so a data-parallel
/// step can start summing them over the ranks while the backward goes on.
/// Every rank runs the same network on the same shapes, so every rank
/// reaches the same parameters in the same segments and starts the same
/// buckets in the same order (which the collectives need).
pub fn backward_segments(
    net: &dyn Segmented,
    passes: Vec<(PassKept, Tensor)>,
    params: &[&Tensor],
    acc: &mut [Option<Tensor>],
    ready: &mut Ready<'_>,
) -> Result<(), tch::TchError> {
    let (mut kept, mut grad): (Vec<PassKept>, Vec<Tensor>) = passes.into_iter().unzip();
    let mut reported = vec![false; params.len()];
    for k in (0..net.segments()).rev() {
        let mut reached = vec![false; params.len()];
        for (pass, g) in kept.iter_mut().zip(grad.iter_mut()) {
            let Some((x, y)) = pass.take(net, k) else {
                continue;
            };
            let mut inputs: Vec<&Tensor> = params.to_vec();
            if k > 0 {
                inputs.push(&x);
            }
            let mut grads = backpropagate(&y, g, &inputs)?;
            if k > 0 {
                if let Some(gx) = grads.pop() {
                    *g = gx;
                }
            }
            for (r, d) in reached.iter_mut().zip(&grads) {
                *r |= d.defined();
            }
            accumulate(acc, grads);
        }
        let now: Vec<usize> = (0..params.len()).filter(|&i| reached[i]).collect();
        if let Some(&i) = now.iter().find(|&&i| reported[i]) {
            return Err(tch::TchError::Torch(format!(
                "parameter {i} is used by two segments of the network: its gradient \
                 was taken as final too early"
            )));
        }
        for &i in &now {
            reported[i] = true;
        }
        if !now.is_empty() {
            ready(&now, acc);
        }
    }
    Ok(())
}

/// The backward of one pass run by [`forward_kept`]: `grad_out` (the
/// gradient of the pass's output) through the segments, last first, each
/// replayed from its kept input; the parameters' gradients are added into
/// `acc` (one per entry of `params`).
pub fn backward_kept(
    net: &dyn Segmented,
    kept: Vec<Tensor>,
    grad_out: &Tensor,
    params: &[&Tensor],
    acc: &mut [Option<Tensor>],
) -> Result<(), tch::TchError> {
    let passes = vec![(PassKept::Inputs(kept), grad_out.shallow_clone())];
    backward_segments(net, passes, params, acc, &mut |_, _| {})
}
