//! `--nproc-per-node N`: the ranks this command starts on one machine, and
//! how a rank it started follows its launcher.

use anyhow::{Context, Result};

/// Set in the environment of the ranks `--nproc-per-node` starts.
pub const LAUNCHED: &str = "FNC_TRAIN_LAUNCHED";

/// A rank started by `--nproc-per-node` stops when its launcher is gone (killed
/// by a scheduler, say), rather than training on without it.
pub fn follow_launcher(rank: usize) {
    if std::env::var_os(LAUNCHED).is_none() {
        return;
    }
    let parent = std::os::unix::process::parent_id();
    let _ = std::thread::Builder::new()
        .name("fnc-launcher-watch".into())
        .spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_millis(500));
            if std::os::unix::process::parent_id() != parent {
                eprintln!("Error: rank {rank}: the --nproc-per-node launcher is gone; stopping");
                std::process::exit(1);
            }
        });
}

/// `--nproc-per-node N`: runs this command as N local ranks (the same flags,
/// the resolved run directory, and torchrun's environment), waits for them, and
/// stops the others as soon as one fails, naming it.
pub fn spawn_ranks(n: usize, out: &std::path::Path, port: Option<u16>) -> Result<()> {
    let exe = std::env::current_exe().context("finding this executable to spawn the ranks")?;
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    let mut skip = false;
    for a in std::env::args_os().skip(1) {
        if skip {
            skip = false;
            continue;
        }
        // The launcher's own flags: the ranks get torchrun's environment.
        match a.to_str() {
            Some("--nproc-per-node" | "--master-port") => skip = true,
            Some(s) if s.starts_with("--nproc-per-node=") || s.starts_with("--master-port=") => {}
            _ => args.push(a),
        }
    }
    // Every rank must agree on the run directory (the default one has a time).
    args.push("--out".into());
    args.push(out.as_os_str().to_owned());
    let port = match port {
        Some(p) => p,
        None => std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .context("finding a free port for the ranks' rendezvous (--master-port)")?,
    };
    let mut ranks = Vec::with_capacity(n);
    for r in 0..n {
        let mut c = std::process::Command::new(&exe);
        c.args(&args)
            .env("RANK", r.to_string())
            .env("LOCAL_RANK", r.to_string())
            .env("WORLD_SIZE", n.to_string())
            .env("LOCAL_WORLD_SIZE", n.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env(LAUNCHED, "1");
        if r != 0 {
            c.stdout(std::process::Stdio::null());
        }
        let child = c
            .spawn()
            .with_context(|| format!("starting rank {r} of --nproc-per-node {n}"))?;
        ranks.push(child);
    }
    loop {
        let mut running = 0;
        for r in 0..n {
            match ranks[r].try_wait().context("waiting for the ranks")? {
                Some(status) if !status.success() => {
                    for (k, other) in ranks.iter_mut().enumerate() {
                        if k != r {
                            let _ = other.kill();
                            let _ = other.wait();
                        }
                    }
                    anyhow::bail!(
                        "rank {r} of {n} exited with {status}; the other ranks were stopped"
                    );
                }
                Some(_) => {}
                None => running += 1,
            }
        }
        if running == 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
