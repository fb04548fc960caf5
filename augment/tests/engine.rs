//! The engine end to end: determinism across threads, resume, errors, shutdown.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use fnc_augment::{AugmentError, Batch, EngineConfig, Loader, OnError, Sampler};
use fnc_formats::{Dataset, SplitReader};

fn synth_shards(dir: &Path) -> Arc<SplitReader> {
    let out = fnc_tests::synth_shards(dir, 4, 12, 2, 40, 3);
    Arc::new(Dataset::open(&out).unwrap().split("train").unwrap())
}

fn config(threads: usize) -> EngineConfig {
    EngineConfig::builder()
        .batch_size(8)
        .support(2)
        .size(32)
        .support_size(16)
        .seed(5)
        .threads(threads)
        .build()
        .unwrap()
}

fn take(loader: &mut Loader, n: usize) -> Vec<Batch> {
    (0..n)
        .map(|_| loader.next_batch().unwrap().unwrap())
        .collect()
}

fn fingerprint(b: &Batch) -> (u64, Vec<u64>, Vec<u32>, Vec<Vec<u8>>) {
    (
        b.epoch,
        b.indices.clone(),
        b.labels.clone(),
        (0..b.views())
            .map(|v| b.view(v).unwrap().to_vec())
            .collect(),
    )
}

#[test]
fn same_seed_same_batches_for_any_thread_count() {
    let t = tempfile::tempdir().unwrap();
    let split = synth_shards(t.path());
    let mut runs = Vec::new();
    for threads in [1, 2, 3] {
        let mut l = Loader::start(
            split.clone(),
            config(threads),
            Sampler::new(split.len(), 5, 0, 1),
        )
        .unwrap();
        // 8 batches of 8 from 48 records: crosses into epoch 1.
        runs.push(take(&mut l, 8).iter().map(fingerprint).collect::<Vec<_>>());
    }
    assert_eq!(runs[0], runs[1]);
    assert_eq!(runs[0], runs[2]);
    let first = &runs[0][0];
    assert_eq!(first.3.len(), 4, "2 main + 2 support views");
    assert_eq!(first.3[0].len(), 8 * 32 * 32 * 3);
    assert_eq!(first.3[2].len(), 8 * 16 * 16 * 3);
    assert_ne!(first.3[0], first.3[1], "the two main views differ");
    assert_eq!(runs[0][6].0, 1, "the 7th batch is in epoch 1");
    // Labels are those of the records.
    for b in &runs[0] {
        for (i, l) in b.1.iter().zip(&b.2) {
            assert_eq!(split.get(*i).unwrap().label, *l);
        }
    }
    // Another seed gives other views.
    let cfg = EngineConfig::builder()
        .batch_size(8)
        .support(2)
        .size(32)
        .support_size(16)
        .seed(6)
        .build()
        .unwrap();
    let mut l = Loader::start(split.clone(), cfg, Sampler::new(split.len(), 5, 0, 1)).unwrap();
    let other = fingerprint(&take(&mut l, 1)[0]);
    assert_eq!(other.1, first.1, "same sampler seed, same records");
    assert_ne!(other.3, first.3, "other augmentation seed, other views");
}

#[test]
fn resume_mid_epoch_continues_exactly() {
    let t = tempfile::tempdir().unwrap();
    let split = synth_shards(t.path());
    let mut l =
        Loader::start(split.clone(), config(2), Sampler::new(split.len(), 5, 0, 1)).unwrap();
    let all: Vec<_> = take(&mut l, 5);
    let saved = all[1].sampler_after;
    assert_eq!(saved.position, 16);
    drop(l);
    let mut resumed = Loader::start(
        split.clone(),
        config(1),
        Sampler::restore(split.len(), 0, 1, saved),
    )
    .unwrap();
    let again = take(&mut resumed, 3);
    for (a, b) in all[2..].iter().zip(&again) {
        assert_eq!(fingerprint(a), fingerprint(b));
    }
}

#[test]
fn buffers_are_recycled_and_drop_stops_the_workers() {
    let t = tempfile::tempdir().unwrap();
    let split = synth_shards(t.path());
    let mut l =
        Loader::start(split.clone(), config(2), Sampler::new(split.len(), 5, 0, 1)).unwrap();
    for _ in 0..30 {
        let b = l.next_batch().unwrap().unwrap();
        assert_eq!(b.groups[0].data.len(), 8 * 2 * 32 * 32 * 3);
    }
    // Queue depth 4: a handful of buffer sets in circulation (queued, being
    // filled, held by the consumer), not one per batch. Counted by the engine,
    // as the allocator may hand a freed block straight back.
    let allocated = l.buffers_allocated();
    assert!(
        (1..=8).contains(&allocated),
        "{allocated} buffer sets allocated for 30 batches"
    );
    let t0 = std::time::Instant::now();
    drop(l);
    assert!(t0.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn a_batch_larger_than_the_epoch_names_the_flag() {
    let t = tempfile::tempdir().unwrap();
    let split = synth_shards(t.path());
    let cfg = EngineConfig::builder().batch_size(100).build().unwrap();
    let err = Loader::start(split.clone(), cfg, Sampler::new(split.len(), 0, 0, 1)).unwrap_err();
    assert!(err.to_string().contains("--batch-size"), "{err}");
    assert!(EngineConfig::builder()
        .support_size(4)
        .build()
        .unwrap_err()
        .to_string()
        .contains("--support-size"));
}

/// A dataset whose record 5 passes its checksum but is not a decodable JPEG.
fn dataset_with_a_bad_record(dir: &Path) -> Arc<SplitReader> {
    dataset_with_record_5(
        dir,
        fnc_formats::Encoding::Jpeg,
        (32, 32),
        b"\xff\xd8\xff\xe0 garbage that is no JPEG",
    )
}

/// 16 good 32 px JPEGs, but record 5 is `bytes` stored as `encoding` of `size`.
fn dataset_with_record_5(
    dir: &Path,
    encoding: fnc_formats::Encoding,
    size: (u32, u32),
    bad: &[u8],
) -> Arc<SplitReader> {
    use fnc_formats::{Encoding, RecordMeta, ShardWriter};
    let img = fnc_ingest::render(
        0,
        32,
        &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1),
    );
    let good = fnc_ingest::encode_jpeg(&img, 32, 32, 90).unwrap();
    let mut w = ShardWriter::new(dir.join("train-00000.fncs"));
    for i in 0..16u32 {
        let (bytes, encoding, (width, height)): (&[u8], _, _) = if i == 5 {
            (bad, encoding, size)
        } else {
            (&good, Encoding::Jpeg, (32, 32))
        };
        w.push(
            &RecordMeta {
                label: i % 2,
                width,
                height,
                encoding,
                name: "x",
            },
            bytes,
        );
    }
    fnc_tests::write_train_manifest(dir, w.finish().unwrap(), 16);
    Arc::new(Dataset::open(dir).unwrap().split("train").unwrap())
}

#[test]
fn a_bad_record_is_named_or_substituted() {
    let t = tempfile::tempdir().unwrap();
    let split = dataset_with_a_bad_record(t.path());
    let cfg = |on: OnError| {
        EngineConfig::builder()
            .batch_size(16)
            .support(1)
            .size(16)
            .support_size(16)
            .on_error(on)
            .build()
            .unwrap()
    };
    let mut l =
        Loader::start(split.clone(), cfg(OnError::Fail), Sampler::new(16, 0, 0, 1)).unwrap();
    match l.next_batch().unwrap() {
        Err(AugmentError::Record { shard, record, .. }) => {
            assert!(shard.ends_with("train-00000.fncs"));
            assert_eq!(record, 5);
        }
        other => panic!("expected a record error, got {other:?}"),
    }
    assert!(l.next_batch().is_none(), "the engine stops after an error");

    let mut l = Loader::start(
        split.clone(),
        cfg(OnError::Substitute),
        Sampler::new(16, 0, 0, 1),
    )
    .unwrap();
    for _ in 0..3 {
        let b = l.next_batch().unwrap().unwrap();
        assert_eq!(b.bad.len(), 1);
        match &b.bad[0] {
            AugmentError::Record { record, .. } => assert_eq!(*record, 5),
            other => panic!("the substituted record is named: {other:?}"),
        }
        assert!(!b.indices.contains(&5));
        assert!(b.indices.contains(&6));
    }
}

/// A record without pixels (width or height 0) is an error naming the shard
/// and the record, in the engine, in the evaluation crops and in one view.
#[test]
fn a_record_without_pixels_is_named_not_a_panic() {
    for size in [(0, 32), (32, 0), (0, 0)] {
        let t = tempfile::tempdir().unwrap();
        let split = dataset_with_record_5(t.path(), fnc_formats::Encoding::Raw, size, &[]);
        let cfg = EngineConfig::builder()
            .batch_size(16)
            .support(1)
            .size(16)
            .support_size(16)
            .build()
            .unwrap();
        let mut l = Loader::start(split.clone(), cfg.clone(), Sampler::new(16, 0, 0, 1)).unwrap();
        let named = |e: &AugmentError| {
            let msg = e.to_string();
            assert!(
                msg.contains("train-00000.fncs")
                    && msg.contains("record 5")
                    && msg.contains("no pixels"),
                "{size:?}: {msg}"
            );
        };
        match l.next_batch().unwrap() {
            Err(e) => named(&e),
            Ok(_) => panic!("{size:?}: a record without pixels was accepted"),
        }
        let mut out = vec![0u8; 16 * 16 * 3];
        named(&fnc_augment::centre_crops(&split, &[5], 16, 0.875, &mut out).unwrap_err());
        let mut slots: Vec<&mut [u8]> = vec![&mut out];
        named(&fnc_augment::make_views(&split, &cfg, 0, 5, &mut slots).unwrap_err());
    }
}

#[test]
fn centre_crops_of_no_pixels_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let split = synth_shards(t.path());
    let mut none: Vec<u8> = Vec::new();
    let err = fnc_augment::centre_crops(&split, &[0, 1], 0, 0.875, &mut none).unwrap_err();
    assert!(matches!(err, AugmentError::Config { .. }), "{err}");
}

/// A view whose crop box is empty or leaves the image is an error, not a panic,
/// on both op semantics.
#[test]
fn an_empty_or_outside_crop_is_an_error() {
    use fnc_augment::{draw_view, ops, AugmentImpl, CropBox, Recipe, ViewRng};
    let src = vec![100u8; 20 * 10 * 3];
    for implementation in [AugmentImpl::Torchvision, AugmentImpl::Reference] {
        let recipe = Recipe {
            implementation,
            ..Recipe::default()
        };
        let mut d = draw_view(&mut ViewRng::new(0, 0, 0, 0), 20, 10, &recipe);
        for crop in [
            CropBox {
                x: 0,
                y: 0,
                w: 0,
                h: 5,
            },
            CropBox {
                x: 3,
                y: 2,
                w: 7,
                h: 0,
            },
            CropBox {
                x: 15,
                y: 0,
                w: 10,
                h: 5,
            },
            CropBox {
                x: 0,
                y: 8,
                w: 5,
                h: 5,
            },
        ] {
            d.crop = crop;
            let mut out = vec![0u8; 8 * 8 * 3];
            let r = ops::apply_view(&src, 20, 10, &d, 8, &mut out, &mut ops::Scratch::default());
            assert!(r.is_err(), "{implementation:?} {crop:?} was accepted");
        }
        d.crop = CropBox {
            x: 0,
            y: 0,
            w: 20,
            h: 10,
        };
        let mut out = vec![0u8; 8 * 8 * 3];
        ops::apply_view(&src, 20, 10, &d, 8, &mut out, &mut ops::Scratch::default()).unwrap();
    }
}

#[test]
fn every_storage_encoding_decodes_in_the_engine() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    let opts = fnc_ingest::SynthOptions {
        classes: 2,
        per_class: 8,
        val_per_class: 1,
        size: 40,
        seed: 1,
    };
    fnc_ingest::synth(&src, &opts).unwrap();
    let mut firsts = Vec::new();
    for enc in [
        fnc_ingest::EncodingChoice::Keep,
        fnc_ingest::EncodingChoice::Raw,
        fnc_ingest::EncodingChoice::WebP,
    ] {
        let out = t.path().join(enc.name());
        let mut o = fnc_ingest::IngestOptions::new(&src, &out);
        o.policy.encoding = enc;
        o.policy.quality = 95;
        fnc_ingest::ingest(&o, &fnc_ingest::NoProgress).unwrap();
        let split = Arc::new(Dataset::open(&out).unwrap().split("train").unwrap());
        let mut l =
            Loader::start(split.clone(), config(1), Sampler::new(split.len(), 5, 0, 1)).unwrap();
        let b = l.next_batch().unwrap().unwrap();
        firsts.push(b.view(0).unwrap().to_vec());
    }
    // Same records, same draws: the lossless and lossy storages give nearly the
    // same pixels (JPEG q92 source, so raw == keep exactly).
    assert_eq!(firsts[0], firsts[1], "raw stores the decoded JPEG exactly");
    let mean_diff = firsts[0]
        .iter()
        .zip(&firsts[2])
        .map(|(a, b)| a.abs_diff(*b) as f64)
        .sum::<f64>()
        / firsts[0].len() as f64;
    assert!(
        mean_diff < 6.0,
        "WebP views differ by {mean_diff} on average"
    );
}

#[test]
fn centre_crops_are_the_unaugmented_centre_of_each_image() {
    let t = tempfile::tempdir().unwrap();
    let split = synth_shards(t.path());
    let idx: Vec<u64> = (0..6).collect();
    // Synth images are 40 px squares: crop 1.0 at 40 px is the decoded image.
    let mut out = vec![0u8; idx.len() * 40 * 40 * 3];
    let labels = fnc_augment::centre_crops(&split, &idx, 40, 1.0, &mut out).unwrap();
    let mut buf = Vec::new();
    for (k, &i) in idx.iter().enumerate() {
        let rec = split.get(i).unwrap();
        assert_eq!(labels[k], rec.label);
        let (w, h) = fnc_augment::decode_into(&rec, &mut buf).unwrap();
        assert_eq!((w, h), (40, 40));
        assert_eq!(&out[k * 4800..(k + 1) * 4800], &buf[..4800], "image {i}");
    }
    // Crop 0.5 at 20 px: the centre 20 x 20 pixels, copied.
    let mut half = vec![0u8; idx.len() * 20 * 20 * 3];
    fnc_augment::centre_crops(&split, &idx, 20, 0.5, &mut half).unwrap();
    let rec = split.get(0).unwrap();
    fnc_augment::decode_into(&rec, &mut buf).unwrap();
    for y in 0..20 {
        let src = &buf[((y + 10) * 40 + 10) * 3..((y + 10) * 40 + 30) * 3];
        assert_eq!(&half[y * 60..(y + 1) * 60], src, "row {y}");
    }
    // A buffer of the wrong size is an error, not a panic.
    let mut short = vec![0u8; 10];
    assert!(matches!(
        fnc_augment::centre_crops(&split, &idx, 20, 0.5, &mut short),
        Err(AugmentError::Config { .. })
    ));
}

#[test]
fn views_of_one_side_come_in_one_group() {
    let t = tempfile::tempdir().unwrap();
    let split = synth_shards(t.path());
    let group_shapes = |support_size: u32| -> Vec<(usize, usize, u32)> {
        let cfg = EngineConfig::builder()
            .batch_size(4)
            .support(3)
            .size(16)
            .support_size(support_size)
            .build()
            .unwrap();
        let mut l = Loader::start(split.clone(), cfg, Sampler::new(split.len(), 0, 0, 1)).unwrap();
        let b = l.next_batch().unwrap().unwrap();
        for g in &b.groups {
            assert_eq!(g.data.len(), g.views * 4 * g.image_len());
        }
        b.groups
            .iter()
            .map(|g| (g.first, g.views, g.side))
            .collect()
    };
    assert_eq!(group_shapes(16), [(0, 5, 16)]);
    assert_eq!(group_shapes(8), [(0, 2, 16), (2, 3, 8)]);
}

#[test]
fn the_reference_recipe_is_deterministic_across_threads_and_its_own() {
    use fnc_augment::{AugmentImpl, RandAugment, Recipe};
    let t = tempfile::tempdir().unwrap();
    let split = synth_shards(t.path());
    let cfg = |threads: usize, recipe: Recipe| {
        EngineConfig::builder()
            .batch_size(8)
            .support(2)
            .size(32)
            .support_size(32)
            .seed(5)
            .threads(threads)
            .recipe(recipe)
            .build()
            .unwrap()
    };
    let reference = Recipe {
        implementation: AugmentImpl::Reference,
        randaugment: Some(RandAugment::REFERENCE),
        ..Recipe::default()
    };
    let run = |threads: usize, recipe: Recipe| {
        let mut l = Loader::start(
            split.clone(),
            cfg(threads, recipe),
            Sampler::new(split.len(), 5, 0, 1),
        )
        .unwrap();
        take(&mut l, 3).iter().map(fingerprint).collect::<Vec<_>>()
    };
    let one = run(1, reference);
    assert_eq!(
        one,
        run(3, reference),
        "same views whatever the thread count"
    );
    let plain = run(1, Recipe::default());
    assert_eq!(one[0].1, plain[0].1, "same records");
    assert_ne!(one[0].3, plain[0].3, "other ops, other views");
    // RandAugment alone changes views but not the draws before it: the
    // torchvision recipe with RandAugment keeps every crop of the plain one.
    let with_ra = Recipe {
        randaugment: Some(RandAugment::REFERENCE),
        ..Recipe::default()
    };
    let mut rng_a = fnc_augment::ViewRng::new(5, 0, 3, 1);
    let mut rng_b = rng_a.clone();
    let a = fnc_augment::draw_view(&mut rng_a, 40, 30, &Recipe::default());
    let b = fnc_augment::draw_view(&mut rng_b, 40, 30, &with_ra);
    assert_eq!(
        (a.crop, a.flip, a.jitter, a.grey),
        (b.crop, b.flip, b.jitter, b.grey)
    );
    assert_eq!(b.randaugment.iter().count(), 2);
    assert_ne!(run(1, with_ra)[0].3, plain[0].3);
}

#[test]
fn a_bad_randaugment_setting_names_the_flag() {
    use fnc_augment::{RandAugment, Recipe};
    let bad = Recipe {
        randaugment: Some(RandAugment {
            layers: 2,
            magnitude: 12.0,
        }),
        ..Recipe::default()
    };
    let err = EngineConfig::builder().recipe(bad).build().unwrap_err();
    assert!(err.to_string().contains("--randaugment"), "{err}");
}

#[test]
fn a_blur_sigma_out_of_range_is_refused() {
    use fnc_augment::Recipe;
    for sigma in [
        (-0.1, 2.0),
        (2.0, 1.0),
        (0.1, 10.5),
        (0.1, f64::NAN),
        (f64::NAN, 1.0),
    ] {
        let bad = Recipe {
            blur_sigma: sigma,
            ..Recipe::default()
        };
        let err = EngineConfig::builder().recipe(bad).build().unwrap_err();
        assert!(err.to_string().contains("blur sigma"), "{sigma:?}: {err}");
    }
    for sigma in [(0.0, 0.0), (0.1, 2.0), (10.0, 10.0)] {
        let good = Recipe {
            blur_sigma: sigma,
            ..Recipe::default()
        };
        assert!(
            EngineConfig::builder().recipe(good).build().is_ok(),
            "{sigma:?}"
        );
    }
}

/// The reference evaluates images of 32 px and below uncropped: the whole
/// image resized, its aspect not kept. A 64 x 32 image whose left quarter is
/// red: the whole view keeps the red, the centre square has none.
#[test]
fn whole_image_views_keep_what_a_centre_crop_cuts() {
    let t = tempfile::tempdir().unwrap();
    let (w, h) = (64u32, 32u32);
    let mut px = Vec::new();
    for _y in 0..h {
        for x in 0..w {
            px.extend(if x < 16 {
                [220u8, 20, 20]
            } else {
                [128, 128, 128]
            });
        }
    }
    let jpg = fnc_ingest::encode_jpeg(&px, w, h, 95).unwrap();
    for class in ["a", "b"] {
        std::fs::create_dir_all(t.path().join("src").join(class)).unwrap();
        std::fs::write(t.path().join("src").join(class).join("x.jpg"), &jpg).unwrap();
    }
    let out = t.path().join("out");
    fnc_ingest::ingest(
        &fnc_ingest::IngestOptions::new(t.path().join("src"), &out),
        &fnc_ingest::NoProgress,
    )
    .unwrap();
    let split = Dataset::open(&out).unwrap().split("train").unwrap();
    let side = 16usize;
    let red_columns = |view: fnc_augment::EvalView| -> usize {
        let mut o = vec![0u8; side * side * 3];
        fnc_augment::eval_views(&split, &[0], side as u32, view, &mut o).unwrap();
        (0..side)
            .filter(|&x| {
                let p = &o[(side / 2 * side + x) * 3..][..3];
                p[0] > 170 && p[1] < 80
            })
            .count()
    };
    // A quarter of 16 columns, give or take the resampling at the edge.
    let whole = red_columns(fnc_augment::EvalView::Whole);
    assert!((3..=5).contains(&whole), "{whole} red columns");
    assert_eq!(red_columns(fnc_augment::EvalView::Centre(1.0)), 0);
}
