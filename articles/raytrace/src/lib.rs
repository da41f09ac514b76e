//! Example article `raytrace`: renders a rectangle (tile) of a scene described as JSON
//! to PNG. The CPU-heavy showcase: a job splits an image into tiles, sellers render
//! them, and the stitched tiles equal the full render pixel for pixel.
//!
//! Inputs: `scene` (application/json, see [`Scene`]) and `tile` (application/json,
//! `{"x":0,"y":0,"width":64,"height":64}` in pixels of the full image, origin top left).
//! Output: `image` (image/png, 8-bit RGB, `width` x `height` of the tile).

mod png_io;
pub mod render;
pub mod scene;

use bitwrk_guest::{Inputs, Outputs, RunError};

pub use png_io::{blit, decode_png, encode_png};
pub use render::{RgbImage, render_tile};
pub use scene::{Scene, Tile, caps};

/// Why a render was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("bad scene: {0}")]
    Scene(String),
    #[error("bad tile: {0}")]
    Tile(String),
    #[error("PNG: {0}")]
    Png(String),
}

/// Parses and checks the scene and tile, renders the tile and encodes it as PNG: the
/// whole article, callable natively (the benchmark runs exactly this).
pub fn render_png(scene_json: &[u8], tile_json: &[u8]) -> Result<Vec<u8>, RenderError> {
    let scene = Scene::from_json(scene_json)?;
    let tile = scene.tile_from_json(tile_json)?;
    encode_png(&render_tile(&scene, tile))
}

/// The article: inputs `scene` and `tile`, output `image`.
pub fn run(inputs: Inputs) -> Result<Outputs, RunError> {
    let scene = inputs.get("scene")?;
    let tile = inputs.get("tile")?;
    let png = render_png(scene, tile).map_err(|e| match e {
        RenderError::Scene(_) | RenderError::Tile(_) => RunError::invalid_input(e),
        RenderError::Png(_) => RunError::failed(e),
    })?;
    bitwrk_guest::log(&format!("rendered tile, {} PNG bytes", png.len()));
    Ok(Outputs::new().with("image", png))
}

bitwrk_guest::article!(run);
