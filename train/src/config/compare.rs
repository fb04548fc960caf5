//! How two configurations compare: what may change on resume or in a branch
//! (`--init-from`), and the first difference, named by its flag.

use crate::error::TrainError;

use super::TrainConfig;

impl TrainConfig {
    /// Checks that a resumed run keeps its recorded config (`recorded`, the
    /// run's config.toml): only the run length (`--steps`, `--epochs`),
    /// `--checkpoint-every`, `--knn-every`, `--workers`, `--max-bad-records`,
    /// `--recompute`, `--loss-block` (memory, not results) and `--overlap-grads`
    /// (time) may change; any other
    /// difference is refused, naming its flag.
    pub fn check_resume(&self, recorded: &TrainConfig) -> Result<(), TrainError> {
        let mut same = recorded.clone();
        same.steps = self.steps;
        same.epochs = self.epochs;
        same.stop_at_step = self.stop_at_step;
        same.checkpoint_every = self.checkpoint_every;
        same.knn_every = self.knn_every;
        same.workers = self.workers;
        same.max_bad_records = self.max_bad_records;
        // The same step in another memory.
        same.recompute = self.recompute;
        same.loss.block = self.loss.block;
        // The same sums, sooner or later.
        same.overlap_grads = self.overlap_grads;
        // What is watched, not what is computed.
        same.tensorboard = self.tensorboard;
        let Some((flag, here, there)) = self.difference(&same) else {
            return Ok(());
        };
        Err(TrainError::Config {
            flag,
            detail: format!(
                "--resume continues the run with its recorded config, where it is {there} \
                 (here {here}); only --steps, --epochs, --checkpoint-every, --knn-every, \
                 --workers, --max-bad-records, --dist-timeout, --recompute, --loss-block \
                 and --overlap-grads may change on resume: start a new run (another --out) to change it"
            ),
        })
    }

    /// Checks that a run branching from `parent`'s latest checkpoint
    /// (`--init-from`) continues what the parent learned: besides what may
    /// change on resume, only how false negatives are detected and cancelled
    /// may differ (`--fn-*` but `--fn-anchors`, which changes the loss even
    /// without cancellation); anything else is refused, naming its flag.
    /// Where the branch starts, [`crate::Start::InitFrom`] also checks that
    /// its config describes the parent's steps as they ran.
    pub fn check_branch(&self, parent: &TrainConfig) -> Result<(), TrainError> {
        let mut same = parent.clone();
        let (mine, theirs) = (&self.loss, &mut same.loss);
        theirs.strategy = mine.strategy;
        theirs.aggregate = mine.aggregate;
        theirs.topk = mine.topk;
        theirs.threshold = mine.threshold;
        theirs.support_set = mine.support_set;
        theirs.detect = mine.detect;
        theirs.oracle_filter = mine.oracle_filter;
        theirs.oracle_precision = mine.oracle_precision;
        theirs.start_step = mine.start_step;
        self.check_resume(&same).map_err(|e| match e {
            TrainError::Config { flag, .. } => {
                let (_, here, there) = self.difference(&same).unwrap_or_default();
                TrainError::Config {
                    flag,
                    detail: format!(
                        "--init-from branches from the parent run, where it is {there} (here \
                         {here}); a branch may change the --fn-* options and what may change \
                         on resume, nothing else"
                    ),
                }
            }
            other => other,
        })
    }

    /// The first option where `self` and `other` differ: its flag, and its
    /// value here and there (`None` when they are the same).
    pub fn difference(&self, other: &TrainConfig) -> Option<(&'static str, String, String)> {
        if self == other {
            return None;
        }
        let table = |c: &TrainConfig| toml::Value::try_from(c).ok();
        let (mine, theirs) = (table(self), table(other));
        let key =
            first_difference(mine.as_ref(), theirs.as_ref(), "").unwrap_or_else(|| "config".into());
        let shown = |v: Option<&toml::Value>| -> String {
            v.and_then(|v| lookup(v, &key))
                .map(|v| v.to_string())
                .unwrap_or_else(|| "unset".into())
        };
        Some((
            flag_of_key(&key),
            shown(mine.as_ref()),
            shown(theirs.as_ref()),
        ))
    }
}

/// The dotted key of the first entry where two config tables differ.
fn first_difference(a: Option<&toml::Value>, b: Option<&toml::Value>, at: &str) -> Option<String> {
    match (a, b) {
        (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                first_difference(x.get(k), y.get(k), &path)
            })
        }
        (x, y) if x == y => None,
        _ => Some(at.to_string()),
    }
}

fn lookup<'a>(v: &'a toml::Value, key: &str) -> Option<&'a toml::Value> {
    key.split('.').try_fold(v, |v, k| v.get(k))
}

/// The command-line flag of a config key (the key itself for the few keys
/// that only a config file sets).
pub fn flag_of_key(key: &str) -> &'static str {
    match key {
        "shards" => "--shards",
        "split" => "split (config key)",
        "arch" => "--arch",
        "proj_dim" => "proj_dim (config key)",
        "image_size" => "--image-size",
        "support" => "--support",
        "support_size" => "--support-size",
        "batch_size" => "--batch-size",
        "epochs" => "--epochs",
        "steps" => "--steps",
        "lr" => "--lr",
        "lr_scaling" => "--lr-scaling",
        "optimizer" => "--optimizer",
        "weight_decay" => "--weight-decay",
        "warmup_epochs" => "--warmup-epochs",
        "workers" => "--workers",
        "device" => "--device",
        "precision" => "--precision",
        "memory_format" => "--memory-format",
        "init" => "--init",
        "augment_impl" => "--augment-impl",
        "randaugment" | "randaugment.layers" | "randaugment.magnitude" => "--randaugment",
        "sync_bn" => "--sync-bn",
        "seed" => "--seed",
        "checkpoint_every" => "--checkpoint-every",
        "knn_every" => "--knn-every",
        "stop_at_step" => "--stop-at-step",
        "memory" => "--memory",
        "ema_decay" => "--ema-decay",
        "max_bad_records" => "--max-bad-records",
        "recompute" => "--recompute",
        "micro_batch" => "--micro-batch",
        "overlap_grads" => "--overlap-grads",
        "tensorboard" => "--tensorboard",
        "loss.temperature" => "--temperature",
        "loss.strategy" => "--fn-strategy",
        "loss.start_step" => "--fn-start-step",
        "loss.aggregate" => "--fn-aggregate",
        "loss.topk" => "--fn-topk",
        "loss.threshold" => "--fn-threshold",
        "loss.anchors" => "--fn-anchors",
        "loss.support_set" => "--fn-support",
        "loss.detect" => "--fn-detect",
        "loss.oracle_filter" => "--fn-oracle-filter",
        "loss.oracle_precision" => "--fn-oracle-precision",
        "loss.block" => "--loss-block",
        _ => "--config",
    }
}
