//! The scene and tile descriptions (inputs `scene` and `tile`, both JSON), with the
//! limits that keep one tile's work and memory bounded.

use serde::Deserialize;

use crate::RenderError;

/// Caps on what a scene and a tile may ask for, so a bad input is refused up front
/// instead of exhausting the sandbox.
pub mod caps {
    /// Largest scene JSON (matches `max_bytes` of input `scene`).
    pub const SCENE_BYTES_MAX: usize = 1 << 20;
    /// Largest tile JSON (matches `max_bytes` of input `tile`).
    pub const TILE_BYTES_MAX: usize = 4096;
    /// Largest image side in pixels (a 16k x 16k poster is already 768 MB of RGB).
    pub const IMAGE_SIDE_MAX: u32 = 16_384;
    /// Most pixels in one tile: 4 Mpx is 12 MiB of RGB, well within the memory limit,
    /// and its PNG stays below the declared output size (16 MiB).
    pub const TILE_PIXELS_MAX: u64 = 4 << 20;
    /// Most samples per pixel (beyond this antialiasing gains nothing visible).
    pub const SAMPLES_MAX: u32 = 1024;
    /// Deepest reflection recursion.
    pub const DEPTH_MAX: u32 = 16;
    /// Most spheres plus planes (intersection is linear in this; no acceleration structure).
    pub const OBJECTS_MAX: usize = 4096;
    /// Most lights (each costs a shadow ray per hit).
    pub const LIGHTS_MAX: usize = 64;
    /// Largest absolute coordinate or colour value, so no arithmetic overflows to inf.
    pub const VALUE_ABS_MAX: f64 = 1e6;
    /// Largest Blinn-Phong exponent (an integer power computed by squaring).
    pub const SHININESS_MAX: u32 = 100_000;
}

/// A 3-vector as `[x, y, z]` (points, directions and linear RGB colours).
pub type Vec3 = [f64; 3];

/// The whole scene. Unknown fields are refused so a typo is an error, not a silent default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scene {
    /// Full image size in pixels.
    pub width: u32,
    pub height: u32,
    /// Samples per pixel (jittered, deterministic per pixel). Default 1: one ray through
    /// the pixel centre.
    #[serde(default = "one")]
    pub samples: u32,
    /// Reflection bounces after the primary ray. Default 3.
    #[serde(default = "three")]
    pub max_depth: u32,
    /// Seeds the per-pixel sampler; the same seed gives the same image.
    #[serde(default)]
    pub seed: u64,
    /// Colour of rays that hit nothing.
    #[serde(default)]
    pub background: Vec3,
    /// Light every surface receives regardless of shadows.
    #[serde(default)]
    pub ambient: Vec3,
    pub camera: Camera,
    #[serde(default)]
    pub lights: Vec<Light>,
    #[serde(default)]
    pub spheres: Vec<Sphere>,
    #[serde(default)]
    pub planes: Vec<Plane>,
}

fn one() -> u32 {
    1
}
fn three() -> u32 {
    3
}

/// A pinhole camera.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Camera {
    pub position: Vec3,
    pub look_at: Vec3,
    #[serde(default = "y_up")]
    pub up: Vec3,
    /// Vertical field of view in degrees, in (0, 170].
    pub fov_deg: f64,
}

fn y_up() -> Vec3 {
    [0.0, 1.0, 0.0]
}

/// A point light; with `radius > 0` a spherical light that casts soft shadows (one
/// shadow ray per sample towards a point on the sphere).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Light {
    pub position: Vec3,
    #[serde(default = "white")]
    pub color: Vec3,
    #[serde(default = "unit")]
    pub intensity: f64,
    #[serde(default)]
    pub radius: f64,
}

fn white() -> Vec3 {
    [1.0, 1.0, 1.0]
}
fn unit() -> f64 {
    1.0
}

/// How a surface reflects light (Blinn-Phong plus mirror reflection).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Material {
    #[serde(default = "grey")]
    pub color: Vec3,
    /// With `checker_size > 0`, a 3D checkerboard of `color` and `checker_color`.
    #[serde(default)]
    pub checker_color: Vec3,
    #[serde(default)]
    pub checker_size: f64,
    #[serde(default = "diffuse")]
    pub diffuse: f64,
    #[serde(default)]
    pub specular: f64,
    #[serde(default = "shininess")]
    pub shininess: u32,
    /// Fraction of the colour taken from the mirror reflection, in [0, 1].
    #[serde(default)]
    pub reflectivity: f64,
}

impl Default for Material {
    fn default() -> Material {
        Material {
            color: grey(),
            checker_color: [0.0; 3],
            checker_size: 0.0,
            diffuse: diffuse(),
            specular: 0.0,
            shininess: shininess(),
            reflectivity: 0.0,
        }
    }
}

fn grey() -> Vec3 {
    [0.8, 0.8, 0.8]
}
fn diffuse() -> f64 {
    0.9
}
fn shininess() -> u32 {
    32
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sphere {
    pub center: Vec3,
    pub radius: f64,
    #[serde(default)]
    pub material: Material,
}

/// An infinite plane through `point` facing `normal`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plane {
    pub point: Vec3,
    pub normal: Vec3,
    #[serde(default)]
    pub material: Material,
}

/// A rectangle of the full image, in pixels, origin top left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tile {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Tile {
    /// The whole image of `scene` as one tile.
    pub fn full(scene: &Scene) -> Tile {
        Tile { x: 0, y: 0, width: scene.width, height: scene.height }
    }
}

impl Scene {
    /// Parses and validates a scene.
    pub fn from_json(bytes: &[u8]) -> Result<Scene, RenderError> {
        if bytes.len() > caps::SCENE_BYTES_MAX {
            return Err(RenderError::Scene(format!(
                "scene JSON of {} bytes is larger than {}",
                bytes.len(),
                caps::SCENE_BYTES_MAX
            )));
        }
        let scene: Scene =
            serde_json::from_slice(bytes).map_err(|e| RenderError::Scene(e.to_string()))?;
        scene.validate()?;
        Ok(scene)
    }

    /// Every rule a scene must keep, with a message naming the broken one.
    pub fn validate(&self) -> Result<(), RenderError> {
        let bad = |s: String| Err(RenderError::Scene(s));
        if self.width == 0
            || self.height == 0
            || self.width > caps::IMAGE_SIDE_MAX
            || self.height > caps::IMAGE_SIDE_MAX
        {
            return bad(format!(
                "image size {}x{} must be 1..={} on each side",
                self.width,
                self.height,
                caps::IMAGE_SIDE_MAX
            ));
        }
        if self.samples == 0 || self.samples > caps::SAMPLES_MAX {
            return bad(format!("samples {} must be 1..={}", self.samples, caps::SAMPLES_MAX));
        }
        if self.max_depth > caps::DEPTH_MAX {
            return bad(format!(
                "max_depth {} must be at most {}",
                self.max_depth,
                caps::DEPTH_MAX
            ));
        }
        if self.spheres.len() + self.planes.len() > caps::OBJECTS_MAX {
            return bad(format!("at most {} spheres and planes", caps::OBJECTS_MAX));
        }
        if self.lights.len() > caps::LIGHTS_MAX {
            return bad(format!("at most {} lights", caps::LIGHTS_MAX));
        }
        let c = &self.camera;
        if c.fov_deg.is_nan() || c.fov_deg <= 0.0 || c.fov_deg > 170.0 {
            return bad(format!("camera.fov_deg {} must be in (0, 170]", c.fov_deg));
        }
        let forward = crate::render::sub(c.look_at, c.position);
        if crate::render::length(forward) == 0.0 {
            return bad("camera.look_at must differ from camera.position".into());
        }
        if crate::render::length(crate::render::cross(forward, c.up)) == 0.0 {
            return bad("camera.up must not be parallel to the view direction".into());
        }
        let mut values: Vec<(&str, f64)> = Vec::new();
        let mut v3 = |what: &'static str, v: &Vec3| values.extend(v.iter().map(|x| (what, *x)));
        v3("background", &self.background);
        v3("ambient", &self.ambient);
        v3("camera.position", &c.position);
        v3("camera.look_at", &c.look_at);
        v3("camera.up", &c.up);
        for l in &self.lights {
            v3("light.position", &l.position);
            v3("light.color", &l.color);
        }
        let materials =
            self.spheres.iter().map(|s| &s.material).chain(self.planes.iter().map(|p| &p.material));
        for s in &self.spheres {
            v3("sphere.center", &s.center);
        }
        for p in &self.planes {
            v3("plane.point", &p.point);
            v3("plane.normal", &p.normal);
        }
        for m in materials.clone() {
            v3("material.color", &m.color);
            v3("material.checker_color", &m.checker_color);
        }
        for l in &self.lights {
            values.push(("light.intensity", l.intensity));
            values.push(("light.radius", l.radius));
        }
        for m in materials.clone() {
            values.push(("material.checker_size", m.checker_size));
            values.push(("material.diffuse", m.diffuse));
            values.push(("material.specular", m.specular));
        }
        if let Some((what, x)) =
            values.iter().find(|(_, x)| !(x.is_finite() && x.abs() <= caps::VALUE_ABS_MAX))
        {
            return bad(format!(
                "{what} value {x} must be finite and at most {} in size",
                caps::VALUE_ABS_MAX
            ));
        }
        for l in &self.lights {
            if l.radius < 0.0 || l.intensity < 0.0 {
                return bad("light radius and intensity must not be negative".into());
            }
        }
        for s in &self.spheres {
            if s.radius.is_nan() || s.radius <= 0.0 {
                return bad(format!("sphere radius {} must be positive", s.radius));
            }
        }
        for p in &self.planes {
            if crate::render::length(p.normal) == 0.0 {
                return bad("plane normal must not be zero".into());
            }
        }
        for m in materials {
            if !(0.0..=1.0).contains(&m.reflectivity) {
                return bad(format!("material reflectivity {} must be in [0, 1]", m.reflectivity));
            }
            if m.shininess > caps::SHININESS_MAX {
                return bad(format!(
                    "material shininess {} must be at most {}",
                    m.shininess,
                    caps::SHININESS_MAX
                ));
            }
            if m.checker_size < 0.0 || m.diffuse < 0.0 || m.specular < 0.0 {
                return bad(
                    "material checker_size, diffuse and specular must not be negative".into()
                );
            }
            if m.color.iter().chain(&m.checker_color).any(|c| *c < 0.0) {
                return bad("material colours must not be negative".into());
            }
        }
        Ok(())
    }

    /// Parses a tile and checks that it lies inside this scene's image.
    pub fn tile_from_json(&self, bytes: &[u8]) -> Result<Tile, RenderError> {
        if bytes.len() > caps::TILE_BYTES_MAX {
            return Err(RenderError::Tile(format!(
                "tile JSON of {} bytes is larger than {}",
                bytes.len(),
                caps::TILE_BYTES_MAX
            )));
        }
        let tile: Tile =
            serde_json::from_slice(bytes).map_err(|e| RenderError::Tile(e.to_string()))?;
        self.check_tile(tile)?;
        Ok(tile)
    }

    /// A tile must be non-empty, inside the image and at most `TILE_PIXELS_MAX` pixels.
    pub fn check_tile(&self, t: Tile) -> Result<(), RenderError> {
        if t.width == 0 || t.height == 0 {
            return Err(RenderError::Tile(format!("tile {}x{} is empty", t.width, t.height)));
        }
        if u64::from(t.x) + u64::from(t.width) > u64::from(self.width)
            || u64::from(t.y) + u64::from(t.height) > u64::from(self.height)
        {
            return Err(RenderError::Tile(format!(
                "tile {}x{} at ({}, {}) is not inside the {}x{} image",
                t.width, t.height, t.x, t.y, self.width, self.height
            )));
        }
        if u64::from(t.width) * u64::from(t.height) > caps::TILE_PIXELS_MAX {
            return Err(RenderError::Tile(format!(
                "tile of {} pixels is larger than {}",
                u64::from(t.width) * u64::from(t.height),
                caps::TILE_PIXELS_MAX
            )));
        }
        Ok(())
    }
}
