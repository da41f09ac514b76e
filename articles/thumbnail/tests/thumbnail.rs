//! Native tests of the thumbnail article: real PNG and JPEG inputs made here, sizes and
//! pixels of the output, and the refusals.

use std::io::Cursor;

use article_thumbnail::{caps, fit, run};
use bitwrk_guest::{Inputs, RunError};
use image::{DynamicImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};

/// Four solid quadrants: red, green / blue, white.
fn quadrants(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| match (x < w / 2, y < h / 2) {
        (true, true) => Rgb([255, 0, 0]),
        (false, true) => Rgb([0, 255, 0]),
        (true, false) => Rgb([0, 0, 255]),
        (false, false) => Rgb([255, 255, 255]),
    })
}

fn encode(img: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), format).unwrap();
    out
}

fn thumb(image: &[u8], params: &str) -> Result<DynamicImage, RunError> {
    let out = run(Inputs::new().with("image", image).with("params", params))?;
    let png = out.get("thumbnail").expect("output thumbnail");
    assert_eq!(image::guess_format(png).unwrap(), ImageFormat::Png);
    Ok(image::load_from_memory_with_format(png, ImageFormat::Png).unwrap())
}

fn close(a: [u8; 3], b: [u8; 3], tol: u8) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= tol)
}

#[test]
fn png_is_scaled_to_fit_with_aspect_kept_and_pixels_right() {
    let png = encode(DynamicImage::ImageRgb8(quadrants(400, 200)), ImageFormat::Png);
    let t = thumb(&png, r#"{"max_width":100,"max_height":100}"#).unwrap().into_rgb8();
    assert_eq!(t.dimensions(), (100, 50));
    // Away from the seams each quadrant keeps its exact colour (lossless in, lossless out).
    assert_eq!(t.get_pixel(10, 10).0, [255, 0, 0]);
    assert_eq!(t.get_pixel(90, 10).0, [0, 255, 0]);
    assert_eq!(t.get_pixel(10, 40).0, [0, 0, 255]);
    assert_eq!(t.get_pixel(90, 40).0, [255, 255, 255]);
}

#[test]
fn jpeg_with_default_params() {
    let jpeg = encode(DynamicImage::ImageRgb8(quadrants(640, 480)), ImageFormat::Jpeg);
    let t = thumb(&jpeg, "{}").unwrap();
    assert_eq!((t.width(), t.height()), (256, 192));
    let t = t.into_rgb8();
    // JPEG is lossy: colours within a tolerance, far from the seams.
    assert!(close(t.get_pixel(30, 30).0, [255, 0, 0], 12), "{:?}", t.get_pixel(30, 30));
    assert!(close(t.get_pixel(220, 160).0, [255, 255, 255], 12), "{:?}", t.get_pixel(220, 160));
}

#[test]
fn averaging_not_point_sampling() {
    // One-pixel black and white stripes average to mid grey instead of aliasing to one colour.
    let stripes =
        RgbImage::from_fn(
            200,
            200,
            |x, _| if x % 2 == 0 { Rgb([0, 0, 0]) } else { Rgb([255, 255, 255]) },
        );
    let t =
        thumb(&encode(DynamicImage::ImageRgb8(stripes), ImageFormat::Png), r#"{"max_width":50}"#)
            .unwrap()
            .into_rgb8();
    assert_eq!(t.dimensions(), (50, 50));
    for p in t.pixels() {
        assert!(p.0[0].abs_diff(128) <= 2, "{p:?}");
    }
}

#[test]
fn small_image_keeps_its_size_and_pixels() {
    let src = quadrants(50, 30);
    let t = thumb(&encode(DynamicImage::ImageRgb8(src.clone()), ImageFormat::Png), "{}").unwrap();
    assert_eq!(t.into_rgb8(), src);
}

#[test]
fn alpha_and_grey_are_kept() {
    let rgba = RgbaImage::from_fn(64, 64, |x, _| Rgba([10, 20, 30, (x * 4) as u8]));
    let t = thumb(
        &encode(DynamicImage::ImageRgba8(rgba), ImageFormat::Png),
        r#"{"max_width":16,"max_height":16}"#,
    )
    .unwrap();
    assert!(matches!(t, DynamicImage::ImageRgba8(_)), "{:?}", t.color());
    assert_eq!((t.width(), t.height()), (16, 16));
    let grey = image::GrayImage::from_pixel(40, 20, image::Luma([77]));
    let t = thumb(&encode(DynamicImage::ImageLuma8(grey), ImageFormat::Png), r#"{"max_width":20}"#)
        .unwrap();
    assert!(matches!(t, DynamicImage::ImageLuma8(_)), "{:?}", t.color());
    assert_eq!(t.into_luma8().get_pixel(3, 3).0, [77]);
}

#[test]
fn sixteen_bit_png_comes_out_as_eight_bit() {
    let img = image::ImageBuffer::<Rgb<u16>, _>::from_pixel(300, 300, Rgb([65535, 0, 32768]));
    let t = thumb(&encode(DynamicImage::ImageRgb16(img), ImageFormat::Png), "{}").unwrap();
    let t = match t {
        DynamicImage::ImageRgb8(t) => t,
        other => panic!("expected RGB8, got {:?}", other.color()),
    };
    assert_eq!(t.dimensions(), (256, 256));
    assert_eq!(t.get_pixel(100, 100).0, [255, 0, 128]);
}

#[test]
fn output_is_deterministic() {
    let png = encode(DynamicImage::ImageRgb8(quadrants(333, 222)), ImageFormat::Png);
    let a = run(Inputs::new().with("image", png.clone()).with("params", "{}")).unwrap();
    let b = run(Inputs::new().with("image", png).with("params", "{}")).unwrap();
    assert_eq!(a.get("thumbnail"), b.get("thumbnail"));
}

#[test]
fn fit_cases() {
    assert_eq!(fit(400, 200, 100, 100), (100, 50));
    assert_eq!(fit(200, 400, 100, 100), (50, 100));
    assert_eq!(fit(100, 100, 100, 100), (100, 100));
    assert_eq!(fit(10_000, 1, 100, 100), (100, 1));
    assert_eq!(fit(1, 10_000, 100, 100), (1, 100));
    assert_eq!(fit(300, 200, 256, 256), (256, 171));
    assert_eq!(fit(16_384, 16_383, 2048, 2048), (2048, 2048));
}

fn assert_invalid(r: Result<DynamicImage, RunError>, needle: &str) {
    match r {
        Err(RunError::InvalidInput(m)) => {
            assert!(m.contains(needle), "{m:?} should mention {needle:?}")
        }
        other => panic!(
            "expected invalid input mentioning {needle:?}, got {:?}",
            other.map(|i| i.color())
        ),
    }
}

#[test]
fn missing_inputs() {
    let png = encode(DynamicImage::ImageRgb8(quadrants(8, 8)), ImageFormat::Png);
    assert_eq!(
        run(Inputs::new().with("params", "{}")).unwrap_err(),
        RunError::MissingInput("image".into())
    );
    assert_eq!(
        run(Inputs::new().with("image", png)).unwrap_err(),
        RunError::MissingInput("params".into())
    );
}

#[test]
fn bad_params() {
    let png = encode(DynamicImage::ImageRgb8(quadrants(8, 8)), ImageFormat::Png);
    assert_invalid(thumb(&png, "{"), "bad params");
    assert_invalid(thumb(&png, r#"{"max_widht":10}"#), "unknown field");
    assert_invalid(thumb(&png, r#"{"max_width":0}"#), "max_width");
    assert_invalid(thumb(&png, r#"{"max_height":4096}"#), "max_height");
    assert_invalid(thumb(&png, r#"{"max_width":-5}"#), "bad params");
    assert_invalid(
        thumb(&png, &format!("{{}}{}", " ".repeat(caps::PARAMS_BYTES_MAX))),
        "larger than",
    );
}

#[test]
fn bad_images() {
    assert_invalid(thumb(b"hello, world", "{}"), "neither PNG nor JPEG");
    // A GIF header: a known format, but not one we accept.
    assert_invalid(thumb(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "{}"), "only PNG and JPEG");
    let png = encode(DynamicImage::ImageRgb8(quadrants(64, 64)), ImageFormat::Png);
    assert_invalid(thumb(&png[..png.len() / 2], "{}"), "cannot decode");
    let jpeg = encode(DynamicImage::ImageRgb8(quadrants(64, 64)), ImageFormat::Jpeg);
    assert_invalid(thumb(&jpeg[..40], "{}"), "cannot decode");
}

#[test]
fn too_large_images_are_refused() {
    // A wide PNG is a small file but exceeds the side limit.
    let wide = image::GrayImage::new(caps::SOURCE_SIDE_MAX + 1, 1);
    assert_invalid(
        thumb(&encode(DynamicImage::ImageLuma8(wide), ImageFormat::Png), "{}"),
        "cannot decode",
    );
    // At the side limit it is accepted.
    let wide = image::GrayImage::new(caps::SOURCE_SIDE_MAX, 1);
    let t = thumb(&encode(DynamicImage::ImageLuma8(wide), ImageFormat::Png), "{}").unwrap();
    assert_eq!((t.width(), t.height()), (256, 1));
    // More bytes than declared.
    let big = vec![0u8; caps::IMAGE_BYTES_MAX + 1];
    assert_invalid(thumb(&big, "{}"), "larger than");
    // Sides within limits but too many pixels to decode within the allocation limit.
    let huge = image::RgbaImage::new(8192, 8192);
    assert_invalid(
        thumb(&encode(DynamicImage::ImageRgba8(huge), ImageFormat::Png), "{}"),
        "cannot decode",
    );
}

#[test]
fn manifest_matches_the_caps() {
    let text = include_str!("../article.toml");
    let text = if text.lines().any(|l| l.starts_with("module_sha256")) {
        text.to_string()
    } else {
        text.replacen(
            "runtime = \"wasm\"",
            &format!("runtime = \"wasm\"\nmodule_sha256 = \"{}\"", "0".repeat(64)),
            1,
        )
    };
    let m = bitwrk_protocol::manifest::Manifest::from_toml(&text).unwrap();
    assert_eq!(m.name, "thumbnail");
    assert_eq!(m.input("image").unwrap().max_bytes, caps::IMAGE_BYTES_MAX as u64);
    assert_eq!(m.input("params").unwrap().max_bytes, caps::PARAMS_BYTES_MAX as u64);
    let side = u64::from(caps::THUMB_SIDE_MAX);
    assert!(m.output("thumbnail").unwrap().max_bytes > side * side * 4 + side * 64);
    assert!(m.limits.memory_bytes > caps::DECODE_ALLOC_BYTES_MAX * 2);
}
