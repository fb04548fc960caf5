//! `--recompute` and `--micro-batch` against the plain step, in one process:
//! the same weights and batch through each, the loss, every parameter's
//! gradient and the BatchNorm running statistics compared.
#![allow(clippy::unwrap_used)]

use tch::{nn, Device, Kind, Tensor};

use crate::config::{Precision, TrainConfig};
use crate::model::{build_model, Arch};
use crate::momentum::Momentum;
use crate::optim::trainable;
use crate::step::train_step;

/// What a step left behind: the loss, the gradients by parameter name, and
/// the running statistics by name.
struct After {
    loss: f64,
    grads: Vec<(String, Tensor)>,
    running: Vec<(String, Tensor)>,
}

fn config(arch: Arch, memory: usize) -> TrainConfig {
    let mut cfg = TrainConfig {
        arch,
        image_size: 32,
        support: 3,
        support_size: Some(16),
        batch_size: 6,
        precision: Precision::Fp32,
        device: "cpu".into(),
        memory,
        seed: 5,
        ..TrainConfig::default()
    };
    cfg.loss.topk = 3;
    cfg.validate().unwrap();
    cfg
}

/// uint8 views of `cfg`'s batch: main views and support views, each group
/// view-major.
fn views(cfg: &TrainConfig) -> Vec<Tensor> {
    tch::manual_seed(11);
    let b = cfg.batch_size as i64;
    let (s, ss) = (cfg.image_size as i64, cfg.support_side() as i64);
    let opts = (Kind::Uint8, Device::Cpu);
    vec![
        Tensor::randint(256, [2 * b, s, s, 3], opts),
        Tensor::randint(256, [cfg.support as i64 * b, ss, ss, 3], opts),
    ]
}

/// One step of `cfg` from the weights seeded by `cfg.seed`; with the memory
/// variant, after a first step that fills part of the bank.
fn step(cfg: &TrainConfig) -> After {
    let _held = crate::generator_lock();
    let vs = nn::VarStore::new(Device::Cpu);
    tch::manual_seed(cfg.seed as i64);
    let model = build_model(&vs, &cfg.model_spec(Device::Cpu));
    let params = trainable(&vs);
    let refs: Vec<&Tensor> = params.iter().map(|(_, p)| p).collect();
    let mut momentum = (cfg.memory > 0).then(|| Momentum::new(&vs, cfg).unwrap());
    let groups = views(cfg);
    let groups: Vec<&Tensor> = groups.iter().collect();
    let labels = Tensor::from_slice(&[0i64, 1, 0, 2, 1, 0]);
    if let Some(mo) = momentum.as_mut() {
        let z = mo.embed(&crate::embed::prepare_groups(&groups, cfg));
        mo.bank
            .push(&z, &labels, cfg.views() as i64, &cfg.loss)
            .unwrap();
    }
    let s = train_step(
        &model,
        momentum.as_ref(),
        &groups,
        &labels,
        cfg,
        None,
        &refs,
        false,
    )
    .unwrap();
    let named = |pred: &dyn Fn(&str) -> bool| {
        let mut v: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(n, _)| pred(n))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let mut grads: Vec<(String, Tensor)> =
        params.iter().map(|(n, _)| n.clone()).zip(s.grads).collect();
    grads.sort_by(|a, b| a.0.cmp(&b.0));
    After {
        loss: s.value,
        grads,
        running: named(&|n| n.contains("running_")),
    }
}

/// Largest |a - b| relative to the largest |a|, over tensors of one name.
fn worst(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> (String, f64) {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|((na, ta), (nb, tb))| {
            assert_eq!(na, nb);
            assert!(ta.defined() && tb.defined(), "{na}: no gradient");
            let diff = (ta - tb).abs().max().double_value(&[]);
            let scale = ta.abs().max().double_value(&[]).max(1e-6);
            (na.clone(), diff / scale)
        })
        .fold((String::new(), 0.0), |w, x| if x.1 > w.1 { x } else { w })
}

fn assert_same(plain: &After, other: &After, what: &str) {
    let rel = (plain.loss - other.loss).abs() / plain.loss.abs();
    assert!(rel < 1e-6, "{what}: loss {} vs {}", plain.loss, other.loss);
    let (name, g) = worst(&plain.grads, &other.grads);
    assert!(
        g < 1e-5,
        "{what}: gradient of {name} differs by {g} (relative)"
    );
    let (name, r) = worst(&plain.running, &other.running);
    assert!(r < 1e-6, "{what}: {name} differs by {r} (relative)");
}

#[test]
fn recompute_is_the_plain_step() {
    for (arch, memory) in [(Arch::Small, 0), (Arch::Resnet18, 0), (Arch::Small, 5)] {
        let cfg = config(arch, memory);
        let plain = step(&cfg);
        let re = step(&TrainConfig {
            recompute: true,
            ..cfg.clone()
        });
        assert_same(
            &plain,
            &re,
            &format!("--recompute {arch:?} memory {memory}"),
        );
        // The running statistics moved once: not again in the replay.
        let fresh = step(&TrainConfig {
            steps: 0,
            ..cfg.clone()
        });
        assert_same(&plain, &fresh, "the same step twice");
    }
}

#[test]
fn micro_batches_recomputed_or_not_are_the_same_step() {
    for memory in [0, 5] {
        // Chunks of 4 and 2 images.
        let cfg = TrainConfig {
            micro_batch: 4,
            ..config(Arch::Small, memory)
        };
        let chunks = step(&cfg);
        let both = step(&TrainConfig {
            recompute: true,
            ..cfg.clone()
        });
        assert_same(
            &chunks,
            &both,
            &format!("--micro-batch 4 --recompute, memory {memory}"),
        );
        // Chunks have BatchNorm statistics of their own: another step.
        let plain = step(&config(Arch::Small, memory));
        let gap = (plain.loss - chunks.loss).abs() / plain.loss;
        assert!(
            gap > 1e-4,
            "--micro-batch gave the whole batch's loss {}",
            plain.loss
        );
    }
}

#[test]
fn a_micro_batch_as_large_as_the_batch_is_the_plain_step() {
    let cfg = config(Arch::Small, 0);
    let plain = step(&cfg);
    let whole = step(&TrainConfig {
        micro_batch: 6,
        ..cfg.clone()
    });
    assert_same(&plain, &whole, "--micro-batch 6 of 6");
}

#[test]
fn a_step_with_the_loss_in_blocks_is_the_plain_step() {
    for memory in [0, 5] {
        let mut whole = config(Arch::Small, memory);
        whole.loss.block = Some(0);
        let mut blocks = whole.clone();
        // 20 rows: four images' 5 anchor views a block, then the last two.
        blocks.loss.block = Some(20);
        assert_same(
            &step(&whole),
            &step(&blocks),
            &format!("--loss-block 20, memory {memory}"),
        );
    }
}
