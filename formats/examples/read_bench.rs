//! Random-read throughput of the shard reader (page cache warm).
//!
//! `cargo run --release -p fnc-formats --example read_bench -- DATASET_DIR [SPLIT] [READS]`
//! prints JSON: GB/s for checksum-verified reads and for unverified (zero-copy) reads.

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .get(1)
        .ok_or("usage: read_bench DATASET_DIR [SPLIT] [READS]")?;
    let split_name = args.get(2).map(String::as_str).unwrap_or("train");
    let reads: u64 = args
        .get(3)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(200_000);
    let ds = fnc_formats::Dataset::open(dir)?;
    let split = ds.split(split_name)?;
    let n = split.len();
    // Warm the page cache and fix the index sequence (a 64-bit LCG: cheap, seeded).
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let idx: Vec<u64> = (0..reads)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % n
        })
        .collect();
    split.verify()?;
    let mut out = serde_json::Map::new();
    for verified in [true, false] {
        let t = Instant::now();
        let mut bytes = 0u64;
        let mut sink = 0u8;
        for &i in &idx {
            let r = if verified {
                split.get(i)?
            } else {
                split.get_unverified(i)?
            };
            bytes += r.data.len() as u64;
            // Touch every byte so an unverified read is not just pointer arithmetic.
            sink ^= r.data.iter().fold(0u8, |a, b| a ^ b);
        }
        let s = t.elapsed().as_secs_f64();
        std::hint::black_box(sink);
        let key = if verified {
            "verified"
        } else {
            "unverified_touch"
        };
        out.insert(
            key.into(),
            serde_json::json!({ "reads": reads, "gb_per_s": bytes as f64 / s / 1e9, "records_per_s": reads as f64 / s }),
        );
    }
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}
