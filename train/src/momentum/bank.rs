//! The memory variant's FIFO bank of momentum-encoder embeddings, with its
//! checkpoint state.

use tch::{Kind, Tensor};

use crate::loss::{l2_normalise, BankView, LossConfig, LossError};
use crate::optim::{scalar_entry, state_entry};

/// A FIFO of momentum-encoder embeddings (normalised) with their labels:
/// `capacity` rows, newest first, the first `filled` of them real.
#[derive(Debug)]
pub struct MemoryBank {
    keys: Tensor,
    labels: Tensor,
    filled: i64,
}

impl MemoryBank {
    /// An empty bank of `capacity` rows of width `dim`; `options` is its dtype
    /// (float32 in training) and device.
    pub fn new(capacity: i64, dim: i64, options: (Kind, tch::Device)) -> MemoryBank {
        let device = options.1;
        MemoryBank {
            keys: Tensor::zeros([capacity, dim], options),
            labels: Tensor::full([capacity], -1i64, (Kind::Int64, device)),
            filled: 0,
        }
    }

    pub fn capacity(&self) -> i64 {
        self.keys.size()[0]
    }

    /// Rows holding real embeddings.
    pub fn filled(&self) -> i64 {
        self.filled
    }

    /// The bank as the loss reads it.
    pub fn view(&self) -> BankView<'_> {
        BankView {
            keys: &self.keys,
            labels: &self.labels,
            filled: self.filled,
        }
    }

    /// Pushes the anchor views of a batch (`z_momentum` as given to
    /// `fnc_loss_memory`), dropping the oldest rows.
    pub fn push(
        &mut self,
        z_momentum: &Tensor,
        labels: &Tensor,
        views: i64,
        cfg: &LossConfig,
    ) -> Result<(), LossError> {
        let n = z_momentum.size()[0];
        let b = n / views;
        let m = cfg.anchor_views(views) * b;
        let current = l2_normalise(&z_momentum.detach())?.f_narrow(0, 0, m)?;
        let l = labels
            .to_device(self.keys.device())
            .to_kind(Kind::Int64)
            .repeat([m / b]);
        let (keys, _, labels) = tch::no_grad(|| self.view().keys_with(&current, &l))?;
        self.keys = keys;
        self.labels = labels;
        self.filled = (self.filled + m).min(self.capacity());
        Ok(())
    }

    /// The bank as named tensors (for checkpoints).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        vec![
            ("memory.keys".into(), self.keys.shallow_clone()),
            ("memory.labels".into(), self.labels.shallow_clone()),
            ("memory.filled".into(), Tensor::from_slice(&[self.filled])),
        ]
    }

    /// Restores [`MemoryBank::state`]; a missing or misshapen entry is named.
    pub fn load_state(
        &mut self,
        named: &std::collections::HashMap<String, Tensor>,
    ) -> Result<(), String> {
        let get = |n: &str| state_entry(named, n, " (was the run trained with --memory?)");
        let keys = get("memory.keys")?;
        if keys.size() != self.keys.size() {
            return Err(format!(
                "memory.keys is {:?}, this run's bank is {:?}",
                keys.size(),
                self.keys.size()
            ));
        }
        let labels = get("memory.labels")?;
        if labels.size() != self.labels.size() {
            return Err(format!(
                "memory.labels is {:?}, this run's bank is {:?}",
                labels.size(),
                self.labels.size()
            ));
        }
        let filled = scalar_entry(named, "memory.filled")?;
        if !(0..=self.capacity()).contains(&filled) {
            return Err(format!(
                "memory.filled {filled} is not in 0..={}",
                self.capacity()
            ));
        }
        let dev = self.keys.device();
        self.keys = keys.to_device(dev).to_kind(Kind::Float);
        self.labels = labels.to_device(dev).to_kind(Kind::Int64);
        self.filled = filled;
        Ok(())
    }
}
