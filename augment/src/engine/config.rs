//! The engine's configuration, validated once by its builder.

use std::sync::Arc;

use crate::error::AugmentError;
use crate::params::Recipe;

/// What to do with a record that fails to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Stop with an error naming shard and record (default).
    Fail,
    /// Use the next record that decodes instead, and count it.
    Substitute,
}

/// A validated engine configuration; build it with [`EngineConfig::builder`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub(super) batch_size: usize,
    pub(super) support: usize,
    pub(super) size: u32,
    pub(super) support_size: u32,
    pub(super) seed: u64,
    pub(super) threads: usize,
    pub(super) queue_depth: usize,
    pub(super) recipe: Recipe,
    pub(super) on_error: OnError,
    pub(super) subset: Option<Arc<Vec<u64>>>,
}

/// Builds an [`EngineConfig`]; every setter says its default.
#[derive(Debug, Clone)]
pub struct EngineConfigBuilder(EngineConfig);

impl EngineConfig {
    /// The most support views per image.
    pub const MAX_SUPPORT: usize = 64;

    pub fn builder() -> EngineConfigBuilder {
        EngineConfigBuilder(EngineConfig {
            batch_size: 256,
            support: 8,
            size: 224,
            support_size: 224,
            seed: 0,
            threads: 0,
            queue_depth: 4,
            recipe: Recipe::default(),
            on_error: OnError::Fail,
            subset: None,
        })
    }

    /// Views per image: 2 main + support.
    pub fn views(&self) -> usize {
        2 + self.support
    }

    /// Side of view `v` (main views 0 and 1, then support views).
    pub fn view_side(&self, v: usize) -> u32 {
        if v < 2 {
            self.size
        } else {
            self.support_size
        }
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Finished batches the queue holds before the producer waits.
    pub fn queue_depth(&self) -> usize {
        self.queue_depth
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn recipe(&self) -> &Recipe {
        &self.recipe
    }
}

impl EngineConfigBuilder {
    /// Images per batch (default 256).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.0.batch_size = n;
        self
    }
    /// Support views per image, S (default 8; V = 2 + S; at most
    /// [`EngineConfig::MAX_SUPPORT`]).
    pub fn support(mut self, s: usize) -> Self {
        self.0.support = s;
        self
    }
    /// Side of the 2 main views (default 224).
    pub fn size(mut self, side: u32) -> Self {
        self.0.size = side;
        self
    }
    /// Side of the support views (default 224, as in the reference).
    pub fn support_size(mut self, side: u32) -> Self {
        self.0.support_size = side;
        self
    }
    /// Seed of every draw (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.0.seed = seed;
        self
    }
    /// Worker threads, 0 = one per core (default 0). Output does not depend on it.
    pub fn threads(mut self, n: usize) -> Self {
        self.0.threads = n;
        self
    }
    /// Finished batches waiting for the consumer (default 4).
    pub fn queue_depth(mut self, n: usize) -> Self {
        self.0.queue_depth = n;
        self
    }
    /// The augmentation recipe (default: SimCLR v2's, [`Recipe::default`]).
    pub fn recipe(mut self, r: Recipe) -> Self {
        self.0.recipe = r;
        self
    }
    /// Read only these records (e.g. a labelled fraction for fine-tuning); the
    /// sampler then permutes positions in this list (default: the whole split).
    pub fn subset(mut self, indices: Arc<Vec<u64>>) -> Self {
        self.0.subset = Some(indices);
        self
    }
    /// Bad records: fail (default) or substitute and count.
    pub fn on_error(mut self, e: OnError) -> Self {
        self.0.on_error = e;
        self
    }

    pub fn build(self) -> Result<EngineConfig, AugmentError> {
        let c = self.0;
        if c.batch_size == 0 {
            return Err(AugmentError::Config {
                flag: "--batch-size",
                detail: "must be at least 1".into(),
            });
        }
        if c.support > EngineConfig::MAX_SUPPORT {
            return Err(AugmentError::Config {
                flag: "--support",
                detail: format!("{} is not in 0..={}", c.support, EngineConfig::MAX_SUPPORT),
            });
        }
        for (flag, side) in [("--size", c.size), ("--support-size", c.support_size)] {
            if !(8..=4096).contains(&side) {
                return Err(AugmentError::Config {
                    flag,
                    detail: format!("{side} is not in 8..=4096"),
                });
            }
        }
        if c.queue_depth == 0 {
            return Err(AugmentError::Config {
                flag: "--queue-depth",
                detail: "must be at least 1".into(),
            });
        }
        // One batch's view buffers must be addressable (Vec's limit).
        let pixels = |side: u32| u64::from(side) * u64::from(side) * 3;
        let per_image = 2 * pixels(c.size) + c.support as u64 * pixels(c.support_size);
        if per_image
            .checked_mul(c.batch_size as u64)
            .is_none_or(|b| b > isize::MAX as u64)
        {
            return Err(AugmentError::Config {
                flag: "--batch-size",
                detail: format!(
                    "{} images of {per_image} view bytes each do not fit in memory",
                    c.batch_size
                ),
            });
        }
        let r = &c.recipe;
        if !(0.0..=1.0).contains(&r.solarize_p) {
            return Err(AugmentError::Config {
                flag: "--solarize",
                detail: format!("{} is not a probability in [0, 1]", r.solarize_p),
            });
        }
        if !(0.0..=Recipe::MAX_JITTER_STRENGTH).contains(&r.jitter_strength) {
            return Err(AugmentError::Config {
                flag: "--color-strength",
                detail: format!(
                    "{} is not in [0, {}]",
                    r.jitter_strength,
                    Recipe::MAX_JITTER_STRENGTH
                ),
            });
        }
        let probs = [r.flip_p, r.jitter_p, r.grey_p, r.blur_p];
        if probs.iter().any(|p| !(0.0..=1.0).contains(p)) {
            return Err(AugmentError::Config {
                flag: "recipe",
                detail: "probabilities must be in [0, 1]".into(),
            });
        }
        if !(r.crop_scale.0 > 0.0 && r.crop_scale.0 <= r.crop_scale.1 && r.crop_scale.1 <= 1.0) {
            return Err(AugmentError::Config {
                flag: "crop scale",
                detail: format!("{:?} is not a range within (0, 1]", r.crop_scale),
            });
        }
        let (lo, hi) = r.blur_sigma;
        if !(0.0 <= lo && lo <= hi && hi <= Recipe::MAX_BLUR_SIGMA) {
            return Err(AugmentError::Config {
                flag: "blur sigma",
                detail: format!(
                    "{:?} is not a range within [0, {}] pixels",
                    r.blur_sigma,
                    Recipe::MAX_BLUR_SIGMA
                ),
            });
        }
        if let Some(ra) = &r.randaugment {
            ra.check().map_err(|detail| AugmentError::Config {
                flag: "--randaugment",
                detail,
            })?;
        }
        Ok(c)
    }
}
