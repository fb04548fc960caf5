//! Per-op cost of one 224 px view: `cargo run --release -p fnc-augment --example op_time -- FILE.jpg [scalar|avx2|avx512]`
use std::time::Instant;

use fnc_augment::ops::{self, Scratch};
use fnc_augment::{CropBox, Jitter};

fn time<F: FnMut()>(name: &str, n: u32, mut f: F) {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    println!(
        "{name:>10}: {:.3} ms",
        t.elapsed().as_secs_f64() * 1e3 / n as f64
    );
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: op_time FILE.jpg [CPU-PATH]");
    if let Some(name) = std::env::args().nth(2) {
        let cpu = fnc_augment::simd::path_named(&name).expect("no such CPU path here");
        fnc_augment::simd::use_path(cpu);
    }
    let data = std::fs::read(&path).expect("read");
    let rec = fnc_formats::Record {
        data: &data,
        label: 0,
        width: 0,
        height: 0,
        encoding: fnc_formats::Encoding::Jpeg,
        name: "",
    };
    let mut buf = Vec::new();
    let mut wh = (0, 0);
    time("decode", 50, || {
        wh = fnc_augment::decode_into(&rec, &mut buf).expect("decode")
    });
    let (w, h) = wh;
    let mut s = Scratch::default();
    let mut out = vec![0u8; 224 * 224 * 3];
    let crop = CropBox {
        x: w / 8,
        y: h / 8,
        w: w * 3 / 4,
        h: h * 3 / 4,
    };
    time("crop+resize", 200, || {
        ops::crop_resize(&buf, w, h, crop, 224, &mut out, &mut s).expect("resize")
    });
    time("flip", 200, || ops::flip_horizontal(&mut out, 224));
    let j = Jitter {
        order: [0, 1, 2, 3],
        brightness: 1.1,
        contrast: 0.9,
        saturation: 1.2,
        hue: 0.1,
    };
    time("jitter", 200, || ops::jitter(&mut out, &j, false, &mut s));
    time("grey", 200, || ops::grey_u8(&mut out));
    time("blur s=2", 200, || ops::blur(&mut out, 224, 2.0, &mut s));
    time("blur s=.5", 200, || ops::blur(&mut out, 224, 0.5, &mut s));
    reference_ops(&buf, w, crop, &j);
}

/// The reference path and RandAugment, per op.
fn reference_ops(buf: &[u8], w: u32, crop: CropBox, j: &Jitter) {
    use fnc_augment::randaugment::{self, RaOps, OP_NAMES};
    use fnc_augment::reference as r;
    let (mut f, mut rows) = (Vec::new(), Vec::new());
    time("ref resize", 100, || {
        r::crop_resize_bicubic(buf, w, crop, (224, 224), false, &mut f, &mut rows)
    });
    let base = f.clone();
    time("ref jitter", 100, || {
        f.copy_from_slice(&base);
        r::jitter(&mut f, j, &mut rows)
    });
    for (name, op) in [
        ("ref bright", 0u8),
        ("ref contr", 1),
        ("ref satur", 2),
        ("ref hue", 3),
    ] {
        let one = Jitter {
            order: [op; 4],
            ..*j
        };
        time(name, 100, || {
            f.copy_from_slice(&base);
            r::jitter(&mut f, &one, &mut rows)
        });
    }
    for path in fnc_augment::simd::available_paths() {
        let one = Jitter {
            order: [3; 4],
            ..*j
        };
        time(&format!("hue {}", path.name()), 50, || {
            f.copy_from_slice(&base);
            r::jitter_with(path, &mut f, &one, &mut rows)
        });
    }
    time("ref grey", 100, || r::grey(&mut f));
    time("ref blur", 100, || {
        r::blur(&mut f, (224, 224), r::blur_radius(224), 1.0, &mut rows)
    });
    let mut img = vec![0u8; 224 * 224 * 3];
    r::to_u8_tf(&base, &mut img);
    let mut tmp = Vec::new();
    for (k, name) in OP_NAMES.iter().enumerate() {
        let op = randaugment::op_at(k, 7.0, true, (0.5, 0.5));
        let src = img.clone();
        let mut v = src.clone();
        time(name, 100, || {
            v.copy_from_slice(&src);
            randaugment::apply(&RaOps::from_ops(&[op]), &mut v, 224, 224, &mut tmp)
        });
    }
}
