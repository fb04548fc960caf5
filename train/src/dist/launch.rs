//! How a process learns its place in a data-parallel run: torchrun's and
//! Slurm's environments, and which collective library carries the tensors.

use crate::error::TrainError;

/// Which collective library carries the tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// NCCL on CUDA, Gloo on the CPU.
    Auto,
    Gloo,
    Nccl,
}

/// Where this process stands in a multi-process run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub rank: usize,
    pub world: usize,
    /// Rank on this machine: its GPU is `local_rank` modulo the visible ones.
    pub local_rank: usize,
    /// Ranks on this machine (they share its cores and GPUs).
    pub local_world: usize,
    pub master_addr: String,
    pub master_port: u16,
    /// The launcher serves the rendezvous store (torchrun's agent store), so
    /// rank 0 joins it instead of serving one.
    pub agent_store: bool,
}

/// The default rendezvous port (torchrun's).
pub const DEFAULT_PORT: u16 = 29500;

impl Launch {
    /// The launch described by the environment: torchrun's `RANK`,
    /// `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`, or else
    /// Slurm's `SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID` with the first
    /// host of the job's node list as the master. `None` for one process.
    pub fn from_env() -> Result<Option<Launch>, TrainError> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// [`Launch::from_env`] over any variable lookup (tests).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Launch>, TrainError> {
        let num = |key: &str| -> Result<Option<usize>, TrainError> {
            match var(key) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| TrainError::Config {
                    flag: "environment",
                    detail: format!("{key}={v:?} is not a number"),
                }),
            }
        };
        // An explicit WORLD_SIZE (even 1: a one-rank group, e.g. to check a
        // backend) makes a group; Slurm's variables only from 2 tasks on.
        let (rank, world, local, local_world) = if let Some(world) = num("WORLD_SIZE")? {
            let rank = num("RANK")?.ok_or_else(|| TrainError::Config {
                flag: "environment",
                detail: "WORLD_SIZE is set but RANK is not".into(),
            })?;
            // Without LOCAL_RANK and LOCAL_WORLD_SIZE (a launcher that starts
            // one rank per machine or pod), each rank is alone on its machine.
            match (num("LOCAL_RANK")?, num("LOCAL_WORLD_SIZE")?) {
                (None, None) => (rank, world, 0, 1),
                (local, local_world) => (
                    rank,
                    world,
                    local.unwrap_or(rank),
                    local_world.unwrap_or(world),
                ),
            }
        } else if let Some(world) = num("SLURM_NTASKS")?.filter(|&w| w > 1) {
            let rank = num("SLURM_PROCID")?.ok_or_else(|| TrainError::Config {
                flag: "environment",
                detail: "SLURM_NTASKS is set but SLURM_PROCID is not".into(),
            })?;
            let node = num("SLURM_NODEID")?.unwrap_or(0);
            let local_world = match num("SLURM_NTASKS_PER_NODE")? {
                Some(n) => n,
                None => var("SLURM_TASKS_PER_NODE")
                    .and_then(|t| tasks_on_node(&t, node))
                    .unwrap_or(world),
            };
            (rank, world, num("SLURM_LOCALID")?.unwrap_or(0), local_world)
        } else {
            return Ok(None);
        };
        if world == 0 {
            return Err(TrainError::Config {
                flag: "environment",
                detail: "WORLD_SIZE=0".into(),
            });
        }
        if rank >= world {
            return Err(TrainError::Config {
                flag: "environment",
                detail: format!("rank {rank} is not below the world size {world}"),
            });
        }
        if local_world == 0 || local >= local_world {
            return Err(TrainError::Config {
                flag: "environment",
                detail: format!(
                    "local rank {local} is not below the ranks on this node ({local_world})"
                ),
            });
        }
        let master_addr = var("MASTER_ADDR")
            .filter(|s| !s.is_empty())
            .or_else(|| {
                var("SLURM_JOB_NODELIST")
                    .or_else(|| var("SLURM_NODELIST"))
                    .map(|l| first_host(&l))
            })
            .unwrap_or_else(|| "127.0.0.1".into());
        let master_port = match var("MASTER_PORT") {
            Some(p) => p.trim().parse().map_err(|_| TrainError::Config {
                flag: "environment",
                detail: format!("MASTER_PORT={p:?} is not a port"),
            })?,
            None => DEFAULT_PORT,
        };
        Ok(Some(Launch {
            rank,
            world,
            local_rank: local,
            local_world,
            master_addr,
            master_port,
            agent_store: var("TORCHELASTIC_USE_AGENT_STORE").as_deref() == Some("True"),
        }))
    }
}

/// The tasks on node `node` of Slurm's `SLURM_TASKS_PER_NODE` (`2(x3),1`:
/// nodes 0-2 run 2 tasks, node 3 runs 1).
pub fn tasks_on_node(list: &str, node: usize) -> Option<usize> {
    let mut seen = 0usize;
    for part in list.split(',') {
        let (n, times) = match part.split_once("(x") {
            Some((n, t)) => (n, t.trim_end_matches(')').parse::<usize>().ok()?),
            None => (part, 1),
        };
        let n: usize = n.trim().parse().ok()?;
        seen += times;
        if node < seen {
            return Some(n);
        }
    }
    None
}

/// The first host of a Slurm node list: `gpu[03-05,9],cpu1` -> `gpu03`.
pub fn first_host(list: &str) -> String {
    let mut depth = 0;
    let mut end = list.len();
    for (i, ch) in list.char_indices() {
        match ch {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    let first = &list[..end];
    match first.split_once('[') {
        Some((prefix, rest)) => {
            let range = rest.trim_end_matches(']');
            let start = range.split([',', '-']).next().unwrap_or("");
            format!("{prefix}{start}")
        }
        None => first.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::{first_host, tasks_on_node, Launch, DEFAULT_PORT};

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn torchrun_and_slurm_environments_are_read() {
        assert_eq!(Launch::from_vars(env(&[])).unwrap(), None);
        let l = Launch::from_vars(env(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "10.0.0.2"),
            ("MASTER_PORT", "1234"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            (
                l.rank,
                l.world,
                l.local_rank,
                l.master_addr.as_str(),
                l.master_port
            ),
            (3, 4, 1, "10.0.0.2", 1234)
        );
        let s = Launch::from_vars(env(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_JOB_NODELIST", "gpu[07-08,11],cpu1"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            (
                s.rank,
                s.world,
                s.local_rank,
                s.master_addr.as_str(),
                s.master_port
            ),
            (5, 8, 1, "gpu07", DEFAULT_PORT)
        );
        assert_eq!(
            Launch::from_vars(env(&[("RANK", "0"), ("WORLD_SIZE", "1")]))
                .unwrap()
                .map(|l| l.world),
            Some(1),
            "an explicit world of one is a group"
        );
        assert_eq!(
            Launch::from_vars(env(&[("SLURM_NTASKS", "1")])).unwrap(),
            None
        );
        for bad in [
            vec![("WORLD_SIZE", "2")],
            vec![("WORLD_SIZE", "2"), ("RANK", "2")],
            vec![("WORLD_SIZE", "two"), ("RANK", "0")],
            vec![("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_PORT", "x")],
        ] {
            let e = Launch::from_vars(env(&bad)).unwrap_err().to_string();
            assert!(e.contains("environment"), "{e}");
        }
    }

    #[test]
    fn slurm_tasks_per_node_are_read() {
        assert_eq!(tasks_on_node("4(x2),1", 0), Some(4));
        assert_eq!(tasks_on_node("4(x2),1", 1), Some(4));
        assert_eq!(tasks_on_node("4(x2),1", 2), Some(1));
        assert_eq!(tasks_on_node("4(x2),1", 3), None);
        assert_eq!(tasks_on_node("8", 0), Some(8));
        let s = Launch::from_vars(env(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_NODEID", "1"),
            ("SLURM_TASKS_PER_NODE", "4(x2)"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!((s.local_rank, s.local_world), (1, 4));
        let e = Launch::from_vars(env(&[
            ("RANK", "1"),
            ("WORLD_SIZE", "2"),
            ("LOCAL_RANK", "3"),
            ("LOCAL_WORLD_SIZE", "2"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("local rank 3"), "{e}");
        // One rank per pod: alone on its machine.
        let p = Launch::from_vars(env(&[("RANK", "5"), ("WORLD_SIZE", "8")]))
            .unwrap()
            .unwrap();
        assert_eq!((p.local_rank, p.local_world), (0, 1));
        assert!(Launch::from_vars(env(&[("SLURM_NTASKS", "4")])).is_err());
        assert!(Launch::from_vars(env(&[
            ("SLURM_NTASKS", "4"),
            ("SLURM_PROCID", "1"),
            ("SLURM_NTASKS_PER_NODE", "x"),
        ]))
        .is_err());
    }

    #[test]
    fn first_hosts_of_node_lists() {
        assert_eq!(first_host("node1"), "node1");
        assert_eq!(first_host("a1,a2"), "a1");
        assert_eq!(first_host("n[01-04]"), "n01");
        assert_eq!(first_host("n[3,5-6],m2"), "n3");
    }
}
