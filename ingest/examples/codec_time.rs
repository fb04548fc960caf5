//! Where ingest time goes per image: decode and encode, timed apart.
//! `cargo run --release -p fnc-ingest --example codec_time -- FILE.jpg`
use std::time::Instant;
fn main() {
    let path = std::env::args().nth(1).expect("usage: codec_time FILE.jpg");
    let bytes = std::fs::read(&path).expect("read");
    let n = 50;
    let t = Instant::now();
    let mut img = None;
    for _ in 0..n {
        img = Some(image::load_from_memory(&bytes).expect("decode").to_rgb8());
    }
    let dec = t.elapsed().as_secs_f64() / n as f64;
    let img = img.expect("decoded");
    let (w, h) = img.dimensions();
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(fnc_ingest::encode_jpeg(img.as_raw(), w, h, 90).expect("encode"));
    }
    let enc = t.elapsed().as_secs_f64() / n as f64;
    println!(
        "{w}x{h}: decode {:.2} ms, encode {:.2} ms",
        dec * 1e3,
        enc * 1e3
    );
}
