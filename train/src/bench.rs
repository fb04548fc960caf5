//! `fnc-train bench`: the step time of a model and loss on random views, with
//! no data loading, split into phases, for comparison with a PyTorch eager step.

use std::time::Instant;

use serde::Serialize;
use tch::{nn, Kind, Tensor};

use crate::config::TrainConfig;
use crate::device::{parse_device, sync};
use crate::error::TrainError;
use crate::model::build_model;
use crate::momentum::Momentum;
use crate::oom::{device_total, guard, out_of_memory};
use crate::optim::{trainable, Optimizer};
use crate::step::train_step;

/// Mean seconds per timed step of [`bench_steps`], whole and by phase.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct BenchTimes {
    pub step_s: f64,
    /// Normalisation, encoder, head and loss with its gradient with respect
    /// to the embeddings (and the momentum encoder); with `--micro-batch`
    /// or `--recompute`, the first forward only.
    pub forward_s: f64,
    /// The backward through the model (with `--recompute` or
    /// `--micro-batch`, including the forwards it replays).
    pub backward_s: f64,
    /// The optimiser update (and the moving average and bank).
    pub optimizer_s: f64,
}

/// Step time of `cfg`'s model and loss on random uint8 views (no data loading):
/// `warmup` untimed steps, then the mean of `steps` timed ones, split into
/// phases (the device is synchronised between phases).
pub fn bench_steps(
    cfg: &TrainConfig,
    warmup: usize,
    steps: usize,
) -> Result<(BenchTimes, String), TrainError> {
    cfg.validate()?;
    let device = parse_device(&cfg.device)?;
    let vs = nn::VarStore::new(device);
    // The run's weights are drawn from --seed.
    tch::manual_seed(cfg.seed as i64);
    let model = build_model(&vs, &cfg.model_spec(vs.device()));
    let mut opt = Optimizer::new(cfg.optimizer, trainable(&vs), cfg.weight_decay);
    let mut momentum = (cfg.memory > 0)
        .then(|| Momentum::new(&vs, cfg))
        .transpose()?;
    let b = cfg.batch_size as i64;
    let (s, ss) = (cfg.image_size as i64, cfg.support_side() as i64);
    let opts = (Kind::Uint8, device);
    // The groups the engine hands over: all views at once when they share a side.
    let sv = cfg.support as i64;
    let inputs: Vec<Tensor> = if sv == 0 || ss == s {
        vec![Tensor::randint(256, [(2 + sv) * b, s, s, 3], opts)]
    } else {
        vec![
            Tensor::randint(256, [2 * b, s, s, 3], opts),
            Tensor::randint(256, [sv * b, ss, ss, 3], opts),
        ]
    };
    let labels = Tensor::arange(b, (Kind::Int64, device));
    let mut sum = BenchTimes::default();
    for k in 0..warmup + steps {
        sync(device);
        let t0 = Instant::now();
        let groups: Vec<&Tensor> = inputs.iter().collect();
        let timed = guard(|| {
            let stepped = train_step(
                &model,
                momentum.as_ref(),
                &groups,
                &labels,
                cfg,
                None,
                &opt.parameters(),
                true,
            )?;
            let t1 = t0 + std::time::Duration::from_secs_f64(stepped.forward_s);
            sync(device);
            let t2 = Instant::now();
            opt.step(&stepped.grads, 0.1);
            if let (Some(mo), Some((zm, _))) = (momentum.as_mut(), stepped.keys) {
                mo.update();
                mo.bank.push(&zm, &labels, cfg.views() as i64, &cfg.loss)?;
            }
            // Reading a parameter waits for the device.
            let _ = opt.parameters()[0].sum(Kind::Float).double_value(&[]);
            Ok((t1, t2, Instant::now()))
        });
        let (t1, t2, t3) = match timed {
            Ok(t) => t?,
            Err(a) => {
                let none = "No checkpoint: a benchmark writes none.".to_string();
                let advice =
                    crate::plan::advice(cfg, 1, device_total(&a, device), device.is_cuda());
                return Err(out_of_memory(a, k as u64 + 1, device, advice, none));
            }
        };
        if k >= warmup {
            sum.forward_s += (t1 - t0).as_secs_f64();
            sum.backward_s += (t2 - t1).as_secs_f64();
            sum.optimizer_s += (t3 - t2).as_secs_f64();
            sum.step_s += (t3 - t0).as_secs_f64();
        }
    }
    let n = steps.max(1) as f64;
    let mean = BenchTimes {
        step_s: sum.step_s / n,
        forward_s: sum.forward_s / n,
        backward_s: sum.backward_s / n,
        optimizer_s: sum.optimizer_s / n,
    };
    Ok((mean, format!("{device:?}")))
}
