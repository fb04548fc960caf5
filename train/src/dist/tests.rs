//! The process group over a world of one: a graph outlives its handle, bytes and uneven shares travel whole.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tch::{Device, Tensor};

use super::{share, Backend, Launch, ProcessGroup};

/// Tests that make groups take turns, so that the live-group count is theirs.
static GROUPS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn world_of_one() -> ProcessGroup {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let launch = Launch {
        rank: 0,
        world: 1,
        local_rank: 0,
        local_world: 1,
        master_addr: "127.0.0.1".into(),
        master_port: port,
        agent_store: false,
    };
    ProcessGroup::new(&launch, Backend::Gloo, Device::Cpu, Duration::from_secs(20)).unwrap()
}

#[test]
fn a_graph_keeps_its_group_alive_after_its_handle_is_dropped() {
    let _turn = GROUPS.lock().unwrap_or_else(|e| e.into_inner());
    let g = world_of_one();
    let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0]).set_requires_grad(true);
    let y = g.all_reduce_autograd(&x).unwrap();
    let before = ProcessGroup::live();
    // The handle goes; the graph's node still holds the group.
    drop(g);
    assert_eq!(ProcessGroup::live(), before, "the graph keeps its group");
    let grad = Tensor::run_backward(&[(&y * 2.0).sum(tch::Kind::Float)], &[&x], false, false);
    assert_eq!(Vec::<f32>::try_from(&grad[0]).unwrap(), vec![2.0, 2.0, 2.0]);
    // The graph goes: so does the group.
    drop(y);
    assert_eq!(ProcessGroup::live(), before - 1, "freed with its graph");
    // Shutting down is idempotent.
    let g = world_of_one();
    g.shutdown().unwrap();
    g.shutdown().unwrap();
}

#[test]
fn bytes_and_uneven_shares_travel_whole() {
    let _turn = GROUPS.lock().unwrap_or_else(|e| e.into_inner());
    let g = world_of_one();
    assert_eq!(
        g.broadcast_bytes(b"{\"Ok\":null}", 0).unwrap(),
        b"{\"Ok\":null}"
    );
    assert_eq!(g.broadcast_bytes(b"", 0).unwrap(), b"");
    assert_eq!(g.all_gather_bytes(b"xyz").unwrap(), vec![b"xyz".to_vec()]);
    let x = Tensor::arange(5, (tch::Kind::Float, Device::Cpu)).view([5, 1]);
    assert!(g.all_gather_shares(&x, 5).unwrap().equal(&x));
    for (total, world) in [(10u64, 3usize), (2, 4), (0, 2), (7, 1)] {
        let parts: Vec<_> = (0..world).map(|r| share(total, r, world)).collect();
        assert_eq!(parts.first().map(|p| p.start), Some(0));
        assert_eq!(parts.last().map(|p| p.end), Some(total));
        for w in parts.windows(2) {
            assert_eq!(w[0].end, w[1].start);
            assert!(w[0].end - w[0].start >= w[1].end - w[1].start);
        }
    }
}

/// Per-channel mean and 1/sqrt(var + eps) of `x` (`[N, C, ...]`), biased.
fn moments(x: &Tensor, eps: f64) -> (Tensor, Tensor) {
    let dims: Vec<i64> = (0..x.dim() as i64).filter(|&d| d != 1).collect();
    let mean = x.mean_dim(dims.as_slice(), false, tch::Kind::Float);
    let var = x.var_dim(dims.as_slice(), false, false);
    (mean, (var + eps).rsqrt())
}

#[test]
fn moments_of_uneven_parts_merge_into_the_whole_batch() {
    // Draws from libtorch's generator: other unit tests seed it.
    let _held = crate::generator_lock();
    // Parts of 1, 5 and 10 images whose means differ widely: the merged
    // variance must include the spread of the parts' means.
    let x = Tensor::randn([16, 3, 4, 4], (tch::Kind::Float, Device::Cpu))
        * Tensor::from_slice(&[1.0f32, 3.0, 0.1]).view([1, 3, 1, 1])
        + Tensor::from_slice(&[0.0f32, 5.0, -2.0]).view([1, 3, 1, 1]);
    let x = Tensor::cat(&[x.narrow(0, 0, 6), x.narrow(0, 6, 10) + 4.0], 0);
    let eps = 1e-5;
    let parts = [(0, 1), (1, 5), (6, 10)];
    let (means, invstds): (Vec<Tensor>, Vec<Tensor>) = parts
        .iter()
        .map(|&(at, n)| moments(&x.narrow(0, at, n), eps))
        .unzip();
    let counts = Tensor::from_slice(&[16.0f32, 80.0, 160.0]);
    let merged = super::group::merge_moments(
        &Tensor::stack(&means, 0),
        &Tensor::stack(&invstds, 0),
        &counts,
        eps,
    )
    .unwrap();
    let (mean, invstd) = moments(&x, eps);
    let rel = |a: &Tensor, b: &Tensor| ((a - b).abs() / b.abs()).max().double_value(&[]);
    assert!(rel(&merged.get(0), &mean) < 1e-5, "merged mean");
    assert!(rel(&merged.get(1), &invstd) < 1e-5, "merged 1/std");
    // Without the parts' spread the answer would be far off: the test sees it.
    let within = (Tensor::stack(&invstds, 0).pow_tensor_scalar(-2) - eps).mean_dim(
        0,
        false,
        tch::Kind::Float,
    );
    assert!(rel(&(within + eps).rsqrt(), &invstd) > 0.1);
}

#[test]
fn synchronised_batch_norm_over_one_rank_is_batch_norm() {
    let _turn = GROUPS.lock().unwrap_or_else(|e| e.into_inner());
    let _held = crate::generator_lock();
    let g = world_of_one();
    for channels_last in [false, true] {
        let x = Tensor::randn([6, 4, 5, 5], (tch::Kind::Float, Device::Cpu)) * 2.0 + 0.5;
        let x = if channels_last {
            x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
        } else {
            x
        };
        let w = (Tensor::rand([4], (tch::Kind::Float, Device::Cpu)) + 0.5).set_requires_grad(true);
        let b = Tensor::randn([4], (tch::Kind::Float, Device::Cpu)).set_requires_grad(true);
        let weights = Tensor::randn([6, 4, 5, 5], (tch::Kind::Float, Device::Cpu));
        let run = |sync: bool, running: Option<(&Tensor, &Tensor)>| {
            let xi = x.detach().set_requires_grad(true);
            let y = if sync {
                g.sync_batch_norm(&xi, &w, &b, running, 0.1, 1e-5).unwrap()
            } else {
                Tensor::batch_norm(
                    &xi,
                    Some(&w),
                    Some(&b),
                    running.map(|r| r.0),
                    running.map(|r| r.1),
                    true,
                    0.1,
                    1e-5,
                    true,
                )
            };
            let loss = (&y * &weights).sum(tch::Kind::Float);
            let grads = Tensor::run_backward(&[loss], &[&xi, &w, &b], false, false);
            (y.detach(), grads)
        };
        let stats = || {
            (
                Tensor::randn([4], (tch::Kind::Float, Device::Cpu)),
                Tensor::rand([4], (tch::Kind::Float, Device::Cpu)) + 1.0,
            )
        };
        let (rm, rv) = stats();
        let (rm2, rv2) = (rm.copy(), rv.copy());
        let (y, gs) = run(true, Some((&rm, &rv)));
        let (y2, gs2) = run(false, Some((&rm2, &rv2)));
        let close = |a: &Tensor, b: &Tensor, what: &str| {
            let d = (a - b).abs().max().double_value(&[]);
            let m = b.abs().max().double_value(&[]);
            assert!(
                d <= 1e-5 * m.max(1.0),
                "{what} (channels-last {channels_last}): {d}"
            );
        };
        close(&y, &y2, "output");
        for (a, (b, what)) in gs.iter().zip(gs2.iter().zip(["input", "weight", "bias"])) {
            close(a, b, what);
        }
        close(&rm, &rm2, "running mean");
        close(&rv, &rv2, "running variance");
        // A replay leaves the running statistics alone.
        let (rm3, rv3) = (rm.copy(), rv.copy());
        let _ = run(true, None);
        assert!(rm.equal(&rm3) && rv.equal(&rv3));
        let (y4, _) = run(true, None);
        close(&y4, &y2, "output without running statistics");
    }
}
