//! Optimisers with their state as named tensors (saved in checkpoints): LARS
//! (SimCLR's), SGD with momentum, AdamW. Biases and BatchNorm parameters (the
//! one-dimensional variables) get no weight decay and no LARS adaptation.

use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Optimiser kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Lars,
    Sgd,
    Adamw,
}

/// One optimiser over a list of named variables.
#[derive(Debug)]
pub struct Optimizer {
    kind: OptimizerKind,
    weight_decay: f64,
    momentum: f64,
    trust: f64,
    params: Vec<(String, Tensor)>,
    /// Per parameter: no weight decay and no LARS adaptation.
    plain: Vec<bool>,
    /// First moment / momentum buffer per parameter.
    m: Vec<Tensor>,
    /// Second moment per parameter (AdamW).
    v: Vec<Tensor>,
    step: i64,
}

impl Optimizer {
    /// LARS: momentum 0.9, trust coefficient 0.001 (SPEC §5).
    pub fn new(kind: OptimizerKind, params: Vec<(String, Tensor)>, weight_decay: f64) -> Optimizer {
        let m = params.iter().map(|(_, p)| p.zeros_like()).collect();
        // Only AdamW has a second moment.
        let v = if kind == OptimizerKind::Adamw {
            params.iter().map(|(_, p)| p.zeros_like()).collect()
        } else {
            Vec::new()
        };
        let plain = params.iter().map(|(_, p)| Self::excluded(p)).collect();
        Optimizer {
            kind,
            weight_decay,
            momentum: 0.9,
            trust: 0.001,
            plain,
            params,
            m,
            v,
            step: 0,
        }
    }

    fn excluded(p: &Tensor) -> bool {
        p.dim() <= 1
    }

    /// Also exempts the parameters whose names start with `prefix` from weight
    /// decay and LARS adaptation (the reference's exclusion of its supervised
    /// head when fine-tuning).
    pub fn exempt(mut self, prefix: &str) -> Self {
        for ((name, _), plain) in self.params.iter().zip(self.plain.iter_mut()) {
            if name.starts_with(prefix) {
                *plain = true;
            }
        }
        self
    }

    /// The gradients of `loss` with respect to the parameters, in their order
    /// (undefined for a parameter the loss does not reach). They are returned,
    /// not accumulated into `.grad`, which spares zeroing and adding into
    /// parameter-sized buffers every step.
    pub fn gradients(&self, loss: &Tensor) -> Result<Vec<Tensor>, tch::TchError> {
        let params: Vec<&Tensor> = self.params.iter().map(|(_, p)| p).collect();
        Tensor::f_run_backward(&[loss], &params, false, false)
    }

    /// The parameters, in the order of [`Self::gradients`].
    pub fn parameters(&self) -> Vec<&Tensor> {
        self.params.iter().map(|(_, p)| p).collect()
    }

    /// One update with learning rate `lr` from `grads` (as [`Self::gradients`]
    /// returns them).
    pub fn step(&mut self, grads: &[Tensor], lr: f64) {
        self.step += 1;
        tch::no_grad(|| {
            for (k, ((_, p), g)) in self.params.iter().zip(grads).enumerate() {
                if !g.defined() {
                    continue;
                }
                let mut p = p.shallow_clone();
                let excluded = self.plain[k];
                match self.kind {
                    OptimizerKind::Lars | OptimizerKind::Sgd => {
                        let g = if excluded {
                            g.shallow_clone()
                        } else {
                            g + &p * self.weight_decay
                        };
                        let update = if self.kind == OptimizerKind::Lars && !excluded {
                            // The trust ratio stays on the device: reading the
                            // norms back would wait for the device per tensor.
                            let wn = p.norm();
                            let gn = g.norm();
                            let usable = wn.gt(0.0).logical_and(&gn.gt(0.0));
                            let ratio = (&wn * self.trust / &gn).where_scalarother(&usable, 1.0);
                            g * (ratio * lr)
                        } else {
                            g * lr
                        };
                        let m = &mut self.m[k];
                        let _ = m.g_mul_scalar_(self.momentum);
                        let _ = m.g_add_(&update);
                        let _ = p.g_sub_(m);
                    }
                    OptimizerKind::Adamw => {
                        let (b1, b2, eps) = (0.9, 0.999, 1e-8);
                        if !excluded {
                            let _ = p.g_mul_scalar_(1.0 - lr * self.weight_decay);
                        }
                        let m = &mut self.m[k];
                        let _ = m.g_mul_scalar_(b1);
                        let _ = m.g_add_(&(g * (1.0 - b1)));
                        let v = &mut self.v[k];
                        let _ = v.g_mul_scalar_(b2);
                        let _ = v.g_add_(&(g * g * (1.0 - b2)));
                        let mh = &*m / (1.0 - b1.powi(self.step as i32));
                        let vh = &*v / (1.0 - b2.powi(self.step as i32));
                        let _ = p.g_sub_(&(mh / (vh.sqrt() + eps) * lr));
                    }
                }
            }
        });
    }

    /// State tensors, named for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("opt.step".to_string(), Tensor::from_slice(&[self.step]))];
        for (k, (name, _)) in self.params.iter().enumerate() {
            out.push((format!("opt.m.{name}"), self.m[k].shallow_clone()));
            if self.kind == OptimizerKind::Adamw {
                out.push((format!("opt.v.{name}"), self.v[k].shallow_clone()));
            }
        }
        out
    }

    /// Restores [`Optimizer::state`]; a missing entry, or one whose shape does
    /// not match its parameter, is an error naming it.
    pub fn load_state(
        &mut self,
        named: &std::collections::HashMap<String, Tensor>,
    ) -> Result<(), String> {
        let step = scalar_entry(named, "opt.step")?;
        tch::no_grad(|| -> Result<(), String> {
            let restore = |dst: &mut Tensor, name: &str| -> Result<(), String> {
                let src = state_entry(named, name, " (optimiser state)")?;
                if src.size() != dst.size() {
                    return Err(format!(
                        "{name} is {:?} in the checkpoint but {:?} in this model \
                         (was it saved with another --arch or --optimizer?)",
                        src.size(),
                        dst.size()
                    ));
                }
                dst.f_copy_(src).map_err(|e| format!("{name}: {e}"))
            };
            for (k, (name, _)) in self.params.iter().enumerate() {
                restore(&mut self.m[k], &format!("opt.m.{name}"))?;
                if self.kind == OptimizerKind::Adamw {
                    restore(&mut self.v[k], &format!("opt.v.{name}"))?;
                }
            }
            Ok(())
        })?;
        self.step = step;
        Ok(())
    }
}

/// The entry `name` of checkpoint state, or an error naming it (and `hint`).
pub(crate) fn state_entry<'a>(
    named: &'a std::collections::HashMap<String, Tensor>,
    name: &str,
    hint: &str,
) -> Result<&'a Tensor, String> {
    named
        .get(name)
        .ok_or_else(|| format!("checkpoint lacks {name}{hint}"))
}

/// A one-element integer entry of checkpoint state (a counter), or an error
/// naming it.
pub(crate) fn scalar_entry(
    named: &std::collections::HashMap<String, Tensor>,
    name: &str,
) -> Result<i64, String> {
    let t = state_entry(named, name, "")?;
    if t.numel() != 1 {
        return Err(format!("{name} has {} elements, not 1", t.numel()));
    }
    t.f_view([1])
        .and_then(|t| t.f_int64_value(&[0]))
        .map_err(|e| format!("{name}: {e}"))
}

/// Cosine decay from `peak` at `step` 0 to 0 at `total` (clamped beyond):
/// the one schedule of pretraining, the linear probe and fine-tuning.
pub fn cosine(step: i64, total: i64, peak: f64) -> f64 {
    let t = (step as f64 / total.max(1) as f64).clamp(0.0, 1.0);
    peak * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
}

/// Linear warm-up to `peak` over `warmup` steps, then [`cosine`] decay to 0 at `total`.
pub fn learning_rate(step: i64, peak: f64, warmup: i64, total: i64) -> f64 {
    if warmup > 0 && step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    cosine(step - warmup, total - warmup, peak)
}

/// Trainable variables of `vs`, sorted by name (a stable order for the
/// optimiser and the momentum encoder's pairing).
pub fn trainable(vs: &tch::nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}
