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
