//! Renders a scene natively and prints the time taken: the native side of the
//! raytrace benchmark. `cargo run --release -p article-raytrace --example render --
//! articles/raytrace/scenes/demo.json out.png [TILE_JSON]`

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [scene_path, out_path, rest @ ..] = args.as_slice() else {
        return Err("usage: render SCENE.json OUT.png [TILE_JSON]".into());
    };
    let scene_json = std::fs::read(scene_path)?;
    let scene = article_raytrace::Scene::from_json(&scene_json)?;
    let tile_json = match rest.first() {
        Some(t) => t.clone(),
        None => format!(r#"{{"x":0,"y":0,"width":{},"height":{}}}"#, scene.width, scene.height),
    };
    let start = Instant::now();
    let png = article_raytrace::render_png(&scene_json, tile_json.as_bytes())?;
    let elapsed = start.elapsed();
    std::fs::write(out_path, &png)?;
    println!(
        "rendered {tile_json} of {scene_path} in {:.3} s, {} PNG bytes -> {out_path}",
        elapsed.as_secs_f64(),
        png.len()
    );
    Ok(())
}
