//! Which records, in which order: a seeded permutation per epoch, split by rank.

use serde::{Deserialize, Serialize};

use crate::rng::ViewRng;

/// The sampler's whole state: small, saved with checkpoints, restored exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerState {
    pub seed: u64,
    pub epoch: u64,
    /// Records of the epoch already handed out, over all ranks (the same on
    /// every rank).
    pub position: u64,
}

/// A seeded permutation of `0..len` per epoch, cut into global batches of
/// `world x n`; rank `r` of `world` gets the `r`-th slice of `n` of each. So the
/// ranks' batches, concatenated in rank order, are exactly the batch one
/// process would draw with `world x n`, whatever the world size.
#[derive(Debug, Clone)]
pub struct Sampler {
    len: u64,
    rank: u64,
    world: u64,
    state: SamplerState,
    perm: Vec<u64>,
    perm_epoch: Option<u64>,
}

impl Sampler {
    pub fn new(len: u64, seed: u64, rank: u64, world: u64) -> Sampler {
        let world = world.max(1);
        Sampler {
            len,
            rank: rank.min(world - 1),
            world,
            state: SamplerState {
                seed,
                epoch: 0,
                position: 0,
            },
            perm: Vec::new(),
            perm_epoch: None,
        }
    }

    /// A sampler continuing exactly where `state` left off.
    pub fn restore(len: u64, rank: u64, world: u64, state: SamplerState) -> Sampler {
        let mut s = Sampler::new(len, state.seed, rank, world);
        s.state = state;
        s
    }

    pub fn state(&self) -> SamplerState {
        self.state
    }

    /// Records per epoch for this rank.
    pub fn epoch_len(&self) -> u64 {
        self.len / self.world
    }

    pub fn rank(&self) -> u64 {
        self.rank
    }

    pub fn world(&self) -> u64 {
        self.world
    }

    /// The permutation of `epoch` (Fisher-Yates with the epoch's own stream).
    pub fn permutation(len: u64, seed: u64, epoch: u64) -> Vec<u64> {
        let mut p: Vec<u64> = (0..len).collect();
        let mut rng = ViewRng::new(seed, epoch, u64::MAX, u64::MAX);
        for i in (1..p.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            p.swap(i, j);
        }
        p
    }

    /// The next `n` record indices and their epoch; moves to the next epoch when
    /// fewer than `n` remain in this one (the remainder is dropped, as usual for
    /// contrastive batches). None when the split is smaller than `n` per rank.
    pub fn next_batch(&mut self, n: u64) -> Option<(u64, Vec<u64>)> {
        let global = n * self.world;
        if n == 0 || self.len < global {
            return None;
        }
        if self.state.position + global > self.len {
            self.state.epoch += 1;
            self.state.position = 0;
        }
        if self.perm_epoch != Some(self.state.epoch) {
            self.perm = Self::permutation(self.len, self.state.seed, self.state.epoch);
            self.perm_epoch = Some(self.state.epoch);
        }
        let start = (self.state.position + self.rank * n) as usize;
        let out = self.perm[start..start + n as usize].to_vec();
        self.state.position += global;
        Some((self.state.epoch, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_are_disjoint_equal_and_cover_the_epoch() {
        let (len, world) = (103u64, 4u64);
        let mut all = Vec::new();
        for rank in 0..world {
            let mut s = Sampler::new(len, 9, rank, world);
            let mut got = Vec::new();
            for _ in 0..5 {
                let (e, b) = s.next_batch(5).unwrap();
                assert_eq!(e, 0);
                got.extend(b);
            }
            assert_eq!(got.len(), 25);
            all.extend(got);
        }
        let mut sorted = all.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len(), "ranks overlap");
    }

    #[test]
    fn ranks_concatenated_are_the_single_process_batches() {
        let (len, world, n) = (103u64, 4u64, 6u64);
        let mut one = Sampler::new(len, 9, 0, 1);
        let mut ranks: Vec<Sampler> = (0..world).map(|r| Sampler::new(len, 9, r, world)).collect();
        // 10 global batches of 24 cross the epoch boundary (4 per epoch).
        for _ in 0..10 {
            let (e, want) = one.next_batch(n * world).unwrap();
            let mut got = Vec::new();
            for s in ranks.iter_mut() {
                let (er, b) = s.next_batch(n).unwrap();
                assert_eq!(er, e);
                got.extend(b);
            }
            assert_eq!(got, want);
            assert_eq!(ranks[1].state(), one.state(), "one global position");
        }
    }

    #[test]
    fn epochs_differ_and_restore_is_exact() {
        let mut a = Sampler::new(50, 3, 0, 1);
        let e0: Vec<u64> = (0..5).flat_map(|_| a.next_batch(10).unwrap().1).collect();
        let mut sorted = e0.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        let (epoch, e1_first) = a.next_batch(10).unwrap();
        assert_eq!(epoch, 1);
        assert_ne!(&e1_first[..], &e0[..10]);
        // Save mid-epoch, go on, restore, and compare.
        let saved = a.state();
        let cont: Vec<_> = (0..7).map(|_| a.next_batch(10).unwrap()).collect();
        let mut b = Sampler::restore(50, 0, 1, saved);
        let again: Vec<_> = (0..7).map(|_| b.next_batch(10).unwrap()).collect();
        assert_eq!(cont, again);
    }
}
