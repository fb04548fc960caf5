//! The embedded default dataset: generated photos-in-spirit with real class
//! structure, written in the ILSVRC layout so every command runs with no download.
//!
//! A class is a shape family (disk, square, triangle, ring, cross, star, crescent,
//! bar) crossed with a fill texture (solid, stripes, dots) and a base hue. Within a
//! class the saturation, brightness, size, rotation and position vary, and half of
//! the objects take a random hue instead of the class's own; every
//! image has a gradient background, small clutter shapes of random families and
//! colours, and sensor-like noise. Telling classes apart therefore needs shape and
//! texture, not one colour statistic, while being learnable from augmented views.

use std::f32::consts::PI;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::convert::encode_jpeg;
use crate::error::IngestError;

/// Options of `fnc-ingest synth`.
#[derive(Debug, Clone, Copy)]
pub struct SynthOptions {
    /// Number of classes (default 10).
    pub classes: u32,
    /// Training images per class (default 200).
    pub per_class: u32,
    /// Validation images per class (default 50).
    pub val_per_class: u32,
    /// Side of the square images in pixels (default 96).
    pub size: u32,
    /// Seed (default 0): the same seed writes the same bytes.
    pub seed: u64,
}

impl SynthOptions {
    /// The most classes.
    pub const MAX_CLASSES: u32 = 10_000;
    /// The most images per class and split.
    pub const MAX_PER_CLASS: u32 = 100_000;
    /// The most images in all (classes x (train + val per class)).
    pub const MAX_IMAGES: u64 = 10_000_000;

    /// The one judge of the options, each error naming the flag that sets
    /// it; [`synth`] calls it before writing anything.
    pub fn check(&self) -> Result<(), IngestError> {
        let bad = |flag: &'static str, detail: String| Err(IngestError::BadOption { flag, detail });
        if !(1..=Self::MAX_CLASSES).contains(&self.classes) {
            return bad(
                "--classes",
                format!("{} is not in 1..={}", self.classes, Self::MAX_CLASSES),
            );
        }
        if !(1..=Self::MAX_PER_CLASS).contains(&self.per_class) {
            return bad(
                "--per-class",
                format!("{} is not in 1..={}", self.per_class, Self::MAX_PER_CLASS),
            );
        }
        if self.val_per_class > Self::MAX_PER_CLASS {
            return bad(
                "--val-per-class",
                format!(
                    "{} is not in 0..={}",
                    self.val_per_class,
                    Self::MAX_PER_CLASS
                ),
            );
        }
        let images =
            u64::from(self.classes) * (u64::from(self.per_class) + u64::from(self.val_per_class));
        if images > Self::MAX_IMAGES {
            return bad(
                "--classes",
                format!(
                    "{} classes x ({} --per-class + {} --val-per-class) = {images} images, more than {}",
                    self.classes,
                    self.per_class,
                    self.val_per_class,
                    Self::MAX_IMAGES
                ),
            );
        }
        if !(16..=4096).contains(&self.size) {
            return bad("--size", format!("{} is not in 16..=4096", self.size));
        }
        Ok(())
    }
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            classes: 10,
            per_class: 200,
            val_per_class: 50,
            size: 96,
            seed: 0,
        }
    }
}

const SHAPES: [&str; 8] = [
    "disk", "square", "triangle", "ring", "cross", "star", "crescent", "bar",
];
const TEXTURES: [&str; 3] = ["solid", "striped", "dotted"];
const HUE_NAMES: [&str; 6] = ["red", "yellow", "green", "cyan", "blue", "magenta"];

/// The folder name (an ImageNet-style id) of class `c`.
pub fn synth_wnid(c: u32) -> String {
    format!("n{:08}", 90_000_000 + c)
}

#[derive(Debug, Clone, Copy)]
struct ClassStyle {
    shape: usize,
    texture: usize,
    hue: f32,
}

fn class_style(c: u32) -> ClassStyle {
    ClassStyle {
        shape: c as usize % SHAPES.len(),
        texture: (c as usize / SHAPES.len()) % TEXTURES.len(),
        // Golden-ratio steps spread base hues evenly over any number of classes.
        hue: (c as f32 * 0.618_034 + 0.05).fract(),
    }
}

/// Human-readable class name, e.g. "striped red star".
pub fn synth_class_name(c: u32) -> String {
    let s = class_style(c);
    let hue_name = HUE_NAMES[((s.hue * 6.0 + 0.5) as usize) % 6];
    let texture = if s.texture == 0 {
        String::new()
    } else {
        format!("{} ", TEXTURES[s.texture])
    };
    format!("{texture}{hue_name} {}", SHAPES[s.shape])
}

fn hsv_to_rgb(h: f32, s: f32, v: f32) -> [f32; 3] {
    let h = h.rem_euclid(1.0) * 6.0;
    let i = h.floor();
    let f = h - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match i as u32 % 6 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// Inside test of shape family `shape` at local coordinates (unit radius).
fn inside(shape: usize, u: f32, v: f32) -> bool {
    let r2 = u * u + v * v;
    match shape {
        0 => r2 <= 1.0,
        1 => u.abs() <= 0.8 && v.abs() <= 0.8,
        2 => v >= -0.5 && v <= 1.0 - u.abs() * 1.732,
        3 => (0.3..=1.0).contains(&r2),
        4 => (u.abs() <= 0.3 && v.abs() <= 1.0) || (v.abs() <= 0.3 && u.abs() <= 1.0),
        5 => {
            let phi = v.atan2(u);
            let k = (((5.0 * phi).cos() + 1.0) * 0.5).powi(2);
            r2.sqrt() <= 0.4 + 0.6 * k
        }
        6 => r2 <= 1.0 && (u - 0.45) * (u - 0.45) + v * v > 0.5,
        _ => u * u + (v / 0.35) * (v / 0.35) <= 1.0,
    }
}

#[derive(Debug, Clone, Copy)]
struct Placed {
    shape: usize,
    texture: usize,
    cx: f32,
    cy: f32,
    radius: f32,
    cos: f32,
    sin: f32,
    color: [f32; 3],
    period: f32,
}

impl Placed {
    fn random(
        rng: &mut ChaCha8Rng,
        size: f32,
        shape: usize,
        texture: usize,
        color: [f32; 3],
        scale: (f32, f32),
    ) -> Placed {
        let radius = size * rng.gen_range(scale.0..scale.1);
        let margin = radius * 0.6;
        let angle = rng.gen_range(0.0..2.0 * PI);
        Placed {
            shape,
            texture,
            cx: rng.gen_range(margin..(size - margin).max(margin + 1.0)),
            cy: rng.gen_range(margin..(size - margin).max(margin + 1.0)),
            radius,
            cos: angle.cos(),
            sin: angle.sin(),
            color,
            period: rng.gen_range(0.35..0.5),
        }
    }

    /// Colour at pixel (x, y), if the shape covers it.
    fn color_at(&self, x: f32, y: f32) -> Option<[f32; 3]> {
        let (dx, dy) = ((x - self.cx) / self.radius, (y - self.cy) / self.radius);
        let u = dx * self.cos + dy * self.sin;
        let v = -dx * self.sin + dy * self.cos;
        if !inside(self.shape, u, v) {
            return None;
        }
        let dark = match self.texture {
            1 => ((u / self.period).floor() as i32).rem_euclid(2) == 1,
            2 => {
                let (fu, fv) = (
                    (u / self.period).rem_euclid(1.0) - 0.5,
                    (v / self.period).rem_euclid(1.0) - 0.5,
                );
                fu * fu + fv * fv < 0.09
            }
            _ => false,
        };
        let k = if dark { 0.35 } else { 1.0 };
        Some([self.color[0] * k, self.color[1] * k, self.color[2] * k])
    }
}

/// Renders one image of class `class` as packed RGB8.
pub fn render(class: u32, size: u32, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let s = size as f32;
    let style = class_style(class);
    let bg_a = hsv_to_rgb(rng.gen(), rng.gen_range(0.0..0.5), rng.gen_range(0.2..0.9));
    let bg_b = hsv_to_rgb(rng.gen(), rng.gen_range(0.0..0.5), rng.gen_range(0.2..0.9));
    let g_angle: f32 = rng.gen_range(0.0..2.0 * PI);
    let (gx, gy) = (g_angle.cos() / s, g_angle.sin() / s);
    let n_clutter = rng.gen_range(3..7);
    let clutter: Vec<Placed> = (0..n_clutter)
        .map(|_| {
            let c = hsv_to_rgb(rng.gen(), rng.gen_range(0.2..0.8), rng.gen_range(0.3..0.9));
            let shape = rng.gen_range(0..SHAPES.len());
            Placed::random(rng, s, shape, 0, c, (0.06, 0.14))
        })
        .collect();
    // Colour is only a weak cue: half of the objects take a random hue, so a
    // class must be told by shape and texture (what augmentations preserve).
    let hue = if rng.gen_bool(0.5) {
        style.hue + rng.gen_range(-0.08..0.08)
    } else {
        rng.gen()
    };
    let color = hsv_to_rgb(hue, rng.gen_range(0.55..1.0), rng.gen_range(0.55..1.0));
    let object = Placed::random(rng, s, style.shape, style.texture, color, (0.22, 0.42));
    let noise_sigma = rng.gen_range(0.02..0.06);
    let mut out = Vec::with_capacity((size * size * 3) as usize);
    for y in 0..size {
        for x in 0..size {
            let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
            let t = ((fx * gx + fy * gy) + 0.5).clamp(0.0, 1.0);
            let mut px = [0f32; 3];
            for ch in 0..3 {
                px[ch] = bg_a[ch] * (1.0 - t) + bg_b[ch] * t;
            }
            for c in &clutter {
                if let Some(col) = c.color_at(fx, fy) {
                    px = col;
                }
            }
            if let Some(col) = object.color_at(fx, fy) {
                px = col;
            }
            for v in px {
                // Sum of uniforms: cheap, roughly Gaussian noise.
                let n: f32 = (0..3).map(|_| rng.gen_range(-1.0f32..1.0)).sum::<f32>() * noise_sigma;
                out.push(((v + n).clamp(0.0, 1.0) * 255.0 + 0.5) as u8);
            }
        }
    }
    out
}

/// Summary of a synth run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SynthReport {
    pub dir: String,
    pub classes: u32,
    pub train: u64,
    pub val: u64,
}

fn image_seed(seed: u64, split: u64, class: u32, i: u32) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (split << 56) ^ ((class as u64) << 28) ^ i as u64
}

/// Writes the dataset under `dir` (`train/<wnid>/`, `val/<wnid>/`,
/// `LOC_synset_mapping.txt`).
pub fn synth(dir: &Path, opts: &SynthOptions) -> Result<SynthReport, IngestError> {
    opts.check()?;
    let mut mapping = String::new();
    for c in 0..opts.classes {
        mapping.push_str(&format!("{} {}\n", synth_wnid(c), synth_class_name(c)));
        for split in ["train", "val"] {
            let d = dir.join(split).join(synth_wnid(c));
            std::fs::create_dir_all(&d).map_err(|e| IngestError::io(&d, e))?;
        }
    }
    let map_path = dir.join("LOC_synset_mapping.txt");
    std::fs::write(&map_path, mapping).map_err(|e| IngestError::io(&map_path, e))?;
    let mut jobs: Vec<(u64, u32, u32)> = Vec::new();
    for c in 0..opts.classes {
        jobs.extend((0..opts.per_class).map(|i| (0, c, i)));
        jobs.extend((0..opts.val_per_class).map(|i| (1, c, i)));
    }
    jobs.par_iter().try_for_each(|&(split, c, i)| {
        let mut rng = ChaCha8Rng::seed_from_u64(image_seed(opts.seed, split, c, i));
        let px = render(c, opts.size, &mut rng);
        let jpeg =
            encode_jpeg(&px, opts.size, opts.size, 92).map_err(|detail| IngestError::Encode {
                path: dir.to_path_buf(),
                detail,
            })?;
        let wnid = synth_wnid(c);
        let path: PathBuf = if split == 0 {
            dir.join("train")
                .join(&wnid)
                .join(format!("{wnid}_{i}.JPEG"))
        } else {
            dir.join("val")
                .join(&wnid)
                .join(format!("{wnid}_val_{i}.JPEG"))
        };
        std::fs::write(&path, jpeg).map_err(|e| IngestError::io(&path, e))
    })?;
    Ok(SynthReport {
        dir: dir.display().to_string(),
        classes: opts.classes,
        train: opts.classes as u64 * opts.per_class as u64,
        val: opts.classes as u64 * opts.val_per_class as u64,
    })
}
