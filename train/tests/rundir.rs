//! The run directory: checkpoints found by step, damage named with the file,
//! pruning that keeps the newest by step and never the one just written.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use fnc_augment::SamplerState;
use fnc_train::{CheckpointState, Optimizer, OptimizerKind, RunDir, TrainError};
use tch::{nn, Device};

fn state(step: u64) -> CheckpointState {
    CheckpointState {
        step,
        sampler: SamplerState {
            seed: 1,
            epoch: 0,
            position: step,
        },
        arch: "small".into(),
        bad_records: Vec::new(),
        world: 1,
        files: BTreeMap::new(),
    }
}

/// Saves checkpoints of a tiny model at `steps` into `dir`.
fn save_steps(dir: &Path, steps: &[u64]) -> RunDir {
    let run = RunDir::new(dir);
    let vs = nn::VarStore::new(Device::Cpu);
    let _w = vs.root().var(
        "w",
        &[4, 3],
        nn::Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        },
    );
    let opt = Optimizer::new(
        OptimizerKind::Sgd,
        vs.variables().into_iter().collect(),
        0.0,
    );
    for &s in steps {
        run.save(&vs, &opt, None, state(s)).unwrap();
    }
    run
}

fn names(run: &RunDir) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(run.path().join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("step-"))
        .collect();
    v.sort();
    v
}

#[test]
fn pruning_keeps_the_newest_two_by_step_not_by_name() {
    let t = tempfile::tempdir().unwrap();
    // 99,999,999 < 100,000,000 though "step-99999999" sorts after.
    let run = save_steps(t.path(), &[99_999_998, 99_999_999, 100_000_000]);
    assert_eq!(names(&run), ["step-100000000", "step-99999999"]);
    assert_eq!(run.latest().unwrap().unwrap().state().step, 100_000_000);
}

#[test]
fn no_checkpoint_is_none_and_a_missing_latest_takes_the_newest_complete() {
    let t = tempfile::tempdir().unwrap();
    assert!(RunDir::new(t.path()).latest().unwrap().is_none());
    let run = save_steps(t.path(), &[3, 6]);
    // Killed after the first rename, before `latest` was written.
    std::fs::remove_file(t.path().join("checkpoints/latest")).unwrap();
    assert_eq!(run.latest().unwrap().unwrap().state().step, 6);
}

fn expect_named(r: Result<Option<fnc_train::Checkpoint>, TrainError>, file: &str, more: &str) {
    let e = r.unwrap_err().to_string();
    assert!(e.contains(file), "names {file}: {e}");
    assert!(e.contains(more), "says {more}: {e}");
}

#[test]
fn damage_is_an_error_naming_the_file_and_the_older_checkpoint() {
    let t = tempfile::tempdir().unwrap();
    let run = save_steps(t.path(), &[3, 6]);
    let ck = t.path().join("checkpoints");
    // A damaged `latest`.
    std::fs::write(ck.join("latest"), b"\xff\x00garbage").unwrap();
    expect_named(run.latest(), "latest", "--resume-from");
    // The newest complete checkpoint is offered.
    expect_named(run.latest(), "latest", "step-00000006");
    std::fs::write(ck.join("latest"), b"step-00000006").unwrap();
    assert_eq!(run.latest().unwrap().unwrap().state().step, 6);
    // A `latest` naming a checkpoint that is gone.
    std::fs::write(ck.join("latest"), b"step-00000009").unwrap();
    expect_named(run.latest(), "step-00000009", "step-00000006");
    std::fs::write(ck.join("latest"), b"step-00000006").unwrap();
    // A tensor file with one byte changed, then cut short.
    let model = ck.join("step-00000006/model.safetensors");
    let good = std::fs::read(&model).unwrap();
    let mut bad = good.clone();
    let at = bad.len() - 3;
    bad[at] ^= 0x10;
    std::fs::write(&model, &bad).unwrap();
    expect_named(run.latest(), "model.safetensors", "damaged");
    expect_named(run.latest(), "model.safetensors", "--resume-from");
    expect_named(run.latest(), "model.safetensors", "step-00000003");
    std::fs::write(&model, &good[..good.len() / 2]).unwrap();
    expect_named(run.latest(), "model.safetensors", "damaged");
    std::fs::write(&model, &good).unwrap();
    assert!(run.latest().unwrap().is_some());
    // A state.json that does not parse.
    let st = ck.join("step-00000006/state.json");
    let text = std::fs::read(&st).unwrap();
    std::fs::write(&st, &text[..text.len() / 2]).unwrap();
    expect_named(run.latest(), "state.json", "damaged");
    std::fs::write(&st, &text).unwrap();
    // The older checkpoint is complete and says so.
    let older = fnc_train::Checkpoint::open(&ck.join("step-00000003")).unwrap();
    assert_eq!(older.state().step, 3);
    assert!(older.state().files.contains_key("model.safetensors"));
}

#[test]
fn run_files_are_found() {
    let t = tempfile::tempdir().unwrap();
    let run = RunDir::new(t.path());
    assert!(run.run_files().is_empty());
    std::fs::write(t.path().join("unrelated.txt"), b"x").unwrap();
    assert!(run.run_files().is_empty(), "other files are not a run");
    std::fs::write(t.path().join("metrics.jsonl"), b"").unwrap();
    assert_eq!(run.run_files().len(), 1);
}

#[test]
fn resuming_from_an_older_checkpoint_sets_the_newer_ones_aside() {
    let t = tempfile::tempdir().unwrap();
    let run = save_steps(t.path(), &[3, 6]);
    let older = fnc_train::Checkpoint::open(&t.path().join("checkpoints/step-00000003")).unwrap();
    run.set_aside_after(&older).unwrap();
    assert_eq!(names(&run), ["step-00000003"]);
    assert!(t
        .path()
        .join("checkpoints/superseded-step-00000006/model.safetensors")
        .is_file());
    assert_eq!(run.latest().unwrap().unwrap().state().step, 3);
}

#[test]
fn pruning_never_removes_the_checkpoint_just_written() {
    let t = tempfile::tempdir().unwrap();
    // Stale higher steps (another history of the run), then a lower one.
    let run = save_steps(t.path(), &[7, 8, 9, 4]);
    assert_eq!(
        names(&run),
        ["step-00000004", "step-00000008", "step-00000009"]
    );
    assert_eq!(run.latest().unwrap().unwrap().state().step, 4);
}

#[test]
fn a_missing_latest_over_a_damaged_newest_checkpoint_is_an_error_not_a_fallback() {
    let t = tempfile::tempdir().unwrap();
    let run = save_steps(t.path(), &[3, 6]);
    let ck = t.path().join("checkpoints");
    std::fs::remove_file(ck.join("latest")).unwrap();
    // A power cut after the rename: the newest's tensors never reached disk.
    let model = ck.join("step-00000006/model.safetensors");
    let len = std::fs::metadata(&model).unwrap().len() as usize;
    std::fs::write(&model, vec![0u8; len]).unwrap();
    expect_named(run.latest(), "model.safetensors", "step-00000003");
}
