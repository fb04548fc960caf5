//! The memory variant's momentum encoder (SPEC §4): an exponential moving
//! average of the online model whose embeddings of each batch serve as keys,
//! held over the following steps in a FIFO [`MemoryBank`].

mod bank;

use std::collections::HashMap;

use tch::{nn, Tensor};

pub use bank::MemoryBank;

use crate::config::TrainConfig;
use crate::error::TrainError;
use crate::model::{build_model, project_groups, Model};
use crate::optim::trainable;

/// The momentum model, its pairing with the online parameters, and the bank.
#[derive(Debug)]
pub struct Momentum {
    vs: nn::VarStore,
    model: Model,
    /// (moving average, online parameter), trainable parameters only: the
    /// moving model's BatchNorm statistics follow its own batches, as in the
    /// reference.
    pairs: Vec<(Tensor, Tensor)>,
    decay: f64,
    pub bank: MemoryBank,
}

impl Momentum {
    /// A copy of `online` (built per `cfg`), frozen, with an empty bank of
    /// `cfg.memory` x batch rows.
    pub fn new(online: &nn::VarStore, cfg: &TrainConfig) -> Result<Momentum, TrainError> {
        let device = online.device();
        let mut vs = nn::VarStore::new(device);
        let model = build_model(&vs, &cfg.model_spec(vs.device()));
        vs.copy(online)?;
        vs.freeze();
        let mine = vs.variables();
        let pairs = trainable(online)
            .into_iter()
            .filter_map(|(name, p)| mine.get(&name).map(|e| (e.shallow_clone(), p)))
            .collect();
        let rows = (cfg.memory * cfg.batch_size) as i64;
        Ok(Momentum {
            vs,
            model,
            pairs,
            decay: cfg.ema_decay,
            bank: MemoryBank::new(rows, cfg.proj_dim, (tch::Kind::Float, device)),
        })
    }

    /// Projections of the normalised view groups by the moving model (train
    /// mode, so BatchNorm uses batch statistics, as the online model does), in
    /// float32, without gradient.
    pub fn embed(&self, inputs: &[Tensor]) -> Tensor {
        tch::no_grad(|| project_groups(&self.model, inputs))
    }

    /// Moves every averaged parameter towards its online value:
    /// `m = decay * m + (1 - decay) * p`.
    pub fn update(&mut self) {
        let w = 1.0 - self.decay;
        tch::no_grad(|| {
            for (m, p) in &mut self.pairs {
                let _ = m.lerp_(p, w);
            }
        })
    }

    /// The moving model (`momentum.<name>`) and the bank, for checkpoints.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .map(|(n, t)| (format!("momentum.{n}"), t))
            .collect();
        out.extend(self.bank.state());
        out
    }

    /// Restores [`Momentum::state`]; a missing entry is named.
    pub fn load_state(&mut self, named: &HashMap<String, Tensor>) -> Result<(), String> {
        tch::no_grad(|| -> Result<(), String> {
            for (name, mut t) in self.vs.variables() {
                let key = format!("momentum.{name}");
                let src = crate::optim::state_entry(named, &key, "")?;
                t.f_copy_(src).map_err(|e| format!("{key}: {e}"))?;
            }
            Ok(())
        })?;
        self.bank.load_state(named)
    }
}
