//! The reference blur alone, for profiling: `blur_time PATH SIGMA N`
use fnc_augment::reference as r;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    fnc_augment::simd::use_path(fnc_augment::simd::path_named(&a[1]).expect("path"));
    let sigma: f32 = a[2].parse().expect("sigma");
    let n: usize = a[3].parse().expect("n");
    let mut img: Vec<f32> = (0..224 * 224 * 3)
        .map(|i| (i % 251) as f32 / 251.0)
        .collect();
    let mut tmp = Vec::new();
    let t = std::time::Instant::now();
    for _ in 0..n {
        r::blur(&mut img, (224, 224), r::blur_radius(224), sigma, &mut tmp);
    }
    println!("{:.1} us", t.elapsed().as_secs_f64() * 1e6 / n as f64);
}
