//! The tile job (the article's `job` input): which pixels of which frame, with which
//! samples and seed. Pure values: parsing, validation and cost, no IO.

use crate::limits::{FRAME_SIDE_PX_MAX, JOB_BYTES_MAX, SAMPLES_MAX, TILE_PX_MAX};

/// One tile of one frame. Pixel rectangle `[x0, x1) x [y0, y1)` with rows counted from
/// the top of the image; `width`/`height` are the frame's size (must match the scene's
/// resolution x percentage, so buyer and seller agree on the frame).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TileJob {
    pub frame: i32,
    pub width: u32,
    pub height: u32,
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
    pub samples: u32,
    pub seed: u32,
    /// Also render the Denoising Albedo/Normal passes, so the buyer can denoise the
    /// stitched frame once (tiles are never denoised on their own).
    #[serde(default)]
    pub denoise_data: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum JobError {
    #[error("the tile job is {0} bytes, at most {JOB_BYTES_MAX}")]
    TooLarge(usize),
    #[error("the tile job does not parse: {0}")]
    Json(String),
    #[error("invalid tile job: {0}")]
    Invalid(String),
}

impl TileJob {
    pub fn from_json(bytes: &[u8]) -> Result<TileJob, JobError> {
        if bytes.len() > JOB_BYTES_MAX {
            return Err(JobError::TooLarge(bytes.len()));
        }
        let job: TileJob =
            serde_json::from_slice(bytes).map_err(|e| JobError::Json(e.to_string()))?;
        job.validate()?;
        Ok(job)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a tile job always serialises")
    }

    pub fn validate(&self) -> Result<(), JobError> {
        let bad = |s: String| Err(JobError::Invalid(s));
        if self.width == 0
            || self.height == 0
            || self.width > FRAME_SIDE_PX_MAX
            || self.height > FRAME_SIDE_PX_MAX
        {
            return bad(format!(
                "frame size {}x{} must be 1..={FRAME_SIDE_PX_MAX} each way",
                self.width, self.height
            ));
        }
        if !(self.x0 < self.x1
            && self.x1 <= self.width
            && self.y0 < self.y1
            && self.y1 <= self.height)
        {
            return bad(format!(
                "pixel rectangle x {}..{} y {}..{} is empty or outside the {}x{} frame",
                self.x0, self.x1, self.y0, self.y1, self.width, self.height
            ));
        }
        if self.pixels() > TILE_PX_MAX {
            return bad(format!("the tile has {} pixels, at most {TILE_PX_MAX}", self.pixels()));
        }
        if self.samples == 0 || self.samples > SAMPLES_MAX {
            return bad(format!("samples {} must be 1..={SAMPLES_MAX}", self.samples));
        }
        if self.seed > i32::MAX as u32 {
            return bad(format!("seed {} must be 0..={}", self.seed, i32::MAX));
        }
        if self.frame.unsigned_abs() > 1_048_574 {
            return bad(format!("frame {} is outside Blender's frame range", self.frame));
        }
        Ok(())
    }

    pub fn pixels(&self) -> u64 {
        u64::from(self.x1 - self.x0) * u64::from(self.y1 - self.y0)
    }

    /// The tile's cost in the article's fuel unit: pixel-samples.
    pub fn cost(&self) -> u64 {
        self.pixels() * u64::from(self.samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GOOD: &str = r#"{"frame":1,"width":160,"height":120,"x0":0,"y0":0,"x1":80,"y1":60,"samples":16,"seed":7}"#;

    fn check(json: &str, expected: Result<u64, &str>) {
        match (TileJob::from_json(json.as_bytes()), expected) {
            (Ok(job), Ok(cost)) => assert_eq!(job.cost(), cost, "{json}"),
            (Err(e), Err(needle)) => assert!(e.to_string().contains(needle), "{json}: {e}"),
            (got, want) => panic!("{json}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn jobs() {
        check(GOOD, Ok(80 * 60 * 16));
        check(&GOOD.replace("}", r#","denoise_data":true}"#), Ok(80 * 60 * 16));
        check(&GOOD.replace(r#""x1":80"#, r#""x1":0"#), Err("empty or outside"));
        check(&GOOD.replace(r#""x1":80"#, r#""x1":161"#), Err("empty or outside"));
        check(&GOOD.replace(r#""y1":60"#, r#""y1":121"#), Err("empty or outside"));
        check(&GOOD.replace(r#""samples":16"#, r#""samples":0"#), Err("samples 0"));
        check(&GOOD.replace(r#""seed":7"#, r#""seed":4294967295"#), Err("seed"));
        check(&GOOD.replace(r#""width":160"#, r#""width":0"#), Err("frame size"));
        check(&GOOD.replace(r#""seed":7"#, r#""seed":7,"script":"x""#), Err("does not parse"));
        check(&GOOD.replace(r#""seed":7"#, r#""seed":-1"#), Err("does not parse"));
        check(r#"{"frame":1}"#, Err("does not parse"));
        check(&" ".repeat(5000), Err("at most 4096"));
        check(
            r#"{"frame":1,"width":65536,"height":65536,"x0":0,"y0":0,"x1":65536,"y1":65536,"samples":1,"seed":0}"#,
            Err("pixels"),
        );
    }

    proptest! {
        #[test]
        fn valid_jobs_round_trip_and_stay_in_frame(
            w in 1u32..5000, h in 1u32..5000, a in 0u32..5000, b in 0u32..5000,
            c in 0u32..5000, d in 0u32..5000, samples in 1u32..100_000, seed in 0u32..=i32::MAX as u32,
        ) {
            let (x0, x1) = (a.min(b) % w, (a.max(b) % w) + 1);
            let (y0, y1) = (c.min(d) % h, (c.max(d) % h) + 1);
            let job = TileJob { frame: 1, width: w, height: h, x0, y0, x1, y1, samples, seed, denoise_data: false };
            match job.validate() {
                Ok(()) => {
                    prop_assert!(job.x1 <= w && job.y1 <= h && job.x0 < job.x1 && job.y0 < job.y1);
                    prop_assert_eq!(TileJob::from_json(&job.to_json()).unwrap(), job.clone());
                    prop_assert!(job.cost() >= u64::from(samples));
                }
                Err(e) => prop_assert!(x0 >= x1 || y0 >= y1 || job.pixels() > TILE_PX_MAX, "{e}"),
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = TileJob::from_json(&bytes);
        }
    }
}
