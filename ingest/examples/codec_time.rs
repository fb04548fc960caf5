//! Where ingest time goes per image: decode and encode, timed apart.
//! `cargo run --release -p fnc-ingest --example codec_time -- FILE.jpg`
use std::time::Instant;
fn main() {
    let path = std::env::args().nth(1).expect("usage: codec_time FILE.jpg");
    let bytes = std::fs::read(&path).expect("read");
    let n = 50;
    // Ingest's JPEG decoder (fnc-codec's, the engine's too).
    let t = Instant::now();
    let mut img = Vec::new();
    let mut wh = (0, 0);
    for _ in 0..n {
        wh = fnc_codec::decode_jpeg(&bytes, &mut img).expect("decode");
    }
    let dec = t.elapsed().as_secs_f64() / n as f64;
    let (w, h) = wh;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(fnc_ingest::encode_jpeg(&img, w, h, 90).expect("encode"));
    }
    let enc = t.elapsed().as_secs_f64() / n as f64;
    println!(
        "{w}x{h}: decode {:.2} ms, encode {:.2} ms",
        dec * 1e3,
        enc * 1e3
    );
}
