//! The reference bicubic resize alone, for profiling: `resize_time FILE.jpg PATH N`
use fnc_augment::reference as r;
use fnc_augment::CropBox;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let data = std::fs::read(&a[1]).expect("read");
    let mut buf = Vec::new();
    let (w, h) = fnc_codec::decode_jpeg(&data, &mut buf).expect("decode");
    fnc_augment::simd::use_path(fnc_augment::simd::path_named(&a[2]).expect("path"));
    let n: usize = a[3].parse().expect("n");
    let crop = CropBox {
        x: w / 8,
        y: h / 8,
        w: w * 3 / 4,
        h: h * 3 / 4,
    };
    let (mut f, mut rows) = (Vec::new(), Vec::new());
    let t = std::time::Instant::now();
    for _ in 0..n {
        r::crop_resize_bicubic(&buf, w, crop, (224, 224), false, &mut f, &mut rows);
    }
    println!("{:.1} us", t.elapsed().as_secs_f64() * 1e6 / n as f64);
}
