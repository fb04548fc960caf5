//! The baseline decoder against libjpeg-turbo's own decodes (the fixtures of
//! `codec/tests/fixtures/jpeg`, written by Pillow), and against damaged files.

use super::*;
use crate::cpu::available_paths;

fn fixture_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jpeg")
}

/// (name, whether the fast decoder takes it, the JPEG, libjpeg-turbo's RGB
/// decode with its width and height).
type Fixture = (String, bool, Vec<u8>, Vec<u8>, (u32, u32));

fn fixtures() -> Vec<Fixture> {
    let dir = fixture_dir();
    let cases = std::fs::read_to_string(dir.join("cases.txt")).expect("cases.txt");
    let mut out = Vec::new();
    for line in cases.lines().filter(|l| !l.trim().is_empty()) {
        let (name, kind) = line.split_once(' ').expect("name kind");
        let jpg = std::fs::read(dir.join(format!("{name}.jpg"))).expect("jpg");
        let png = image::open(dir.join(format!("{name}.png")))
            .expect("png")
            .to_rgb8();
        let wh = png.dimensions();
        out.push((name.to_string(), kind == "fast", jpg, png.into_raw(), wh));
    }
    assert!(out.len() >= 18, "{} fixtures", out.len());
    out
}

fn fast(path: CpuPath, data: &[u8]) -> Option<((u32, u32), Vec<u8>)> {
    let mut out = Vec::new();
    let mut scratch = JpegScratch::default();
    let wh = decode_baseline(path, data, &mut out, &mut scratch)?;
    Some((wh, out))
}

#[test]
fn baseline_files_decode_to_libjpeg_turbo_s_bytes_on_every_path() {
    for (name, takes, jpg, want, wh) in fixtures() {
        for path in available_paths() {
            match fast(path, &jpg) {
                Some((got_wh, got)) => {
                    assert!(takes, "{name}: should be left to the general decoder");
                    assert_eq!(got_wh, wh, "{name} {path:?}");
                    let diff = got.iter().zip(&want).filter(|(a, b)| a != b).count();
                    assert!(got == want, "{name} {path:?}: {diff} bytes differ");
                }
                None => assert!(!takes, "{name} {path:?}: the fast decoder declined it"),
            }
        }
    }
}

#[test]
fn the_files_it_declines_still_decode_through_the_general_decoder() {
    for (name, takes, jpg, want, wh) in fixtures() {
        let mut buf = Vec::new();
        let got_wh = crate::decode_jpeg(&jpg, &mut buf).expect(&name);
        assert_eq!(got_wh, wh, "{name}");
        // zune-jpeg's inverse DCT and CMYK conversion differ from libjpeg's by
        // a few levels; the fast ones are exact.
        let mean = buf
            .iter()
            .zip(&want)
            .map(|(&a, &b)| a.abs_diff(b) as f64)
            .sum::<f64>()
            / want.len() as f64;
        let limit = if takes { 0.0 } else { 1.0 };
        assert!(mean <= limit, "{name}: mean difference {mean}");
    }
}

/// A restart-coded fixture with its markers' offsets.
fn restart_fixture() -> (Vec<u8>, Vec<usize>) {
    let jpg = std::fs::read(fixture_dir().join("q92_420_restart_every_block_71x53.jpg"))
        .expect("restart fixture");
    let sos = jpg.windows(2).position(|w| w == [0xFF, 0xDA]).expect("SOS");
    let rst: Vec<usize> = (sos..jpg.len() - 1)
        .filter(|&i| jpg[i] == 0xFF && (0xD0..=0xD7).contains(&jpg[i + 1]))
        .collect();
    assert!(rst.len() > 16, "{} restart markers", rst.len());
    (jpg, rst)
}

#[test]
fn a_restart_marker_out_of_sequence_or_missing_is_declined() {
    let (jpg, rst) = restart_fixture();
    let path = crate::cpu::best_path();
    assert!(fast(path, &jpg).is_some());
    // RST3 where RST2 should be.
    let mut wrong = jpg.clone();
    wrong[rst[2] + 1] = 0xD3;
    assert!(fast(path, &wrong).is_none());
    // A marker dropped altogether.
    let mut dropped = jpg.clone();
    dropped.drain(rst[5]..rst[5] + 2);
    assert!(fast(path, &dropped).is_none());
}

#[test]
fn truncated_data_is_declined_not_padded_with_zeros() {
    for (name, takes, jpg, _, _) in fixtures() {
        if !takes || jpg.len() < 400 {
            continue;
        }
        let path = crate::cpu::best_path();
        // Without its end-of-image marker the scan is whole: still decoded.
        assert!(fast(path, &jpg[..jpg.len() - 2]).is_some(), "{name}");
        for cut in [jpg.len() - 40, jpg.len() * 3 / 4] {
            assert!(fast(path, &jpg[..cut]).is_none(), "{name} cut at {cut}");
        }
    }
}

#[test]
fn damaged_files_never_panic_and_decode_to_whole_images_or_none() {
    let mut seed = 0x1234_5678_9ABC_DEF0u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let files: Vec<Vec<u8>> = fixtures()
        .into_iter()
        .filter(|f| f.1)
        .map(|f| f.2)
        .collect();
    let mut declined = 0;
    let trials = 3000;
    for trial in 0..trials {
        let mut data = files[trial % files.len()].clone();
        match next() % 4 {
            // A few random bytes anywhere (headers included).
            0 | 1 => {
                for _ in 0..1 + next() % 4 {
                    let i = (next() as usize) % data.len();
                    data[i] = next() as u8;
                }
            }
            // One flipped bit in the scan.
            2 => {
                let i = data.len() / 2 + (next() as usize) % (data.len() / 2);
                data[i] ^= 1 << (next() % 8);
            }
            // A cut anywhere.
            _ => data.truncate((next() as usize) % data.len()),
        }
        for (i, path) in available_paths().into_iter().enumerate() {
            match fast(path, &data) {
                Some(((w, h), out)) => assert_eq!(out.len(), w as usize * h as usize * 3),
                None if i == 0 => declined += 1,
                None => {}
            }
        }
    }
    // Most damage is seen; the rest decodes to an image of the stated size.
    assert!(declined > trials / 4, "{declined} declined of {trials}");
}

/// A 4:4:4 `side` x `side` baseline header whose only Huffman codes are 16
/// zero bits (DC: a 15-bit difference; AC: a 15-bit coefficient), so that
/// zero bytes decode as ~250 bytes a block, then `body`.
fn zero_coded(side: u16, body: &[u8]) -> Vec<u8> {
    let mut d = vec![0xFF, 0xD8];
    d.extend([0xFF, 0xDB, 0, 67, 0x00]);
    d.extend([1u8; 64]);
    let [hi, lo] = side.to_be_bytes();
    d.extend([0xFF, 0xC0, 0, 17, 8, hi, lo, hi, lo, 3]);
    d.extend([1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0]);
    for (class, symbol) in [(0x00u8, 15u8), (0x10, 0x0F)] {
        d.extend([0xFF, 0xC4, 0, 20, class]);
        d.extend([0u8; 15]);
        d.extend([1, symbol]);
    }
    d.extend([0xFF, 0xDA, 0, 12, 3, 1, 0x00, 2, 0x00, 3, 0x00, 0, 63, 0]);
    d.extend(body);
    d
}

#[test]
fn a_large_frame_with_too_little_data_is_declined_after_its_first_row() {
    // 4096 x 4096 at 4:4:4 is 786,432 blocks: enough bytes follow to pass the
    // size check, but the scan runs out (or meets the end marker) within the
    // first row of MCUs, where the decoder stops (the rest from zeros would
    // take minutes in a test build).
    let path = crate::cpu::best_path();
    let mut after_end = vec![0xFF, 0xD9];
    after_end.extend(vec![0u8; 120_000]);
    let mut before_end = vec![0u8; 120_000];
    before_end.extend([0xFF, 0xD9]);
    for body in [after_end, before_end] {
        assert!(fast(path, &zero_coded(4096, &body)).is_none());
    }
    // The same stream, small enough for its data (12 blocks): decoded.
    let small = zero_coded(16, &vec![0u8; 12 * 250]);
    assert!(fast(path, &small).is_some());
}

#[test]
fn a_huge_frame_is_refused_before_its_memory_is_taken() {
    // 65535 x 65535 (12.9 GB of RGB8) in a few hundred bytes: past the baseline
    // decoder's size, and past the general decoder's limit.
    let file = zero_coded(65535, &[0u8; 200]);
    let mut buf = Vec::new();
    let err = crate::decode_jpeg(&file, &mut buf).expect_err("refused");
    assert!(
        err.contains("65535x65535") && err.contains("limit"),
        "{err}"
    );
    assert!(buf.capacity() < 1 << 20, "{} bytes taken", buf.capacity());
}
