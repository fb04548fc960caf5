//! The plain colour jitter alone, for profiling: `jitter_time PATH N`
use fnc_augment::Jitter;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let path = fnc_augment::simd::path_named(&a[1]).expect("path");
    let n: usize = a[2].parse().expect("n");
    let src: Vec<u8> = (0..224 * 224 * 3).map(|i| (i * 7919 % 251) as u8).collect();
    let j = Jitter {
        order: [2, 0, 1, 3],
        brightness: 1.1,
        contrast: 0.9,
        saturation: 1.2,
        hue: 0.1,
    };
    let (mut img, mut planes) = (src.clone(), Vec::new());
    let t = std::time::Instant::now();
    for _ in 0..n {
        img.copy_from_slice(&src);
        fnc_augment::jitter::jitter_with(path, &mut img, &j, false, &mut planes);
    }
    println!("{:.1} us", t.elapsed().as_secs_f64() * 1e6 / n as f64);
}
