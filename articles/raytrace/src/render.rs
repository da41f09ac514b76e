//! The ray tracer: Blinn-Phong shading, hard and soft shadows, mirror reflections and
//! jittered antialiasing.
//!
//! Determinism: every pixel's colour depends only on the scene and the pixel's own
//! coordinates (the sampler is keyed by seed, x, y and sample index, never by the tile),
//! so tiles rendered separately and stitched equal the full render exactly. The code
//! uses only `+ - * /`, `sqrt` and `floor`, which IEEE 754 defines exactly, and no libm
//! function (`tan`, `powf`, ...), whose last bit differs between platforms: a tile
//! rendered natively equals the same tile rendered in the wasm sandbox.

use crate::scene::{Material, Scene, Tile, Vec3};

/// Offset along the normal for secondary rays, so a surface does not shadow itself.
const EPSILON: f64 = 1e-6;

pub(crate) fn add(a: Vec3, b: Vec3) -> Vec3 {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}
pub(crate) fn sub(a: Vec3, b: Vec3) -> Vec3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
fn mul(a: Vec3, b: Vec3) -> Vec3 {
    [a[0] * b[0], a[1] * b[1], a[2] * b[2]]
}
fn scale(a: Vec3, s: f64) -> Vec3 {
    [a[0] * s, a[1] * s, a[2] * s]
}
fn dot(a: Vec3, b: Vec3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
pub(crate) fn cross(a: Vec3, b: Vec3) -> Vec3 {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}
pub(crate) fn length(a: Vec3) -> f64 {
    dot(a, a).sqrt()
}
fn normalize(a: Vec3) -> Vec3 {
    scale(a, 1.0 / length(a))
}

/// `x^n` by squaring: exact same operations on every platform (unlike `powf`/`powi`).
fn pow_u32(mut x: f64, mut n: u32) -> f64 {
    let mut acc = 1.0;
    while n > 0 {
        if n & 1 == 1 {
            acc *= x;
        }
        x *= x;
        n >>= 1;
    }
    acc
}

/// `tan(x)` for `0 < x < π/2` from Taylor series of sin and cos (platform-independent).
fn tan(x: f64) -> f64 {
    let (mut sin, mut cos) = (0.0, 0.0);
    let (mut term_s, mut term_c) = (x, 1.0);
    for k in 0..30 {
        sin += term_s;
        cos += term_c;
        let k = f64::from(k);
        term_s *= -x * x / ((2.0 * k + 2.0) * (2.0 * k + 3.0));
        term_c *= -x * x / ((2.0 * k + 1.0) * (2.0 * k + 2.0));
    }
    sin / cos
}

/// A deterministic stream of numbers in [0, 1) for one sample of one pixel.
struct Sampler {
    key: u64,
    counter: u64,
}

/// SplitMix64's finaliser: a good 64-bit mix, cheap and exact everywhere.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Sampler {
    fn new(seed: u64, x: u32, y: u32, sample: u32) -> Sampler {
        let key = mix(mix(mix(seed ^ 0x9e37_79b9_7f4a_7c15) ^ u64::from(x))
            ^ (u64::from(y) << 32 | u64::from(sample)));
        Sampler { key, counter: 0 }
    }

    fn next(&mut self) -> f64 {
        self.counter += 1;
        (mix(self.key.wrapping_add(self.counter.wrapping_mul(0x9e37_79b9_7f4a_7c15))) >> 11) as f64
            * (1.0 / (1u64 << 53) as f64)
    }

    /// A point in the unit ball (rejection sampling, bounded; the centre if unlucky).
    fn in_unit_ball(&mut self) -> Vec3 {
        for _ in 0..16 {
            let p = [2.0 * self.next() - 1.0, 2.0 * self.next() - 1.0, 2.0 * self.next() - 1.0];
            if dot(p, p) <= 1.0 {
                return p;
            }
        }
        [0.0; 3]
    }
}

/// An RGB image, 8 bits per channel, rows top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    /// `width * height * 3` bytes.
    pub pixels: Vec<u8>,
}

impl RgbImage {
    /// The pixel at (x, y).
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }
}

struct Hit<'a> {
    t: f64,
    point: Vec3,
    normal: Vec3,
    material: &'a Material,
}

struct Tracer<'a> {
    scene: &'a Scene,
    plane_normals: Vec<Vec3>,
}

impl<'a> Tracer<'a> {
    /// The nearest hit with `t` in (EPSILON, t_max).
    fn nearest(&self, origin: Vec3, dir: Vec3, t_max: f64) -> Option<Hit<'a>> {
        let mut best: Option<(f64, usize)> = None;
        let mut closer = |t: f64, i: usize| {
            if t > EPSILON && t < t_max && best.is_none_or(|(bt, _)| t < bt) {
                best = Some((t, i));
            }
        };
        for (i, s) in self.scene.spheres.iter().enumerate() {
            // |o + t d - c|^2 = r^2 with |d| = 1.
            let oc = sub(origin, s.center);
            let b = dot(oc, dir);
            let c = dot(oc, oc) - s.radius * s.radius;
            let disc = b * b - c;
            if disc >= 0.0 {
                let root = disc.sqrt();
                let t0 = -b - root;
                closer(if t0 > EPSILON { t0 } else { -b + root }, i);
            }
        }
        let n_spheres = self.scene.spheres.len();
        for (i, (p, n)) in self.scene.planes.iter().zip(&self.plane_normals).enumerate() {
            let denom = dot(*n, dir);
            if denom != 0.0 {
                closer(dot(sub(p.point, origin), *n) / denom, n_spheres + i);
            }
        }
        let (t, i) = best?;
        let point = add(origin, scale(dir, t));
        let (normal, material) = if i < n_spheres {
            let s = &self.scene.spheres[i];
            (normalize(sub(point, s.center)), &s.material)
        } else {
            (self.plane_normals[i - n_spheres], &self.scene.planes[i - n_spheres].material)
        };
        // Shade the side the ray came from.
        let normal = if dot(normal, dir) > 0.0 { scale(normal, -1.0) } else { normal };
        Some(Hit { t, point, normal, material })
    }

    fn trace(&self, origin: Vec3, dir: Vec3, depth: u32, sampler: &mut Sampler) -> Vec3 {
        let Some(hit) = self.nearest(origin, dir, f64::INFINITY) else {
            return self.scene.background;
        };
        let m = hit.material;
        let base = surface_color(m, hit.point);
        let lift = add(hit.point, scale(hit.normal, EPSILON * (1.0 + hit.t)));
        let mut color = mul(self.scene.ambient, base);
        for light in &self.scene.lights {
            let target = if light.radius > 0.0 {
                add(light.position, scale(sampler.in_unit_ball(), light.radius))
            } else {
                light.position
            };
            let to_light = sub(target, lift);
            let dist = length(to_light);
            if dist == 0.0 {
                continue;
            }
            let l = scale(to_light, 1.0 / dist);
            let n_dot_l = dot(hit.normal, l);
            if n_dot_l <= 0.0 || self.nearest(lift, l, dist).is_some() {
                continue;
            }
            let radiance = scale(light.color, light.intensity);
            color = add(color, scale(mul(base, radiance), m.diffuse * n_dot_l));
            if m.specular > 0.0 {
                let h = normalize(sub(l, dir));
                let spec = m.specular * pow_u32(dot(hit.normal, h).max(0.0), m.shininess);
                color = add(color, scale(radiance, spec));
            }
        }
        if m.reflectivity > 0.0 && depth < self.scene.max_depth {
            let r = sub(dir, scale(hit.normal, 2.0 * dot(dir, hit.normal)));
            let reflected = self.trace(lift, r, depth + 1, sampler);
            color = add(scale(color, 1.0 - m.reflectivity), scale(reflected, m.reflectivity));
        }
        color
    }
}

fn surface_color(m: &Material, p: Vec3) -> Vec3 {
    if m.checker_size > 0.0 {
        let s = m.checker_size;
        let cell = (p[0] / s).floor() + (p[1] / s).floor() + (p[2] / s).floor();
        if cell.rem_euclid(2.0) >= 1.0 {
            return m.checker_color;
        }
    }
    m.color
}

/// Linear colour to 8 bits with gamma 2.0 (`sqrt`, exact everywhere).
fn to_u8(c: f64) -> u8 {
    (c.clamp(0.0, 1.0).sqrt() * 255.0 + 0.5) as u8
}

/// Renders `tile` of `scene`. The caller checks the tile with [`Scene::check_tile`]
/// (done by [`crate::render_png`]); a tile outside the image still renders the rays it
/// names, it is just not part of the picture.
pub fn render_tile(scene: &Scene, tile: Tile) -> RgbImage {
    let c = &scene.camera;
    let forward = normalize(sub(c.look_at, c.position));
    let right = normalize(cross(forward, c.up));
    let up = cross(right, forward);
    let half_h = tan(c.fov_deg * (std::f64::consts::PI / 360.0));
    let half_w = half_h * f64::from(scene.width) / f64::from(scene.height);
    let tracer =
        Tracer { scene, plane_normals: scene.planes.iter().map(|p| normalize(p.normal)).collect() };
    let inv_samples = 1.0 / f64::from(scene.samples);
    let mut pixels = Vec::with_capacity(tile.width as usize * tile.height as usize * 3);
    for y in tile.y..tile.y + tile.height {
        for x in tile.x..tile.x + tile.width {
            let mut sum = [0.0; 3];
            for s in 0..scene.samples {
                let mut sampler = Sampler::new(scene.seed, x, y, s);
                let (jx, jy) =
                    if scene.samples == 1 { (0.5, 0.5) } else { (sampler.next(), sampler.next()) };
                let u = ((f64::from(x) + jx) / f64::from(scene.width) * 2.0 - 1.0) * half_w;
                let v = (1.0 - (f64::from(y) + jy) / f64::from(scene.height) * 2.0) * half_h;
                let dir = normalize(add(forward, add(scale(right, u), scale(up, v))));
                sum = add(sum, tracer.trace(c.position, dir, 0, &mut sampler));
            }
            pixels.extend(sum.map(|v| to_u8(v * inv_samples)));
        }
    }
    RgbImage { width: tile.width, height: tile.height, pixels }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tan_matches_known_values() {
        for (deg, expected) in [
            (30.0f64, 0.577_350_269_189_625_7),
            (45.0, 1.0),
            (60.0, 1.732_050_807_568_877_2),
            (85.0, 11.430_052_302_761_343),
        ] {
            let got = tan(deg.to_radians());
            assert!((got - expected).abs() < 1e-12 * expected.max(1.0), "tan({deg}) = {got}");
        }
    }

    #[test]
    fn pow_by_squaring() {
        assert_eq!(pow_u32(2.0, 10), 1024.0);
        assert_eq!(pow_u32(0.5, 0), 1.0);
        assert_eq!(pow_u32(0.0, 3), 0.0);
    }

    #[test]
    fn sampler_is_in_range_and_keyed_by_pixel() {
        let mut a = Sampler::new(1, 10, 20, 0);
        let xs: Vec<f64> = (0..1000).map(|_| a.next()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / 1000.0;
        assert!((mean - 0.5).abs() < 0.05, "mean {mean}");
        assert_ne!(Sampler::new(1, 10, 20, 0).next(), Sampler::new(1, 20, 10, 0).next());
        assert_ne!(Sampler::new(1, 10, 20, 0).next(), Sampler::new(2, 10, 20, 0).next());
        assert_eq!(Sampler::new(1, 10, 20, 3).next(), Sampler::new(1, 10, 20, 3).next());
    }
}
