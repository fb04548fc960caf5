//! A step's embeddings and their backward, in one of three ways: the plain
//! forward that keeps its whole graph; `--recompute`, which keeps only the
//! segment boundaries and replays each segment in the backward; and
//! `--micro-batch M`, which embeds M images at a time without gradient and
//! runs each chunk again, with gradient, in the backward (an
//! embedding-gradient cache: the loss still sees the whole batch, BatchNorm
//! sees one chunk at a time).
//!
//! The views come as uint8 NHWC groups (main views, then support views; each
//! group view-major over the batch's images); embeddings are view-major rows
//! `[V * B, d]` in float32 whatever the model computes in.

use tch::{Kind, Tensor};

use crate::config::TrainConfig;
use crate::model::{normalise_as, passes, Model};
use crate::momentum::Momentum;
use crate::recompute::{
    accumulate, backpropagate, backward_kept, backward_segments, forward_kept, forward_segments,
    PassKept, Ready,
};

/// The uint8 NHWC view groups (main views, then support views; each group
/// view-major) normalised in `cfg`'s precision and layout.
pub(crate) fn prepare_groups(groups: &[&Tensor], cfg: &TrainConfig) -> Vec<Tensor> {
    groups
        .iter()
        .map(|x| {
            let dev = x.device();
            normalise_as(
                x,
                cfg.precision.kind(dev),
                cfg.memory_format.channels_last(dev),
            )
        })
        .collect()
}

/// What the backward of a step's embeddings needs.
pub(crate) enum Kept {
    /// Per pass (consecutive groups of one image size), what it kept (each
    /// segment's graph, or with `--recompute` each segment's input) and the
    /// number of embedding rows it made.
    Segments(Vec<(PassKept, i64)>),
    /// Nothing: each chunk of `images` images is embedded again.
    Chunks { images: i64 },
}

/// The images of each chunk of a batch of `b` images, `m` at a time (0 = one
/// chunk).
pub(crate) fn chunks(b: i64, m: usize) -> Vec<(i64, i64)> {
    let m = match i64::try_from(m) {
        Ok(m) if m > 0 => m.min(b),
        _ => b,
    };
    (0..b)
        .step_by(m.max(1) as usize)
        .map(|first| (first, m.min(b - first)))
        .collect()
}

/// Images `first..first + n` of every view of the uint8 groups (each
/// view-major over `b` images), as groups of their own.
fn chunk_groups(groups: &[&Tensor], b: i64, (first, n): (i64, i64)) -> Vec<Tensor> {
    groups
        .iter()
        .map(|g| {
            let s = g.size();
            let mut split = vec![s[0] / b, b];
            split.extend_from_slice(&s[1..]);
            let mut joined = vec![s[0] / b * n];
            joined.extend_from_slice(&s[1..]);
            g.view(split.as_slice())
                .narrow(1, first, n)
                .reshape(joined.as_slice())
        })
        .collect()
}

/// The embeddings of each chunk (`[V * n, d]`, view-major) as the batch's
/// view-major `[V * b, d]`.
fn join_chunks(parts: &[Tensor], views: i64) -> Tensor {
    let d = parts[0].size()[1];
    let viewed: Vec<Tensor> = parts.iter().map(|p| p.view([views, -1, d])).collect();
    let joined = Tensor::cat(&viewed, 1);
    joined.view([-1, d])
}

/// Rows of chunk `(first, n)` of view-major `[V * b, d]` rows.
fn chunk_rows(z: &Tensor, views: i64, b: i64, (first, n): (i64, i64)) -> Tensor {
    let d = z.size()[1];
    z.view([views, b, d])
        .narrow(1, first, n)
        .reshape([views * n, d])
}

/// The step's embeddings (float32, detached), the
/// momentum encoder's when there is one, and what the backward needs.
pub(crate) fn embed(
    model: &Model,
    momentum: Option<&Momentum>,
    groups: &[&Tensor],
    b: i64,
    cfg: &TrainConfig,
) -> (Tensor, Option<Tensor>, Kept) {
    let views = cfg.views() as i64;
    let parts = chunks(b, cfg.micro_batch);
    if parts.len() > 1 {
        let mut z = Vec::with_capacity(parts.len());
        let mut zm = Vec::with_capacity(parts.len());
        for &c in &parts {
            let inputs = prepare_groups(&refs(&chunk_groups(groups, b, c)), cfg);
            let ys: Vec<Tensor> = passes(&inputs)
                .iter()
                .map(|x| tch::no_grad(|| model.project(x, true)))
                .collect();
            z.push(Tensor::cat(&ys, 0).to_kind(Kind::Float));
            if let Some(mo) = momentum {
                zm.push(mo.embed(&inputs));
            }
        }
        let zm = momentum.map(|_| join_chunks(&zm, views));
        return (join_chunks(&z, views), zm, Kept::Chunks { images: b });
    }
    let inputs = prepare_groups(groups, cfg);
    let zm = momentum.map(|mo| mo.embed(&inputs));
    let mut ys = Vec::new();
    let mut kept = Vec::new();
    for x in passes(&inputs) {
        let (y, k) = if cfg.recompute {
            let (y, k) = forward_kept(model, &x);
            (y, PassKept::Inputs(k))
        } else {
            let (y, k) = forward_segments(model, &x);
            (y.detach(), PassKept::Graph(k))
        };
        kept.push((k, y.size()[0]));
        ys.push(y);
    }
    (
        Tensor::cat(&ys, 0).to_kind(Kind::Float),
        zm,
        Kept::Segments(kept),
    )
}

fn refs(v: &[Tensor]) -> Vec<&Tensor> {
    v.iter().collect()
}

/// The parameters' gradients (one per entry of `params`, undefined where
/// none reached it) from `grad_z`, the gradient of the loss with respect to
/// the embeddings [`embed`] returned. `ready` gets the indices of parameters
/// as soon as their gradients are final (segment by segment, last first;
/// with `--micro-batch`, all of them after the last chunk), each once.
pub(crate) fn backward(
    model: &Model,
    kept: Kept,
    grad_z: &Tensor,
    groups: &[&Tensor],
    cfg: &TrainConfig,
    params: &[&Tensor],
    ready: &mut Ready<'_>,
) -> Result<Vec<Tensor>, tch::TchError> {
    let mut acc: Vec<Option<Tensor>> = params.iter().map(|_| None).collect();
    match kept {
        Kept::Segments(passes) => {
            let mut at = 0;
            let mut with_grads = Vec::with_capacity(passes.len());
            for (k, rows) in passes {
                with_grads.push((k, grad_z.f_narrow(0, at, rows)?));
                at += rows;
            }
            backward_segments(model, with_grads, params, &mut acc, ready)?;
        }
        Kept::Chunks { images: b } => {
            let views = cfg.views() as i64;
            for c in chunks(b, cfg.micro_batch) {
                let inputs = prepare_groups(&refs(&chunk_groups(groups, b, c)), cfg);
                let g = chunk_rows(grad_z, views, b, c);
                let mut at = 0;
                for x in passes(&inputs) {
                    chunk_pass_backward(model, &x, &g, &mut at, cfg.recompute, params, &mut acc)?;
                }
            }
            let all: Vec<usize> = (0..params.len()).filter(|&i| acc[i].is_some()).collect();
            ready(&all, &acc);
        }
    }
    Ok(acc
        .into_iter()
        .map(|g| g.unwrap_or_else(Tensor::new))
        .collect())
}

/// One pass of a chunk, run again for its backward: whole with gradient, or
/// (with `--recompute`) keeping boundaries and replaying segment by segment.
/// `at` is the pass's first row in the chunk's gradient `g`, moved past it.
fn chunk_pass_backward(
    model: &Model,
    x: &Tensor,
    g: &Tensor,
    at: &mut i64,
    recompute: bool,
    params: &[&Tensor],
    acc: &mut [Option<Tensor>],
) -> Result<(), tch::TchError> {
    crate::layers::replaying(|| {
        if recompute {
            let (y, kept) = forward_kept(model, x);
            let rows = y.size()[0];
            let gy = g.f_narrow(0, *at, rows)?;
            *at += rows;
            backward_kept(model, kept, &gy, params, acc)
        } else {
            let y = model.project(x, true);
            let rows = y.size()[0];
            let gy = g.f_narrow(0, *at, rows)?;
            *at += rows;
            accumulate(acc, backpropagate(&y, &gy, params)?);
            Ok(())
        }
    })
}
