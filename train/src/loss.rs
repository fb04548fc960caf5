//! The FNC loss (SPEC §4), on a view-major embedding matrix.
//!
//! Rows `[v*B, (v+1)*B)` of Z are view v of images 0..B-1. Similarities are
//! `z_u . z_w / tau` of L2-normalised rows. False negatives of image i are the
//! candidates (j, v), j != i, whose score — the max (or mean) over i's support set
//! of cosine similarities — is in the top-k of i's scores and above the
//! threshold; detection carries no gradient.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

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
}

impl LossConfig {
    /// Checks the options for `views` views per image; an error names the flag.
    pub fn validate(&self, views: i64) -> Result<(), LossError> {
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(LossError::Option {
                flag: "--temperature",
                detail: format!("{} is not a positive number", self.temperature),
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

/// The loss and what detection found.
#[derive(Debug)]
pub struct LossOutput {
    /// Scalar loss (differentiable).
    pub loss: Tensor,
    /// `[B, N]` boolean: candidate rows detected as false negatives of image i.
    pub false_negatives: Tensor,
    /// Mean |F_i| over images.
    pub mean_fn: f64,
    /// Share of detected false negatives with the anchor's label (labels given).
    pub fn_precision: Option<f64>,
    /// Share of all candidates with the anchor's label: precision by chance.
    pub fn_chance: Option<f64>,
    /// Share of the candidates with the anchor's label that were detected.
    pub fn_recall: Option<f64>,
    /// The counts the statistics come from (summed over the shards of a
    /// data-parallel step, they give the global batch's statistics).
    pub counts: FnCounts,
}

/// Raw counts behind the FN statistics of a loss (or of one shard of it).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FnCounts {
    /// Images whose anchors were computed.
    pub images: f64,
    /// Detected false negatives.
    pub detected: f64,
    /// Detected ones with the anchor's label (labels given).
    pub detected_same: f64,
    /// Candidates with the anchor's label.
    pub candidates_same: f64,
    /// All candidates.
    pub candidates: f64,
    /// Whether labels were given (precision, chance and recall exist).
    pub labelled: bool,
}

impl FnCounts {
    /// Mean |F_i|, precision, chance rate and recall from the counts.
    pub fn stats(&self) -> (f64, Option<f64>, Option<f64>, Option<f64>) {
        let mean_fn = self.detected / self.images.max(1.0);
        if !self.labelled {
            return (mean_fn, None, None, None);
        }
        (
            mean_fn,
            (self.detected > 0.0).then(|| self.detected_same / self.detected),
            (self.candidates > 0.0).then(|| self.candidates_same / self.candidates),
            (self.candidates_same > 0.0).then(|| self.detected_same / self.candidates_same),
        )
    }
}

/// The images of the global batch whose anchors one rank of a data-parallel
/// step computes: `count` images from `first`. The loss it returns is that
/// shard's part (the sum over the shards is the loss), its statistics are the
/// shard's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub first: i64,
    pub count: i64,
}

/// Errors of the loss's inputs.
#[derive(Debug, thiserror::Error)]
pub enum LossError {
    #[error("--views {views}: the embedding matrix has {rows} rows, not a multiple of V")]
    Shape { views: i64, rows: i64 },
    #[error("--labels: shape {shape:?}, but the embeddings hold {images} images: want [{images}] (one label per image)")]
    Labels { shape: Vec<i64>, images: i64 },
    #[error("invalid option {flag}: {detail}")]
    Option { flag: &'static str, detail: String },
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// Checks `z` (`[V*B, d]`), `labels` (`[B]`) and the options; returns B.
fn images_in(
    z: &Tensor,
    views: i64,
    cfg: &LossConfig,
    labels: Option<&Tensor>,
) -> Result<i64, LossError> {
    let size = z.size();
    let n = size.first().copied().unwrap_or(0);
    if views < 2 || n == 0 || n % views != 0 || size.len() != 2 {
        return Err(LossError::Shape { views, rows: n });
    }
    cfg.validate(views)?;
    let b = n / views;
    if let Some(l) = labels {
        if l.size() != [b] {
            return Err(LossError::Labels {
                shape: l.size(),
                images: b,
            });
        }
    }
    Ok(b)
}

fn l2_normalise(z: &Tensor) -> Result<Tensor, LossError> {
    Ok(z / z
        .f_norm_scalaropt_dim(2, [1i64].as_slice(), true)?
        .clamp_min(1e-12))
}

/// `[|U|, B, d]`: the support set of every image, from view-major `z`.
fn support_rows(z: &Tensor, views: i64, b: i64, cfg: &LossConfig) -> Result<Tensor, LossError> {
    let support: Vec<i64> = match cfg.support_set {
        SupportSet::All => (0..views).collect(),
        SupportSet::Support => (2..views).collect(),
    };
    let sel = Tensor::from_slice(&support).to_device(z.device());
    Ok(z.f_view([views, b, -1])?.f_index_select(0, &sel)?)
}

/// Computes the FNC loss of `z` (`[V*B, d]`, view-major). `labels` (`[B]`, int64)
/// only feed the FN precision statistic.
pub fn fnc_loss(
    z: &Tensor,
    views: i64,
    cfg: &LossConfig,
    labels: Option<&Tensor>,
) -> Result<LossOutput, LossError> {
    fnc_loss_shard(z, views, cfg, labels, None)
}

/// [`fnc_loss`] of the anchors of `shard`'s images only (all when `None`),
/// against every key of `z`: one rank's part of a data-parallel step.
pub fn fnc_loss_shard(
    z: &Tensor,
    views: i64,
    cfg: &LossConfig,
    labels: Option<&Tensor>,
    shard: Option<Shard>,
) -> Result<LossOutput, LossError> {
    let b = images_in(z, views, cfg, labels)?;
    let z = l2_normalise(z)?;
    let m = cfg.anchor_views(views) * b;
    let anchors = z.f_narrow(0, 0, m)?;
    let support = support_rows(&z.detach(), views, b, cfg)?;
    let labels = labels.map(|l| l.to_device(z.device()).to_kind(Kind::Int64));
    let key_labels = labels.as_ref().map(|l| l.repeat([m / b]));
    contrast(&Contrast {
        anchors: &anchors,
        keys: &anchors,
        valid: None,
        support: &support,
        b,
        cfg,
        labels: labels.as_ref(),
        key_labels: key_labels.as_ref(),
        shard,
    })
}

/// The memory variant (the reference's `memory_multiplier`): anchors are the
/// online embeddings `z` (`[V*B, d]`, view-major); keys are the momentum
/// encoder's embeddings of this batch (`z_momentum`, same shape, no gradient)
/// followed by the older ones held in `bank`. Positives of anchor (i, a) are
/// the momentum embeddings of i's other views; its own view's is left out of
/// the denominator; detection compares i's support set, as the momentum
/// encoder sees it, with every key of another image. Push `z_momentum` into
/// the bank after the step with [`MemoryBank::push`].
pub fn fnc_loss_memory(
    z: &Tensor,
    z_momentum: &Tensor,
    bank: &MemoryBank,
    views: i64,
    cfg: &LossConfig,
    labels: Option<&Tensor>,
) -> Result<LossOutput, LossError> {
    fnc_loss_memory_shard(z, z_momentum, bank, views, cfg, labels, None)
}

/// [`fnc_loss_memory`] of `shard`'s anchors only (see [`fnc_loss_shard`]).
pub fn fnc_loss_memory_shard(
    z: &Tensor,
    z_momentum: &Tensor,
    bank: &MemoryBank,
    views: i64,
    cfg: &LossConfig,
    labels: Option<&Tensor>,
    shard: Option<Shard>,
) -> Result<LossOutput, LossError> {
    let b = images_in(z, views, cfg, labels)?;
    if z_momentum.size() != z.size() {
        return Err(LossError::Shape {
            views,
            rows: z_momentum.size().first().copied().unwrap_or(0),
        });
    }
    let m = cfg.anchor_views(views) * b;
    let capacity = bank.capacity();
    if capacity < m {
        return Err(LossError::Option {
            flag: "--memory",
            detail: format!(
                "a bank of {capacity} rows cannot hold the {m} anchor views of one batch; \
                 the multiplier must be at least the number of anchor views"
            ),
        });
    }
    let z = l2_normalise(z)?;
    let zm = l2_normalise(&z_momentum.detach())?;
    let anchors = z.f_narrow(0, 0, m)?;
    let support = support_rows(&zm, views, b, cfg)?;
    let current = zm.f_narrow(0, 0, m)?;
    let dev = z.device();
    let labels = labels.map(|l| l.to_device(dev).to_kind(Kind::Int64));
    let current_labels = match &labels {
        Some(l) => l.repeat([m / b]),
        None => Tensor::f_full([m], -1i64, (Kind::Int64, dev))?,
    };
    let (keys, valid, key_labels) = bank.keys_with(&current, &current_labels)?;
    contrast(&Contrast {
        anchors: &anchors,
        keys: &keys,
        valid: Some(&valid),
        support: &support,
        b,
        cfg,
        labels: labels.as_ref(),
        key_labels: labels.as_ref().map(|_| &key_labels),
        shard,
    })
}

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

    /// The keys of a step: `current` on top of the bank's newest rows, the
    /// whole as long as the bank; with a mask of the real rows and the labels.
    fn keys_with(
        &self,
        current: &Tensor,
        labels: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor), LossError> {
        let m = current.size()[0];
        let keep = self.capacity() - m;
        let dev = self.keys.device();
        let current = current.to_kind(self.keys.kind());
        let keys = Tensor::f_cat(&[&current, &self.keys.f_narrow(0, 0, keep)?], 0)?;
        let labels = Tensor::f_cat(&[labels, &self.labels.f_narrow(0, 0, keep)?], 0)?;
        let valid = Tensor::f_arange(self.capacity(), (Kind::Int64, dev))?
            .f_lt(m + self.filled.min(keep))?;
        Ok((keys, valid, labels))
    }

    /// Pushes the anchor views of a batch (`z_momentum` as given to
    /// [`fnc_loss_memory`]), dropping the oldest rows.
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
        let (keys, _, labels) = tch::no_grad(|| self.keys_with(&current, &l))?;
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
        let get =
            |n: &str| crate::optim::state_entry(named, n, " (was the run trained with --memory?)");
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
        let filled = crate::optim::scalar_entry(named, "memory.filled")?;
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

/// One contrast: anchors (`[m, d]`, normalised, view-major over the anchor
/// views) against keys (`[Nk, d]`, normalised), whose first `m` rows are the
/// anchor views of the same batch in the same order.
struct Contrast<'a> {
    anchors: &'a Tensor,
    keys: &'a Tensor,
    /// `[Nk]` bool: rows that hold an embedding (all when `None`).
    valid: Option<&'a Tensor>,
    /// `[|U|, B, d]`: each image's support set for detection.
    support: &'a Tensor,
    b: i64,
    cfg: &'a LossConfig,
    /// `[B]`: labels of the batch, for the FN precision statistic.
    labels: Option<&'a Tensor>,
    /// `[Nk]`: labels of the keys (-1 unknown).
    key_labels: Option<&'a Tensor>,
    /// The images whose anchors to compute (all when `None`).
    shard: Option<Shard>,
}

fn contrast(c: &Contrast) -> Result<LossOutput, LossError> {
    let (b, cfg) = (c.b, c.cfg);
    let m = c.anchors.size()[0];
    let nk = c.keys.size()[0];
    let dev = c.anchors.device();
    let Shard { first, count: nb } = c.shard.unwrap_or(Shard { first: 0, count: b });
    if first < 0 || nb < 1 || first + nb > b {
        return Err(LossError::Option {
            flag: "shard",
            detail: format!(
                "images {first}..{} are not within the batch of {b}",
                first + nb
            ),
        });
    }
    let idx = Tensor::f_arange(nk, (Kind::Int64, dev))?;
    // The image of each key row; rows past the batch belong to no image of it.
    let key_img = idx
        .f_remainder(b)?
        .f_where_scalarother(&idx.f_lt(m)?, -1i64)?;
    let img = Tensor::f_arange_start(first, first + nb, (Kind::Int64, dev))?;
    let same = img.unsqueeze(1).f_eq_tensor(&key_img.unsqueeze(0))?; // [nb, Nk]
    let support = c.support.f_narrow(1, first, nb)?;
    let labels = c.labels.map(|l| l.narrow(0, first, nb));

    // Detection, without gradient.
    let (fmask, counts) = tch::no_grad(|| -> Result<_, LossError> {
        let keys = c.keys.detach();
        let per_view = support.f_matmul(&keys.f_tr()?)?; // [|U|, nb, Nk]
        let score = match cfg.aggregate {
            Aggregate::Max => per_view.f_amax([0i64].as_slice(), false)?,
            Aggregate::Mean => per_view.f_mean_dim([0i64].as_slice(), false, keys.kind())?,
        };
        let mut candidate = same.logical_not();
        if let Some(v) = c.valid {
            candidate = candidate.f_logical_and(&v.unsqueeze(0))?;
        }
        let same_label = match (&labels, c.key_labels) {
            (Some(l), Some(kl)) => Some(l.unsqueeze(1).f_eq_tensor(&kl.unsqueeze(0))?),
            _ => None,
        };
        let f = match cfg.detect {
            Detect::Support => filter(&score, &candidate, cfg, nk)?,
            Detect::Oracle => {
                let sl = same_label.as_ref().ok_or_else(|| LossError::Option {
                    flag: "--fn-detect",
                    detail: "oracle detection needs the labels of the batch".into(),
                })?;
                let right = candidate.f_logical_and(sl)?;
                let f = if cfg.oracle_filter {
                    filter(&score, &right, cfg, nk)?
                } else {
                    right
                };
                if cfg.oracle_precision < 1.0 {
                    let wrong = candidate.f_logical_and(&sl.logical_not())?;
                    noisy(&f, &wrong, cfg.oracle_precision, first, b)?
                } else {
                    f
                }
            }
        };
        let count =
            |t: &Tensor| -> Result<f64, LossError> { Ok(t.f_sum(Kind::Float)?.double_value(&[])) };
        let mut counts = FnCounts {
            images: nb as f64,
            detected: count(&f)?,
            ..FnCounts::default()
        };
        if let Some(same_label) = &same_label {
            counts.labelled = true;
            counts.detected_same = count(&f.f_logical_and(same_label)?)?;
            counts.candidates_same = count(&candidate.f_logical_and(same_label)?)?;
            counts.candidates = count(&candidate)?;
        }
        Ok((f, counts))
    })?;
    let (mean_fn, fn_precision, fn_chance, fn_recall) = counts.stats();

    // The shard's anchor rows: view a of images first..first+nb, per anchor view.
    let rows: Vec<i64> = (0..m / b)
        .flat_map(|a| (a * b + first)..(a * b + first + nb))
        .collect();
    let rows = Tensor::from_slice(&rows).to_device(dev);
    let anchors = if nb == b {
        c.anchors.shallow_clone()
    } else {
        c.anchors.f_index_select(0, &rows)?
    };
    let sim = anchors.f_matmul(&c.keys.f_tr()?)? / cfg.temperature; // [rows, Nk]
    let row_img = Tensor::f_arange(rows.size()[0], (Kind::Int64, dev))?.f_remainder(nb)?;
    // The anchor's own view among the keys (itself, or its momentum embedding).
    let own = rows.unsqueeze(1).f_eq_tensor(&idx.unsqueeze(0))?;
    let positives = same
        .f_index_select(0, &row_img)?
        .f_logical_and(&own.logical_not())?;
    let f_rows = fmask.f_index_select(0, &row_img)?; // [rows, Nk]
    let mut in_denominator = own.logical_not();
    if let Some(v) = c.valid {
        in_denominator = in_denominator.f_logical_and(&v.unsqueeze(0))?;
    }
    if cfg.strategy == Strategy::Elimination {
        in_denominator = in_denominator.f_logical_and(&f_rows.logical_not())?;
    }
    let log_d = sim
        .f_masked_fill(&in_denominator.logical_not(), f64::NEG_INFINITY)?
        .f_logsumexp([1i64].as_slice(), true)?;
    let targets = match cfg.strategy {
        Strategy::Attraction => positives.f_logical_or(&f_rows)?,
        _ => positives,
    };
    let kind = sim.kind();
    let t = targets.to_kind(kind);
    let per_row = -((sim - log_d) * &t).f_sum_dim_intlist([1i64].as_slice(), false, kind)?
        / t.f_sum_dim_intlist([1i64].as_slice(), false, kind)?;
    // L = (2 / V_a) sum_a mean_i l(i, a) = 2 * mean over the V_a * B anchor
    // rows; a shard contributes its rows' share of that mean.
    let loss = if nb == b {
        per_row.f_mean(kind)? * 2.0
    } else {
        per_row.f_sum(kind)? * (2.0 / m as f64)
    };
    Ok(LossOutput {
        loss,
        false_negatives: fmask,
        mean_fn,
        fn_precision,
        fn_chance,
        fn_recall,
        counts,
    })
}

/// The members of `set` (`[B, Nk]` bool) that the top-k and threshold filter
/// keeps when it ranks them by `score` (whose entries outside `set` are
/// ignored).
fn filter(score: &Tensor, set: &Tensor, cfg: &LossConfig, nk: i64) -> Result<Tensor, LossError> {
    let score = score.f_masked_fill(&set.logical_not(), f64::NEG_INFINITY)?;
    let mut f = set.shallow_clone();
    if cfg.topk > 0 {
        // Past the set's members, top-k picks -inf scores that `set` drops.
        let k = cfg.topk.min(nk);
        let (_, top_idx) = score.f_topk(k, 1, true, false)?;
        let top = score
            .f_zeros_like()?
            .to_kind(Kind::Bool)
            .f_scatter_value(1, &top_idx, 1)?;
        f = f.f_logical_and(&top)?;
    }
    if let Some(t) = cfg.threshold {
        f = f.f_logical_and(&score.f_gt(t)?)?;
    }
    Ok(f)
}

/// A noisy oracle: each member of `f` (`[B, Nk]` bool) is kept with
/// probability `precision`, and every dropped one is replaced by a random
/// member of `wrong` (distinct, uniformly chosen), so |F_i| is kept while
/// `wrong` has enough members. Draws from libtorch's global generator: the
/// trainer seeds it per step, so runs and resumes repeat. `f` holds the rows
/// of images `first..` of a batch of `batch` images (a rank's shard): the
/// draws are made for the whole batch and the shard's rows taken, so the ranks
/// of a data-parallel run draw what one process would.
fn noisy(
    f: &Tensor,
    wrong: &Tensor,
    precision: f64,
    first: i64,
    batch: i64,
) -> Result<Tensor, LossError> {
    let (b, nk) = (f.size()[0], f.size()[1]);
    let dev = f.device();
    let draw = || -> Result<Tensor, LossError> {
        Ok(Tensor::f_rand([batch, nk], (Kind::Float, dev))?.f_narrow(0, first, b)?)
    };
    // Both draws always, so the generator moves alike on every rank.
    let (keep_draw, order_draw) = (draw()?, draw()?);
    let drop = f.f_logical_and(&keep_draw.f_ge(precision)?)?;
    let kept = f.f_logical_and(&drop.logical_not())?;
    let n_drop = drop.f_sum_dim_intlist([1i64].as_slice(), false, Kind::Int64)?; // [B]
    let most = n_drop.f_max()?.f_int64_value(&[])?;
    if most == 0 {
        return Ok(kept);
    }
    // A uniformly random order of each row's wrong candidates: random keys,
    // non-members last, sorted, so a row's choice does not depend on the
    // other rows (a rank's shard chooses what the whole batch does).
    let keys = order_draw.f_masked_fill(&wrong.logical_not(), -1.0)?;
    let (_, order) = keys.f_topk(most.min(nk), 1, true, true)?; // [B, K], by key
    let rank = Tensor::f_arange(order.size()[1], (Kind::Int64, dev))?.unsqueeze(0);
    let take = rank.f_lt_tensor(&n_drop.unsqueeze(1))?; // [B, K]
    let added = f
        .f_zeros_like()?
        .f_scatter(1, &order, &take)?
        .f_logical_and(wrong)?;
    Ok(kept.f_logical_or(&added)?)
}
