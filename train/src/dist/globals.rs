//! The process's group as BatchNorm layers see it: installed once, with
//! whether synchronised BatchNorm is on, and the first collective failure that
//! happened where no error could be returned (inside a module's forward).

use std::sync::OnceLock;

use super::group::ProcessGroup;
use crate::error::TrainError;

static SYNC_BN: OnceLock<ProcessGroup> = OnceLock::new();

/// Makes `group` this process's group and, when `sync_bn`, turns on global
/// BatchNorm statistics in training mode. A process has at most one group.
pub fn install(group: ProcessGroup, sync_bn: bool) -> &'static ProcessGroup {
    let g = SYNC_BN.get_or_init(|| group);
    SYNC.store(sync_bn, std::sync::atomic::Ordering::Relaxed);
    g
}

static SYNC: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

static FAILURE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Records a collective that failed where no error can be returned (inside a
/// module's forward); the step reports it through [`take_failure`].
pub(crate) fn note_failure(e: &TrainError) {
    let text = match e {
        TrainError::Dist { op, detail, .. } => format!("{op}: {detail}"),
        other => other.to_string(),
    };
    if let Ok(mut f) = FAILURE.lock() {
        f.get_or_insert(text);
    }
}

/// Whether a collective failure was noted and not yet reported: the group is
/// then broken, and further collectives of the step would only wait again.
pub(crate) fn has_failed() -> bool {
    FAILURE.lock().map(|f| f.is_some()).unwrap_or(true)
}

/// The first collective failure noted since the last call, if any.
pub fn take_failure() -> Option<String> {
    FAILURE.lock().ok().and_then(|mut f| f.take())
}

/// The group whose ranks BatchNorm synchronises over, when that is on.
pub fn sync_group() -> Option<&'static ProcessGroup> {
    if SYNC.load(std::sync::atomic::Ordering::Relaxed) {
        SYNC_BN.get()
    } else {
        None
    }
}
