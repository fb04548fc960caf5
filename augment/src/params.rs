//! The augmentation recipe and what one view draws from it.

use serde::{Deserialize, Serialize};

use crate::randaugment::{self, RaOps, RandAugment};
use crate::rng::ViewRng;

/// Whose semantics the crop and colour operations follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AugmentImpl {
    /// torchvision's: `RandomResizedCrop` (10 log-uniform attempts, antialiased
    /// bilinear), contrast and saturation as blends with grey, reflect-padded blur.
    #[default]
    Torchvision,
    /// The reference TF code's (SimCLR v2 `data_util`, used by the official FNC
    /// code): `sample_distorted_bounding_box` crops (100 attempts, uniform aspect,
    /// at least 10% of the image), bicubic resize without antialiasing, contrast
    /// about each channel's mean, saturation in HSV, zero-padded blur, all in float.
    Reference,
}

impl std::str::FromStr for AugmentImpl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "torchvision" => Ok(AugmentImpl::Torchvision),
            "reference" => Ok(AugmentImpl::Reference),
            _ => Err(format!("{s:?} is not torchvision or reference")),
        }
    }
}

/// Strengths and probabilities of the recipe (SPEC §3). Defaults are SimCLR v2's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    /// Crop area fraction range (default 0.08..1.0).
    pub crop_scale: (f64, f64),
    /// Crop aspect ratio range, sampled log-uniformly (default 3/4..4/3).
    pub crop_ratio: (f64, f64),
    /// Horizontal flip probability (default 0.5).
    pub flip_p: f64,
    /// Colour distortion probability (default 0.8).
    pub jitter_p: f64,
    /// Colour distortion strength s: brightness, contrast and saturation factors in
    /// U(1-0.8s, 1+0.8s), hue shift in U(-0.2s, 0.2s) of a turn (default 1.0).
    pub jitter_strength: f64,
    /// Greyscale probability (default 0.2).
    pub grey_p: f64,
    /// Gaussian blur probability (default 0.5).
    pub blur_p: f64,
    /// Blur sigma range in pixels (default 0.1..2.0; at most
    /// [`Recipe::MAX_BLUR_SIGMA`]).
    pub blur_sigma: (f64, f64),
    /// Solarize probability (default 0: off).
    pub solarize_p: f64,
    /// Whose op semantics to follow (default torchvision).
    #[serde(default)]
    pub implementation: AugmentImpl,
    /// RandAugment after the colour distortion (default off; the reference's
    /// `use_randaugment` is 2 layers at magnitude 7). When on, greyscale moves
    /// after it, as in the reference.
    #[serde(default)]
    pub randaugment: Option<RandAugment>,
}

impl Recipe {
    /// The largest colour distortion strength s accepted (at 1.25 brightness,
    /// contrast and saturation already reach 0; larger only widens the range up).
    pub const MAX_JITTER_STRENGTH: f64 = 10.0;

    /// The largest blur sigma accepted, in pixels (SimCLR's is 2 at 224 px).
    /// The 16-bit blur stays within a level of a float one up to here (a
    /// kernel of at most 81 taps: its truncations cannot add up to half a
    /// level).
    pub const MAX_BLUR_SIGMA: f64 = 10.0;
}

impl Default for Recipe {
    fn default() -> Self {
        Recipe {
            crop_scale: (0.08, 1.0),
            crop_ratio: (3.0 / 4.0, 4.0 / 3.0),
            flip_p: 0.5,
            jitter_p: 0.8,
            jitter_strength: 1.0,
            grey_p: 0.2,
            blur_p: 0.5,
            blur_sigma: (0.1, 2.0),
            solarize_p: 0.0,
            implementation: AugmentImpl::Torchvision,
            randaugment: None,
        }
    }
}

/// A crop box in source pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CropBox {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

/// Colour distortion factors and the order they are applied in.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Jitter {
    /// Permutation of 0 = brightness, 1 = contrast, 2 = saturation, 3 = hue.
    pub order: [u8; 4],
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    /// Hue shift as a fraction of a full turn.
    pub hue: f32,
}

/// Everything one view drew: applying it is deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ViewDraw {
    pub crop: CropBox,
    pub flip: bool,
    pub jitter: Option<Jitter>,
    pub grey: bool,
    pub blur_sigma: Option<f32>,
    pub solarize: bool,
    /// The RandAugment operations, in order (empty when off).
    pub randaugment: RaOps,
    /// Whose op semantics apply.
    pub implementation: AugmentImpl,
}

/// Random resized crop box with torchvision's semantics: 10 attempts, then a
/// centre crop clamped to the ratio range.
pub fn draw_crop(
    rng: &mut ViewRng,
    w: u32,
    h: u32,
    scale: (f64, f64),
    ratio: (f64, f64),
) -> CropBox {
    let area = w as f64 * h as f64;
    let (lr0, lr1) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * rng.uniform(scale.0, scale.1);
        let aspect = rng.uniform(lr0, lr1).exp();
        let cw = (target * aspect).sqrt().round() as u32;
        let ch = (target / aspect).sqrt().round() as u32;
        if cw > 0 && ch > 0 && cw <= w && ch <= h {
            let y = rng.below((h - ch + 1) as u64) as u32;
            let x = rng.below((w - cw + 1) as u64) as u32;
            return CropBox { x, y, w: cw, h: ch };
        }
    }
    let in_ratio = w as f64 / h as f64;
    let (cw, ch) = if in_ratio < ratio.0 {
        (w, ((w as f64 / ratio.0).round() as u32).clamp(1, h))
    } else if in_ratio > ratio.1 {
        (((h as f64 * ratio.1).round() as u32).clamp(1, w), h)
    } else {
        (w, h)
    };
    CropBox {
        x: (w - cw) / 2,
        y: (h - ch) / 2,
        w: cw,
        h: ch,
    }
}

/// TF's `GenerateRandomCrop`: one attempt at a box of relative area in
/// `area`, aspect ratio (width / height) uniform in `ratio`, height uniform
/// between the heights of the smallest and largest areas, with TF's rounding
/// repairs.
fn tf_attempt(
    rng: &mut ViewRng,
    w: u32,
    h: u32,
    area: (f64, f64),
    ratio: (f64, f64),
) -> Option<CropBox> {
    // TF computes in f32 and rounds with lrintf (half to even).
    let (wf, hf) = (w as f32, h as f32);
    let min_area = area.0 as f32 * wf * hf;
    let max_area = area.1 as f32 * wf * hf;
    let aspect = ratio.0 as f32 + rng.unit() as f32 * (ratio.1 - ratio.0) as f32;
    let lrint = |v: f32| v.round_ties_even() as i64;
    let mut height = lrint((min_area / aspect).sqrt());
    let mut max_height = lrint((max_area / aspect).sqrt());
    if lrint(max_height as f32 * aspect) > w as i64 {
        max_height = ((wf + 0.5 - 1e-7) / aspect) as i64;
        if lrint(max_height as f32 * aspect) > w as i64 {
            max_height -= 1;
        }
    }
    max_height = max_height.min(h as i64);
    height = height.min(max_height);
    if height < max_height {
        height += rng.below((max_height - height + 1) as u64) as i64;
    }
    let mut width = lrint(height as f32 * aspect);
    let mut a = (width * height) as f32;
    if a < min_area {
        height += 1;
        width = lrint(height as f32 * aspect);
        a = (width * height) as f32;
    }
    if a > max_area {
        height -= 1;
        width = lrint(height as f32 * aspect);
        a = (width * height) as f32;
    }
    if a < min_area
        || a > max_area
        || width > w as i64
        || height > h as i64
        || width <= 0
        || height <= 0
    {
        return None;
    }
    let y = if height < h as i64 {
        rng.below(h as u64 - height as u64)
    } else {
        0
    };
    let x = if width < w as i64 {
        rng.below(w as u64 - width as u64)
    } else {
        0
    };
    Some(CropBox {
        x: x as u32,
        y: y as u32,
        w: width as u32,
        h: height as u32,
    })
}

/// Random crop box with TF's `sample_distorted_bounding_box` semantics as the
/// reference calls it: the whole image as the one object box,
/// `min_object_covered` 0.1 (so boxes under 10% of the image are refused
/// whatever `scale` says), up to 100 attempts, else the whole image.
pub fn draw_crop_tf(
    rng: &mut ViewRng,
    w: u32,
    h: u32,
    scale: (f64, f64),
    ratio: (f64, f64),
) -> CropBox {
    const MIN_OBJECT_COVERED: f32 = 0.1;
    for _ in 0..100 {
        if let Some(b) = tf_attempt(rng, w, h, scale, ratio) {
            // The covered fraction of the image box is the crop's own area
            // fraction, computed in f32 as TF does.
            let covered = (b.w as f32 * b.h as f32) / (w as f32 * h as f32);
            if covered >= MIN_OBJECT_COVERED {
                return b;
            }
        }
    }
    CropBox { x: 0, y: 0, w, h }
}

/// Draws every random choice of one view of a `w` x `h` source.
pub fn draw_view(rng: &mut ViewRng, w: u32, h: u32, r: &Recipe) -> ViewDraw {
    let crop = match r.implementation {
        AugmentImpl::Torchvision => draw_crop(rng, w, h, r.crop_scale, r.crop_ratio),
        AugmentImpl::Reference => draw_crop_tf(rng, w, h, r.crop_scale, r.crop_ratio),
    };
    let flip = rng.bernoulli(r.flip_p);
    let jitter = if rng.bernoulli(r.jitter_p) {
        let s = r.jitter_strength;
        let b = 0.8 * s;
        let factor = |rng: &mut ViewRng| rng.uniform((1.0 - b).max(0.0), 1.0 + b) as f32;
        let brightness = factor(rng);
        let contrast = factor(rng);
        let saturation = factor(rng);
        let hs = (0.2 * s).min(0.5);
        let hue = rng.uniform(-hs, hs) as f32;
        let mut order = [0u8, 1, 2, 3];
        for i in (1..4).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
        Some(Jitter {
            order,
            brightness,
            contrast,
            saturation,
            hue,
        })
    } else {
        None
    };
    let grey = rng.bernoulli(r.grey_p);
    let blur_sigma = if rng.bernoulli(r.blur_p) {
        Some(rng.uniform(r.blur_sigma.0, r.blur_sigma.1) as f32)
    } else {
        None
    };
    let solarize = rng.bernoulli(r.solarize_p);
    // Drawn last so that turning RandAugment on leaves every other draw as it was.
    let randaugment = match &r.randaugment {
        Some(ra) => randaugment::draw(rng, ra),
        None => RaOps::default(),
    };
    ViewDraw {
        crop,
        flip,
        jitter,
        grey,
        blur_sigma,
        solarize,
        randaugment,
        implementation: r.implementation,
    }
}
