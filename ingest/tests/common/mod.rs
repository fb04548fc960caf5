#![allow(clippy::unwrap_used)]
#![allow(dead_code)]
//! Helpers shared by the CLI tests: run the real binary, build odd source trees.

use std::path::{Path, PathBuf};
use std::process::Output;

pub fn bin() -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin("fnc-ingest").expect("fnc-ingest is built")
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run fnc-ingest")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// Shared real photos, when this machine has them.
pub fn shared_dataset(name: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/datasets")
        .join(name);
    if dir.is_dir() {
        return Some(dir);
    }
    // CI has the shared data: there a missing set is a failure, not a skip.
    if std::env::var_os("FNC_REQUIRE_SHARED_DATA").is_some() {
        panic!(
            "{} is absent but FNC_REQUIRE_SHARED_DATA is set (.ci/run sets it)",
            dir.display()
        );
    }
    eprintln!(
        "SKIP: {} is absent (shared datasets exist on developer machines and CI only)",
        dir.display()
    );
    None
}

/// Bytes of every file in `dir` whose name ends with `.fncs`, sorted by name.
pub fn shard_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("read out dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".fncs"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("read shard"),
            )
        })
        .collect();
    v.sort();
    v
}

/// A photo-like RGB test pattern (smooth gradients plus detail).
pub fn pattern(w: u32, h: u32) -> Vec<u8> {
    let mut px = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            px.push((x * 255 / w.max(1)) as u8);
            px.push((y * 255 / h.max(1)) as u8);
            px.push((((x / 7) ^ (y / 5)) * 37 % 256) as u8);
        }
    }
    px
}

pub fn jpeg(
    px: &[u8],
    w: u32,
    h: u32,
    color: jpeg_encoder::ColorType,
    progressive: bool,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 90);
    enc.set_progressive(progressive);
    enc.encode(px, w as u16, h as u16, color)
        .expect("encode test JPEG");
    out
}

pub fn png(px: &[u8], w: u32, h: u32) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_raw(w, h, px.to_vec())
        .expect("buffer size")
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode PNG");
    out.into_inner()
}

/// Every path under `dir`, sorted.
pub fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}
