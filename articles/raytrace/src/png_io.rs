//! PNG encoding (deterministic: fixed settings, no timestamps or text chunks, so the
//! same pixels always give the same bytes) and decoding for tests and stitching.

use crate::{RenderError, RgbImage};

/// Encodes an RGB image as an 8-bit RGB PNG.
pub fn encode_png(image: &RgbImage) -> Result<Vec<u8>, RenderError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, image.width, image.height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    // Fast (fdeflate) keeps encoding a small share of the fuel; the settings are fixed,
    // so the bytes are a function of the pixels alone.
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().map_err(|e| RenderError::Png(e.to_string()))?;
    writer.write_image_data(&image.pixels).map_err(|e| RenderError::Png(e.to_string()))?;
    writer.finish().map_err(|e| RenderError::Png(e.to_string()))?;
    Ok(out)
}

/// Decodes an 8-bit RGB PNG (as written by [`encode_png`]).
pub fn decode_png(bytes: &[u8]) -> Result<RgbImage, RenderError> {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().map_err(|e| RenderError::Png(e.to_string()))?;
    let size =
        reader.output_buffer_size().ok_or_else(|| RenderError::Png("image too large".into()))?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).map_err(|e| RenderError::Png(e.to_string()))?;
    if info.color_type != png::ColorType::Rgb || info.bit_depth != png::BitDepth::Eight {
        return Err(RenderError::Png(format!(
            "expected 8-bit RGB, got {:?} {:?}",
            info.color_type, info.bit_depth
        )));
    }
    buf.truncate(info.buffer_size());
    Ok(RgbImage { width: info.width, height: info.height, pixels: buf })
}

/// Copies `tile` into `full` at (x, y): how a buyer assembles the tiles of a job.
pub fn blit(full: &mut RgbImage, tile: &RgbImage, x: u32, y: u32) {
    assert!(
        x + tile.width <= full.width && y + tile.height <= full.height,
        "tile outside the image"
    );
    let row = tile.width as usize * 3;
    for ty in 0..tile.height as usize {
        let dst = ((y as usize + ty) * full.width as usize + x as usize) * 3;
        full.pixels[dst..dst + row].copy_from_slice(&tile.pixels[ty * row..(ty + 1) * row]);
    }
}
