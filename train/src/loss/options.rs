//! The loss's options (SPEC §4 defaults) and their validation.

use serde::{Deserialize, Serialize};

use super::LossError;

/// What to do with detected false negatives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Multi-view NT-Xent (SimCLR when S = 0): no cancellation.
    None,
    /// Remove detected false negatives from the denominator.
    Elimination,
    /// Treat them as extra positives (the reference code's FNC).
    Attraction,
}

/// How a candidate's similarities to the support set are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Aggregate {
    Max,
    Mean,
}

/// Which views are anchors (and positives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Anchors {
    /// Every view (the reference's multi-crop setting).
    All,
    /// Views 0 and 1 only; support views serve detection only.
    Main,
}

/// Which views of image i form its support set for detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SupportSet {
    /// All V views.
    All,
    /// The S support views only.
    Support,
}

/// Where the false negatives F_i come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Detect {
    /// The method: similarity of candidates to image i's support set, filtered
    /// by top-k and threshold.
    #[default]
    Support,
    /// The upper bound: the candidates that share image i's label (labels
    /// reach the loss only here), optionally filtered as `Support` ranks them,
    /// and optionally made noisy (`oracle_precision`).
    Oracle,
}

/// Loss options; defaults are SPEC §4's. Keys missing from a config file take
/// their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    pub temperature: f64,
    pub strategy: Strategy,
    pub aggregate: Aggregate,
    /// 0 disables the top-k filter.
    pub topk: i64,
    /// None disables the threshold filter (written `"none"` in a config, so
    /// that it reads back as off rather than as the default).
    #[serde(with = "threshold_text")]
    pub threshold: Option<f64>,
    pub anchors: Anchors,
    pub support_set: SupportSet,
    pub detect: Detect,
    /// Oracle only: keep the same-label candidates that the top-k / threshold
    /// filter keeps when it ranks them by their support-set score, so that
    /// |F_i| stays comparable to detection's.
    pub oracle_filter: bool,
    /// Oracle only: the share of each F_i that is right; the rest (1 - P) is
    /// replaced by as many random candidates of other labels (|F_i| kept).
    pub oracle_precision: f64,
    /// Anchor rows scored at a time (`--loss-block`); 0 = all at once; None =
    /// chosen from the memory it would take. Changes memory, not results, so
    /// a resumed run may change it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<i64>,
    /// The first step (as logged, from 1) that cancels false negatives; the
    /// steps before it are those of `strategy = none` (`--fn-start-step`): FNC
    /// switched on once the encoder can detect.
    pub start_step: u64,
}

impl LossConfig {
    /// The loss of logged step `step` (from 1): this one, or before
    /// [`LossConfig::start_step`] the same without cancellation.
    pub fn at_step(&self, step: u64) -> std::borrow::Cow<'_, LossConfig> {
        if step >= self.start_step || self.strategy == Strategy::None {
            std::borrow::Cow::Borrowed(self)
        } else {
            // The loss of a `--fn-strategy none` run, start and all.
            std::borrow::Cow::Owned(LossConfig {
                strategy: Strategy::None,
                start_step: 1,
                ..*self
            })
        }
    }

    /// Checks the options for `views` views per image; an error names the flag.
    pub fn validate(&self, views: i64) -> Result<(), LossError> {
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(LossError::Option {
                flag: "--temperature",
                detail: format!("{} is not a positive number", self.temperature),
            });
        }
        if self.start_step == 0 {
            return Err(LossError::Option {
                flag: "--fn-start-step",
                detail: "0: steps count from 1 (1 = from the start)".into(),
            });
        }
        if self.start_step > 1 && self.strategy == Strategy::None {
            return Err(LossError::Option {
                flag: "--fn-start-step",
                detail: format!(
                    "{}: with --fn-strategy none nothing starts; give the strategy that starts there",
                    self.start_step
                ),
            });
        }
        if self.topk < 0 {
            return Err(LossError::Option {
                flag: "--fn-topk",
                detail: format!("{} is negative (0 turns the filter off)", self.topk),
            });
        }
        if let Some(t) = self.threshold {
            if !(-1.0..=1.0).contains(&t) {
                return Err(LossError::Option {
                    flag: "--fn-threshold",
                    detail: format!("{t} is not a cosine similarity in [-1, 1] (or `none`)"),
                });
            }
        }
        if !(0.0..=1.0).contains(&self.oracle_precision) {
            return Err(LossError::Option {
                flag: "--fn-oracle-precision",
                detail: format!("{} is not in [0, 1]", self.oracle_precision),
            });
        }
        if self.detect != Detect::Oracle && (self.oracle_filter || self.oracle_precision < 1.0) {
            let flag = if self.oracle_filter {
                "--fn-oracle-filter"
            } else {
                "--fn-oracle-precision"
            };
            return Err(LossError::Option {
                flag,
                detail: "applies to oracle detection only: add --fn-detect oracle".into(),
            });
        }
        if let Some(r) = self.block.filter(|r| *r < 0) {
            return Err(LossError::Option {
                flag: "--loss-block",
                detail: format!("{r} is negative (0 scores all anchor rows at once)"),
            });
        }
        if self.support_set == SupportSet::Support && views < 3 {
            return Err(LossError::Option {
                flag: "--fn-support",
                detail: "'support' needs support views (V > 2)".into(),
            });
        }
        Ok(())
    }

    /// Views that are anchors (and positives) out of `views`: all V, or the
    /// two main views.
    pub fn anchor_views(&self, views: i64) -> i64 {
        match self.anchors {
            Anchors::All => views,
            Anchors::Main => 2,
        }
    }

    /// Anchor rows per block of the loss: `--loss-block` when given, else
    /// the most of `images` images' anchor rows (of `views` views) against
    /// `keys` keys that fit in `budget_bytes` ([`super::loss_block_rows`]).
    pub fn block_rows(&self, views: i64, images: i64, keys: i64, budget_bytes: i64) -> i64 {
        self.block.unwrap_or_else(|| {
            let rows = self.anchor_views(views).saturating_mul(images);
            super::loss_block_rows(rows, keys, self.support_views(views), budget_bytes)
        })
    }

    /// Views in each image's support set for detection, out of `views`.
    pub fn support_views(&self, views: i64) -> i64 {
        match self.support_set {
            SupportSet::All => views,
            SupportSet::Support => views - 2,
        }
    }
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            temperature: 0.1,
            strategy: Strategy::Attraction,
            aggregate: Aggregate::Max,
            topk: 10,
            threshold: Some(0.7),
            anchors: Anchors::All,
            support_set: SupportSet::All,
            detect: Detect::Support,
            oracle_filter: false,
            oracle_precision: 1.0,
            block: None,
            start_step: 1,
        }
    }
}

/// `threshold` in config files: a number, or `"none"` for no filter.
mod threshold_text {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Text {
        Number(f64),
        Word(String),
    }

    pub fn serialize<S: Serializer>(t: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(x) => Text::Number(*x),
            None => Text::Word("none".into()),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        match Text::deserialize(d)? {
            Text::Number(x) => Ok(Some(x)),
            Text::Word(w) if w == "none" => Ok(None),
            Text::Word(w) => Err(serde::de::Error::custom(format!(
                "threshold {w:?} is not a number or \"none\""
            ))),
        }
    }
}
