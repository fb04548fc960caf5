//! `fnc-train plan`: the memory plan of a config for some devices, printed
//! as a table (or JSON with --json).

use anyhow::{bail, Context, Result};
use fnc_train::plan::{plan, Estimate, MemoryPlan, Target};

use crate::cli::TrainArgs;
use crate::resolve::resolve;

/// Bytes of a size as people write them: 80G, 141G (10^9), 24GiB (2^30),
/// 512M, 1.5T, or plain bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().ok()?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024f64.powi(2),
        "gib" => 1024f64.powi(3),
        "tib" => 1024f64.powi(4),
        _ => return None,
    };
    let bytes = n * scale;
    (1.0..1e18).contains(&bytes).then_some(bytes as u64)
}

/// Runs `fnc-train plan`.
pub fn run(args: &TrainArgs, nproc: Option<usize>, memory: Option<&str>) -> Result<()> {
    let cfg = resolve(args, false)?.cfg;
    let ranks = nproc.or(args.nproc_per_node).unwrap_or(1);
    if ranks == 0 || ranks > 1 << 16 {
        bail!("invalid option --nproc: {ranks} is not in 1..=65536");
    }
    let given = memory
        .map(|m| {
            parse_size(m).with_context(|| {
                format!("invalid option --device-memory: {m:?} is not a size such as 80G or 24GiB")
            })
        })
        .transpose()?;
    let device = cfg.device.as_str();
    let cuda = match device {
        "cpu" => false,
        "auto" => given.is_some() || tch::Cuda::is_available(),
        _ => true,
    };
    let device_memory = match (given, cuda) {
        (Some(m), _) => m,
        (None, false) => fnc_train::host_memory()
            .context("this machine's memory is unknown: give --device-memory")?,
        (None, true) => bail!(
            "invalid option --device-memory: give the memory of one GPU (e.g. 80G); the \
             plan cannot ask the device"
        ),
    };
    let target = Target {
        ranks,
        device_memory,
        cuda,
    };
    let p = plan(&cfg, &target)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        print!("{}", table(&p, &cfg));
    }
    Ok(())
}

fn gb(b: u64) -> String {
    format!("{:.2}", b as f64 / 1e9)
}

/// The plan as people read it.
fn table(p: &MemoryPlan, cfg: &fnc_train::TrainConfig) -> String {
    let mut s = format!(
        "{} at {} px (support views {} px), global batch {} over {} {} device(s) of {} GB: \
         {} images x {} views per device\n\
         kept for the backward per {} px view: {} MB (segment boundaries: {} MB)\n\n",
        cfg.arch.name(),
        cfg.image_size,
        cfg.support_side(),
        cfg.batch_size,
        p.ranks,
        if p.cuda { "CUDA" } else { "CPU" },
        gb(p.device_memory),
        p.images_per_rank,
        p.views,
        cfg.image_size,
        p.view_bytes / 1_000_000,
        p.view_boundary_bytes / 1_000_000,
    );
    s += "| setting | weights+opt | bank | batch | activations | loss | runtime | total GB | fits | extra compute |\n\
          |---|---:|---:|---:|---:|---:|---:|---:|---|---:|\n";
    for e in &p.estimates {
        s += &row(e);
    }
    s += "\n";
    match p.chosen.map(|i| &p.estimates[i]) {
        Some(e) => {
            s += &format!(
                "use: {} ({:.1} of {} GB per device, about +{:.0}% compute{})\n",
                e.setting.flags(),
                e.total as f64 / 1e9,
                gb(p.device_memory),
                100.0 * e.extra_compute,
                if e.exact {
                    "; the same step as without it"
                } else {
                    "; BatchNorm statistics per chunk of --micro-batch images (ghost BatchNorm)"
                }
            );
        }
        None => {
            s += "nothing fits: lower --batch-size or --image-size, or use more devices\n";
        }
    }
    s
}

fn row(e: &Estimate) -> String {
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | +{:.0}% |\n",
        e.setting.flags(),
        gb(e.weights),
        gb(e.bank),
        gb(e.inputs),
        gb(e.activations),
        gb(e.loss),
        gb(e.runtime),
        gb(e.total),
        if e.fits { "yes" } else { "no" },
        100.0 * e.extra_compute
    )
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(parse_size("80G"), Some(80_000_000_000));
        assert_eq!(parse_size("141GB"), Some(141_000_000_000));
        assert_eq!(parse_size("24GiB"), Some(24 << 30));
        assert_eq!(parse_size("1.5T"), Some(1_500_000_000_000));
        assert_eq!(parse_size("4096"), Some(4096));
        for bad in ["", "G", "-1G", "80X", "1e30", "0"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }
}
