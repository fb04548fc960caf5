//! JPEG decode speed and output, for benchmarks and checks against other decoders.
//!
//! `decode_time TREE` times `decode_into` over every file of an ImageFolder tree
//! (three rounds, ms an image). `decode_time dump OUT FILE...` writes each file's
//! packed RGB8 decode to OUT, one after another (`bench/jpeg_vs_pillow.py`
//! compares them with Pillow's).
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

fn decode(data: &[u8], buf: &mut Vec<u8>) -> Result<(u32, u32)> {
    let rec = fnc_formats::Record {
        data,
        label: 0,
        width: 0,
        height: 0,
        encoding: fnc_formats::Encoding::Jpeg,
        name: "",
    };
    fnc_augment::decode_into(&rec, buf).map_err(anyhow::Error::msg)
}

fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            files.extend(files_under(&p)?);
        } else {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut buf = Vec::new();
    match args.first().map(String::as_str) {
        Some("dump") if args.len() >= 2 => {
            let mut all = Vec::new();
            for f in &args[2..] {
                let data = std::fs::read(f).with_context(|| format!("reading {f}"))?;
                decode(&data, &mut buf).with_context(|| format!("decoding {f}"))?;
                all.extend_from_slice(&buf);
            }
            std::fs::write(&args[1], all).with_context(|| format!("writing {}", args[1]))?;
        }
        Some(tree) => {
            let mut images = Vec::new();
            for f in files_under(Path::new(tree))? {
                images.push(std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?);
            }
            if images.is_empty() {
                bail!("no files under {tree}");
            }
            for round in 0..3 {
                let t = Instant::now();
                for d in &images {
                    decode(d, &mut buf)?;
                }
                let ms = t.elapsed().as_secs_f64() * 1e3 / images.len() as f64;
                println!(
                    "round {round}: {ms:.3} ms an image ({} images)",
                    images.len()
                );
            }
        }
        None => bail!("usage: decode_time TREE | decode_time dump OUT FILE..."),
    }
    Ok(())
}
