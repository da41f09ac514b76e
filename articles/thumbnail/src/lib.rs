//! Example article `thumbnail`: a PNG or JPEG in, a downscaled PNG out.
//!
//! Inputs: `image` (a PNG or JPEG, recognised by its first bytes) and `params`
//! (application/json, `{"max_width":256,"max_height":256}`; both fields optional,
//! default 256, each 1..=2048; `{}` takes the defaults). Output: `thumbnail`
//! (image/png): the image scaled down to fit the box with its aspect ratio kept (each
//! side at least 1 pixel); an image that already fits keeps its size. Area averaging
//! (every source pixel counts) so fine detail does not alias. 8 bits per channel; RGBA
//! when the source has alpha, RGB otherwise (grey stays grey).

use std::io::Cursor;

use bitwrk_guest::{Inputs, Outputs, RunError};
use image::{DynamicImage, ImageFormat, ImageReader};

/// Limits, matching article.toml; why each is what it is.
pub mod caps {
    /// Largest input file (matches `max_bytes` of input `image`): a large camera JPEG.
    pub const IMAGE_BYTES_MAX: usize = 32 << 20;
    /// Largest params JSON (matches `max_bytes` of input `params`).
    pub const PARAMS_BYTES_MAX: usize = 1024;
    /// Largest source side in pixels.
    pub const SOURCE_SIDE_MAX: u32 = 16_384;
    /// Most bytes the decoder may allocate: 50 Mpx of RGBA8 (a 8192x6144 photo); with
    /// the decoder's own buffers it stays below the 512 MiB memory limit.
    pub const DECODE_ALLOC_BYTES_MAX: u64 = 200 << 20;
    /// Largest thumbnail side: 2048x2048 RGBA is 16 MiB raw, under the 20 MiB output.
    pub const THUMB_SIDE_MAX: u32 = 2048;
    /// Box used when params leave a side out.
    pub const THUMB_SIDE_DEFAULT: u32 = 256;
}

/// The `params` input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    #[serde(default = "side_default")]
    pub max_width: u32,
    #[serde(default = "side_default")]
    pub max_height: u32,
}

fn side_default() -> u32 {
    caps::THUMB_SIDE_DEFAULT
}

impl Params {
    /// Parses and range-checks the params JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Params, RunError> {
        if bytes.len() > caps::PARAMS_BYTES_MAX {
            return Err(RunError::invalid_input(format!(
                "params of {} bytes is larger than {}",
                bytes.len(),
                caps::PARAMS_BYTES_MAX
            )));
        }
        let p: Params = serde_json::from_slice(bytes)
            .map_err(|e| RunError::invalid_input(format!("bad params: {e}")))?;
        for (what, v) in [("max_width", p.max_width), ("max_height", p.max_height)] {
            if v == 0 || v > caps::THUMB_SIDE_MAX {
                return Err(RunError::invalid_input(format!(
                    "params.{what} {v} must be 1..={}",
                    caps::THUMB_SIDE_MAX
                )));
            }
        }
        Ok(p)
    }
}

/// The largest size within `max_w` x `max_h` with the aspect ratio of `w` x `h`
/// (rounded to nearest, at least 1), or `(w, h)` if it already fits.
pub fn fit(w: u32, h: u32, max_w: u32, max_h: u32) -> (u32, u32) {
    if w <= max_w && h <= max_h {
        return (w, h);
    }
    let (w64, h64) = (u64::from(w), u64::from(h));
    // Compare the ratios max_w/w and max_h/h in integers: the smaller one binds.
    if u64::from(max_w) * h64 <= u64::from(max_h) * w64 {
        let nh = (h64 * u64::from(max_w) + w64 / 2) / w64;
        (max_w, nh.clamp(1, u64::from(max_h)) as u32)
    } else {
        let nw = (w64 * u64::from(max_h) + h64 / 2) / h64;
        (nw.clamp(1, u64::from(max_w)) as u32, max_h)
    }
}

/// Decodes a PNG or JPEG within the limits; anything else is invalid input.
pub fn decode(bytes: &[u8]) -> Result<DynamicImage, RunError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| RunError::invalid_input(format!("cannot read image: {e}")))?;
    match reader.format() {
        Some(ImageFormat::Png | ImageFormat::Jpeg) => {}
        Some(other) => {
            return Err(RunError::invalid_input(format!(
                "image is {other:?}; only PNG and JPEG are accepted"
            )));
        }
        None => return Err(RunError::invalid_input("image is neither PNG nor JPEG")),
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(caps::SOURCE_SIDE_MAX);
    limits.max_image_height = Some(caps::SOURCE_SIDE_MAX);
    limits.max_alloc = Some(caps::DECODE_ALLOC_BYTES_MAX);
    reader.limits(limits);
    reader.decode().map_err(|e| RunError::invalid_input(format!("cannot decode image: {e}")))
}

/// Scales `img` to fit `params` and encodes the result as PNG (deterministic bytes).
pub fn thumbnail(img: &DynamicImage, params: Params) -> Result<Vec<u8>, RunError> {
    let (w, h) = fit(img.width(), img.height(), params.max_width, params.max_height);
    let small =
        if (w, h) == (img.width(), img.height()) { img.clone() } else { img.thumbnail_exact(w, h) };
    let small = match (small.color().has_alpha(), small.color().has_color()) {
        (true, true) => DynamicImage::ImageRgba8(small.into_rgba8()),
        (true, false) => DynamicImage::ImageLumaA8(small.into_luma_alpha8()),
        (false, true) => DynamicImage::ImageRgb8(small.into_rgb8()),
        (false, false) => DynamicImage::ImageLuma8(small.into_luma8()),
    };
    let mut out = Vec::new();
    small
        .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
        .map_err(|e| RunError::failed(format!("cannot encode PNG: {e}")))?;
    Ok(out)
}

/// The article: inputs `image` and `params`, output `thumbnail`.
pub fn run(inputs: Inputs) -> Result<Outputs, RunError> {
    let bytes = inputs.get("image")?;
    let params = Params::from_json(inputs.get("params")?)?;
    if bytes.len() > caps::IMAGE_BYTES_MAX {
        return Err(RunError::invalid_input(format!(
            "image of {} bytes is larger than {}",
            bytes.len(),
            caps::IMAGE_BYTES_MAX
        )));
    }
    let img = decode(bytes)?;
    let png = thumbnail(&img, params)?;
    bitwrk_guest::log(&format!(
        "{}x{} -> thumbnail of {} PNG bytes",
        img.width(),
        img.height(),
        png.len()
    ));
    Ok(Outputs::new().with("thumbnail", png))
}

bitwrk_guest::article!(run);
