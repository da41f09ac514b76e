//! Every number the bridge enforces, in one place, with the reason for it.

use std::time::Duration;

/// Largest frame side the tile job may name (Blender's own cap is 65536).
pub const FRAME_SIDE_PX_MAX: u32 = 65_536;
/// Most pixels in one tile: 4096x4096 keeps one tile's EXR (4 float channels and the
/// denoising passes) under the article's 512 MiB output cap.
pub const TILE_PX_MAX: u64 = 4096 * 4096;
/// Most samples per pixel a job may ask for (Cycles' UI cap is 2^24).
pub const SAMPLES_MAX: u32 = 1 << 24;
/// Largest tile job JSON (also the manifest's `max_bytes` for `job`).
pub const JOB_BYTES_MAX: usize = 4096;

/// Faces the scene may have after subdivision/array modifiers, estimated before
/// anything is evaluated: beyond this, evaluating the scene alone can take minutes and
/// gigabytes (a cube with subdivision level 11 is 25 M faces).
pub const SCENE_FACES_MAX: u64 = 20_000_000;
/// Particles (with rendered children) the scene may have, for the same reason.
pub const SCENE_PARTICLES_MAX: u64 = 10_000_000;

/// Open files for Blender: it opens its data files, Python modules and one output.
pub const OPEN_FILES_MAX: u64 = 512;
/// CPU seconds Blender may spend loading and checking a scene before it is ready.
pub const STARTUP_CPU_S: u64 = 60;
/// Wall time for start-up and the policy check, before the first tile.
pub const STARTUP_WALL: Duration = Duration::from_secs(120);
/// CPU seconds granted on top of `wall_ms x threads` per tile (scene sync, EXR write).
pub const TILE_CPU_SLACK_S: u64 = 30;
/// CPU seconds one warm Blender may use over its life (the hard RLIMIT_CPU). The soft
/// limit is moved to "used + one tile's budget" before each tile; a process whose life
/// budget cannot cover another tile is replaced by a fresh one.
pub const WARM_CPU_S_MAX: u64 = 4 * 3600;

/// Warm Blender processes kept at most (each holds a scene in memory, ~0.3-1 GB).
pub const WARM_PROCESSES_MAX: usize = 2;
/// A warm process unused this long is ended at the next call.
pub const WARM_IDLE_MAX: Duration = Duration::from_secs(300);

/// Bytes of Blender's own output kept for error messages.
pub const LOG_TAIL_BYTES: usize = 16 * 1024;
/// Longest reply line the driver may send on its reply pipe.
pub const REPLY_LINE_BYTES_MAX: usize = 64 * 1024;
/// Time `blender --version` may take.
pub const VERSION_WALL: Duration = Duration::from_secs(30);
