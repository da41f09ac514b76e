//! Native tests of the raytrace article: tiles stitch to the full render byte for byte,
//! the picture shows what the scene says, and bad inputs are refused clearly.

use article_raytrace::{
    RenderError, RgbImage, Scene, Tile, blit, caps, decode_png, encode_png, render_png,
    render_tile, run,
};
use bitwrk_guest::{Inputs, RunError};
use proptest::prelude::*;

/// A small scene with every feature: soft and hard shadows, reflections, checker floor,
/// antialiasing with several samples.
const SCENE: &str = r#"{
  "width": 48, "height": 36, "samples": 4, "max_depth": 3, "seed": 42,
  "background": [0.2, 0.4, 0.8], "ambient": [0.1, 0.1, 0.1],
  "camera": {"position": [0, 1.5, -6], "look_at": [0, 0.8, 0], "fov_deg": 45},
  "lights": [{"position": [-4, 6, -4], "radius": 0.8}, {"position": [4, 5, -2], "intensity": 0.5}],
  "spheres": [
    {"center": [0, 1, 0], "radius": 1, "material": {"color": [0.9, 0.1, 0.1], "specular": 0.5, "reflectivity": 0.3}},
    {"center": [1.8, 0.5, -1], "radius": 0.5, "material": {"color": [0.9, 0.9, 0.9], "reflectivity": 0.9}}
  ],
  "planes": [{"point": [0, 0, 0], "normal": [0, 1, 0],
              "material": {"color": [0.9, 0.9, 0.9], "checker_color": [0.1, 0.1, 0.1], "checker_size": 1}}]
}"#;

fn scene() -> Scene {
    Scene::from_json(SCENE.as_bytes()).unwrap()
}

fn tile_json(x: u32, y: u32, w: u32, h: u32) -> String {
    format!(r#"{{"x":{x},"y":{y},"width":{w},"height":{h}}}"#)
}

/// Renders the tiles given by cut positions along x and y through the article's own
/// entry point (`run` → PNG → decode) and stitches them.
fn stitched(scene_json: &str, xs: &[u32], ys: &[u32]) -> RgbImage {
    let scene = Scene::from_json(scene_json.as_bytes()).unwrap();
    let mut full = RgbImage {
        width: scene.width,
        height: scene.height,
        pixels: vec![0; (scene.width * scene.height * 3) as usize],
    };
    for wy in ys.windows(2) {
        for wx in xs.windows(2) {
            let inputs = Inputs::new()
                .with("scene", scene_json)
                .with("tile", tile_json(wx[0], wy[0], wx[1] - wx[0], wy[1] - wy[0]));
            let png = run(inputs).unwrap().get("image").unwrap().to_vec();
            let tile = decode_png(&png).unwrap();
            assert_eq!((tile.width, tile.height), (wx[1] - wx[0], wy[1] - wy[0]));
            blit(&mut full, &tile, wx[0], wy[0]);
        }
    }
    full
}

#[test]
fn stitched_tiles_equal_the_full_render_byte_for_byte() {
    let full_png = render_png(SCENE.as_bytes(), tile_json(0, 0, 48, 36).as_bytes()).unwrap();
    let full = decode_png(&full_png).unwrap();
    // Uneven tiles, including one-pixel rows and columns.
    let stitched = stitched(SCENE, &[0, 1, 17, 32, 47, 48], &[0, 10, 11, 36]);
    assert_eq!(stitched, full, "decoded pixels differ");
    // The re-encoded stitch is the very same file as the full render.
    assert_eq!(encode_png(&stitched).unwrap(), full_png);
}

#[test]
fn rendering_is_deterministic_and_the_seed_matters() {
    let a = render_png(SCENE.as_bytes(), tile_json(0, 0, 48, 36).as_bytes()).unwrap();
    let b = render_png(SCENE.as_bytes(), tile_json(0, 0, 48, 36).as_bytes()).unwrap();
    assert_eq!(a, b);
    let other_seed = SCENE.replace("\"seed\": 42", "\"seed\": 43");
    let c = render_png(other_seed.as_bytes(), tile_json(0, 0, 48, 36).as_bytes()).unwrap();
    assert_ne!(
        decode_png(&a).unwrap(),
        decode_png(&c).unwrap(),
        "jitter and soft shadows depend on the seed"
    );
}

#[test]
fn the_picture_shows_the_scene() {
    let s = scene();
    let img = render_tile(&s, Tile::full(&s));
    assert_eq!(img.pixels.len(), 48 * 36 * 3);
    // Top row: sky, exactly the background colour after gamma 2.0 (sqrt) and rounding.
    let sky = [0.2f64, 0.4, 0.8].map(|c| (c.sqrt() * 255.0 + 0.5) as u8);
    assert_eq!(img.pixel(24, 0), sky);
    // Centre: the red sphere, which mirrors some blue sky (reflectivity 0.3): red leads.
    let [r, g, b] = img.pixel(24, 16);
    assert!(r > 150 && r > g + 50 && r > b + 25, "centre pixel {:?} is not red enough", [r, g, b]);
    // Bottom rows: the floor, both checker colours visible.
    let floor: Vec<[u8; 3]> = (0..48).map(|x| img.pixel(x, 35)).collect();
    assert!(floor.iter().any(|p| p[0] > 150) && floor.iter().any(|p| p[0] < 90), "{floor:?}");
}

#[test]
fn shadows_darken_the_floor() {
    // The camera looks straight down at a white floor; a sphere hangs above the camera
    // (out of view) under a point light, so the floor's centre is in its shadow and gets
    // ambient light only, while the corners are fully lit.
    let with_sphere = r#"{"width": 21, "height": 21, "ambient": [0.1, 0.1, 0.1],
        "camera": {"position": [0, 5, 0], "look_at": [0, 0, 0], "up": [0, 0, 1], "fov_deg": 60},
        "lights": [{"position": [0, 20, 0]}],
        "spheres": [{"center": [0, 12, 0], "radius": 1}],
        "planes": [{"point": [0, 0, 0], "normal": [0, 1, 0], "material": {"color": [1, 1, 1], "diffuse": 1}}]}"#;
    let img = decode_png(
        &render_png(with_sphere.as_bytes(), tile_json(0, 0, 21, 21).as_bytes()).unwrap(),
    )
    .unwrap();
    let ambient_only = (0.1f64.sqrt() * 255.0 + 0.5) as u8;
    assert_eq!(img.pixel(10, 10), [ambient_only; 3], "centre in the shadow");
    assert_eq!(img.pixel(0, 0), [255; 3], "corner lit");
    // Without the sphere the centre is lit too.
    let without = with_sphere.replace(r#""spheres": [{"center": [0, 12, 0], "radius": 1}],"#, "");
    let img =
        decode_png(&render_png(without.as_bytes(), tile_json(0, 0, 21, 21).as_bytes()).unwrap())
            .unwrap();
    assert_eq!(img.pixel(10, 10), [255; 3]);
}

#[test]
fn demo_scene_is_valid_and_renders_a_tile() {
    let demo = include_str!("../scenes/demo.json");
    let scene = Scene::from_json(demo.as_bytes()).unwrap();
    assert_eq!((scene.width, scene.height), (640, 480));
    let png = render_png(demo.as_bytes(), tile_json(300, 200, 8, 8).as_bytes()).unwrap();
    assert_eq!(decode_png(&png).unwrap().width, 8);
}

fn run_err(scene: &str, tile: &str) -> RunError {
    run(Inputs::new().with("scene", scene).with("tile", tile)).unwrap_err()
}

fn assert_invalid(err: RunError, needle: &str) {
    assert!(
        matches!(&err, RunError::InvalidInput(m) if m.contains(needle)),
        "{err:?} should mention {needle:?}"
    );
}

#[test]
fn missing_inputs() {
    assert_eq!(
        run(Inputs::new().with("tile", tile_json(0, 0, 1, 1))).unwrap_err(),
        RunError::MissingInput("scene".into())
    );
    assert_eq!(
        run(Inputs::new().with("scene", SCENE)).unwrap_err(),
        RunError::MissingInput("tile".into())
    );
}

#[test]
fn bad_scenes_are_invalid_input() {
    let t = tile_json(0, 0, 1, 1);
    assert_invalid(run_err("{", &t), "bad scene");
    assert_invalid(run_err(&SCENE.replace("\"seed\"", "\"sead\""), &t), "unknown field");
    assert_invalid(run_err(&SCENE.replace("\"samples\": 4", "\"samples\": 0"), &t), "samples");
    assert_invalid(run_err(&SCENE.replace("\"samples\": 4", "\"samples\": 5000"), &t), "samples");
    assert_invalid(run_err(&SCENE.replace("\"width\": 48", "\"width\": 0"), &t), "image size");
    assert_invalid(run_err(&SCENE.replace("\"width\": 48", "\"width\": 100000"), &t), "image size");
    assert_invalid(run_err(&SCENE.replace("\"radius\": 1,", "\"radius\": -1,"), &t), "radius");
    assert_invalid(run_err(&SCENE.replace("\"fov_deg\": 45", "\"fov_deg\": 180"), &t), "fov_deg");
    assert_invalid(
        run_err(&SCENE.replace("\"reflectivity\": 0.9", "\"reflectivity\": 1.5"), &t),
        "reflectivity",
    );
    assert_invalid(run_err(&SCENE.replace("[0, 1.5, -6]", "[0, 1e300, -6]"), &t), "finite");
    assert_invalid(
        run_err(&SCENE.replace("\"look_at\": [0, 0.8, 0]", "\"look_at\": [0, 1.5, -6]"), &t),
        "look_at",
    );
    let huge = format!("{}{}", SCENE, " ".repeat(caps::SCENE_BYTES_MAX));
    assert_invalid(run_err(&huge, &t), "larger than");
}

#[test]
fn bad_tiles_are_invalid_input() {
    assert_invalid(run_err(SCENE, "[1,2]"), "bad tile");
    assert_invalid(run_err(SCENE, &tile_json(0, 0, 0, 5)), "empty");
    assert_invalid(run_err(SCENE, &tile_json(40, 0, 9, 5)), "not inside");
    assert_invalid(run_err(SCENE, &tile_json(0, 30, 5, 7)), "not inside");
    assert_invalid(run_err(SCENE, &tile_json(u32::MAX, 0, 2, 2)), "not inside");
    let big = SCENE.replace("\"width\": 48, \"height\": 36", "\"width\": 4096, \"height\": 4096");
    assert_invalid(run_err(&big, &tile_json(0, 0, 4096, 2048)), "larger than");
    let s = Scene::from_json(big.as_bytes()).unwrap();
    assert!(matches!(s.check_tile(Tile { x: 0, y: 0, width: 2048, height: 2048 }), Ok(())));
    assert!(matches!(
        s.check_tile(Tile { x: 0, y: 0, width: 2048, height: 2049 }),
        Err(RenderError::Tile(_))
    ));
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
    assert_eq!(m.name, "raytrace");
    assert_eq!(m.input("scene").unwrap().max_bytes, caps::SCENE_BYTES_MAX as u64);
    assert_eq!(m.input("tile").unwrap().max_bytes, caps::TILE_BYTES_MAX as u64);
    assert_eq!(m.output("image").unwrap().media_type, "image/png");
    // The largest tile's PNG fits the declared output: RGB bytes plus one filter byte a
    // row plus generous chunk and deflate overhead.
    assert!(
        m.output("image").unwrap().max_bytes
            >= caps::TILE_PIXELS_MAX * 3 + caps::TILE_PIXELS_MAX / 8
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn any_tiling_stitches_to_the_full_render(
        cuts_x in proptest::collection::btree_set(1u32..48, 0..5),
        cuts_y in proptest::collection::btree_set(1u32..36, 0..4),
        seed in 0u64..1000,
    ) {
        let scene_json = SCENE.replace("\"seed\": 42", &format!("\"seed\": {seed}"));
        let s = Scene::from_json(scene_json.as_bytes()).unwrap();
        let full = render_tile(&s, Tile::full(&s));
        let xs: Vec<u32> = std::iter::once(0).chain(cuts_x).chain(std::iter::once(48)).collect();
        let ys: Vec<u32> = std::iter::once(0).chain(cuts_y).chain(std::iter::once(36)).collect();
        prop_assert_eq!(stitched(&scene_json, &xs, &ys), full);
    }
}
