//! bitwrk-blender-bridge: the seller side of the Blender article. Renders one tile of a
//! packed .blend per call in a confined Blender, keeping one warm Blender per scene so
//! further tiles of the same scene skip start-up and scene loading.
//!
//! Code map: `job` (the tile job, pure), `article` (manifest per Blender version),
//! `confine` (namespaces, Landlock, seccomp, rlimits), `worker` (one warm Blender and
//! its driver script `driver.py`), this module (`Bridge`: the pool and the API the host
//! calls). **Architecture invariant:** no Python from the .blend runs: Blender starts with
//! `--factory-startup --disable-autoexec` and runs only the bridge's driver script.

pub mod article;
pub mod bench;
pub mod confine;
pub mod job;
pub mod limits;
pub mod worker;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bitwrk_protocol::{Hash32, Manifest, ReasonCode};
use cap_std::fs::Dir;

use crate::article::{INPUT_JOB, INPUT_SCENE, OUTPUT_TILE};
use crate::confine::{Confinement, ProcLimits};
use crate::job::TileJob;
use crate::limits::*;
use crate::worker::{Worker, WorkerSettings};

/// How the bridge runs Blender. `new` fills the limits from the article manifest.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// The Blender executable.
    pub blender: PathBuf,
    /// Where per-scene work directories are made (created if missing).
    pub work_root: PathBuf,
    /// Render threads per Blender. 1 keeps tiles bit-exact to a full render (with more
    /// threads ~1 % of pixels differ by float rounding); run more tiles in parallel instead.
    pub threads: u32,
    /// Warm Blender processes kept at most (also the most tiles rendered at once).
    pub warm_max: usize,
    /// Address-space limit per Blender.
    pub memory_bytes: u64,
    /// Wall time per tile.
    pub tile_wall: Duration,
    /// Fail `new` unless every confinement layer is available.
    pub require_all_layers: bool,
}

impl BridgeConfig {
    pub fn new(blender: impl Into<PathBuf>, work_root: impl Into<PathBuf>) -> BridgeConfig {
        let m = article::manifest_for("0.0").expect("the built-in article.toml is valid");
        BridgeConfig {
            blender: blender.into(),
            work_root: work_root.into(),
            threads: 1,
            warm_max: WARM_PROCESSES_MAX,
            memory_bytes: m.limits.memory_bytes,
            tile_wall: Duration::from_millis(m.limits.wall_ms),
            require_all_layers: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("blender at {path} cannot be run: {source}")]
    Blender { path: PathBuf, source: std::io::Error },
    #[error("cannot tell the Blender version from `blender --version`: {0}")]
    Version(String),
    #[error("work root {path}: {source}")]
    WorkRoot { path: PathBuf, source: std::io::Error },
    #[error("confinement layers missing on this machine: {0}")]
    Confinement(String),
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// A refused or failed tile, with the reason code the buyer gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError {
    pub reason: ReasonCode,
    pub message: String,
}

impl RenderError {
    pub fn new(reason: ReasonCode, message: String) -> RenderError {
        RenderError { reason, message }
    }
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

impl std::error::Error for RenderError {}

/// Scenes refused recently, so further tiles of them are refused at once.
const REFUSED_REMEMBERED: usize = 64;

struct Pool {
    idle: Vec<Worker>,
    busy: usize,
    refused: Vec<(Hash32, RenderError)>,
}

/// The seller side of the Blender article. Send + Sync: call `render` from many threads.
pub struct Bridge {
    cfg: BridgeConfig,
    version: String,
    manifest: Manifest,
    confinement: Confinement,
    root: Arc<Dir>,
    pool: Mutex<Pool>,
    freed: Condvar,
    counter: AtomicU64,
}

impl Bridge {
    /// Probe the confinement layers, detect the Blender version (`blender --version`,
    /// itself run confined) and log the active layers.
    pub fn new(cfg: BridgeConfig) -> Result<Bridge, BridgeError> {
        if cfg.threads == 0 || cfg.warm_max == 0 {
            return Err(BridgeError::Config("threads and warm_max must be at least 1".into()));
        }
        let root = worker::open_root(&cfg.work_root)
            .map_err(|source| BridgeError::WorkRoot { path: cfg.work_root.clone(), source })?;
        let work_root = cfg
            .work_root
            .canonicalize()
            .map_err(|source| BridgeError::WorkRoot { path: cfg.work_root.clone(), source })?;
        let confinement = Confinement::probe();
        let missing = confinement.missing();
        if cfg.require_all_layers && !missing.is_empty() {
            return Err(BridgeError::Confinement(missing.join(", ")));
        }
        let version =
            detect_version(&cfg.blender, &root, &work_root, &confinement, cfg.memory_bytes)?;
        let manifest =
            article::manifest_for(&version).map_err(|e| BridgeError::Version(e.to_string()))?;
        let layers = confinement.layers();
        tracing::info!(
            blender = %cfg.blender.display(), %version, article = %manifest.id(),
            layers = ?layers, missing = ?missing, "blender bridge ready"
        );
        let mut cfg = cfg;
        cfg.work_root = work_root;
        Ok(Bridge {
            cfg,
            version,
            manifest,
            confinement,
            root: Arc::new(root),
            pool: Mutex::new(Pool { idle: Vec::new(), busy: 0, refused: Vec::new() }),
            freed: Condvar::new(),
            counter: AtomicU64::new(0),
        })
    }

    /// Blender `major.minor`, e.g. "3.4".
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The blender-cycles article for this Blender version.
    pub fn manifest(&self) -> Manifest {
        self.manifest.clone()
    }

    pub fn active_layers(&self) -> Vec<String> {
        self.confinement.layers()
    }

    /// Render one tile. Blocking. `inputs` named as the manifest declares (`scene`,
    /// `job`); returns the one declared output (`tile`, an OpenEXR file).
    pub fn render(
        &self,
        inputs: Vec<(String, Vec<u8>)>,
    ) -> Result<Vec<(String, Vec<u8>)>, RenderError> {
        let (scene, job) = self.check_inputs(inputs)?;
        let (tile, _) = self.render_job(&scene, &job)?;
        Ok(vec![(OUTPUT_TILE.to_string(), tile)])
    }

    /// Render one tile of a parsed job; also returns the CPU seconds Blender reported.
    pub fn render_job(&self, scene: &[u8], job: &TileJob) -> Result<(Vec<u8>, f64), RenderError> {
        if job.cost() > self.manifest.limits.fuel {
            return Err(RenderError::new(
                ReasonCode::FuelExhausted,
                format!(
                    "the tile costs {} pixel-samples ({} px x {} samples), at most {}",
                    job.cost(),
                    job.pixels(),
                    job.samples,
                    self.manifest.limits.fuel
                ),
            ));
        }
        let scene_hash = Hash32::of(scene);
        let started = Instant::now();
        let mut w = self.checkout(scene_hash, scene)?;
        if (job.width, job.height) != (w.info.width, w.info.height) {
            let e = RenderError::new(
                ReasonCode::BadInput,
                format!(
                    "the job is for a {}x{} frame, the scene renders {}x{}",
                    job.width, job.height, w.info.width, w.info.height
                ),
            );
            self.checkin(w);
            return Err(e);
        }
        let result = w.render(job);
        if let Err(e) = &result
            && e.reason != ReasonCode::BadInput
        {
            // Only a refused job leaves the Blender in a known state; anything else ends it.
            w.kill();
        }
        match &result {
            Ok((tile, cpu_s)) => tracing::info!(
                scene = %scene_hash, pid = w.pid(), tiles = w.tiles, bytes = tile.len(),
                tile_sha256 = %Hash32::of(tile), cpu_s, wall_ms = started.elapsed().as_millis() as u64, "tile rendered"
            ),
            Err(e) => {
                tracing::warn!(scene = %scene_hash, reason = %e.reason, message = %e.message, "tile failed")
            }
        }
        self.checkin(w);
        result
    }

    fn check_inputs(
        &self,
        inputs: Vec<(String, Vec<u8>)>,
    ) -> Result<(Vec<u8>, TileJob), RenderError> {
        let bad = |m: String| Err(RenderError::new(ReasonCode::BadInput, m));
        let mut scene = None;
        let mut job = None;
        for (name, data) in inputs {
            let Some(decl) = self.manifest.input(&name) else {
                return bad(format!("input {name:?} is not declared by the article"));
            };
            if data.len() as u64 > decl.max_bytes {
                return bad(format!(
                    "input {name:?} is {} bytes, at most {}",
                    data.len(),
                    decl.max_bytes
                ));
            }
            let slot = if name == INPUT_SCENE { &mut scene } else { &mut job };
            if slot.replace(data).is_some() {
                return bad(format!("input {name:?} is given twice"));
            }
        }
        let (Some(scene), Some(job)) = (scene, job) else {
            return bad(format!("inputs {INPUT_SCENE:?} and {INPUT_JOB:?} are both required"));
        };
        let job = TileJob::from_json(&job)
            .map_err(|e| RenderError::new(ReasonCode::BadInput, e.to_string()))?;
        Ok((scene, job))
    }

    /// A ready worker for the scene: a warm one, or a new one (waiting while all
    /// `warm_max` are busy, ending the least recently used idle one when full).
    fn checkout(&self, scene_hash: Hash32, scene: &[u8]) -> Result<Worker, RenderError> {
        let mut retire = Vec::new();
        let mut pool = self.pool.lock().expect("pool lock");
        if let Some((_, e)) = pool.refused.iter().find(|(h, _)| *h == scene_hash) {
            return Err(e.clone());
        }
        loop {
            // End idle workers that waited too long or cannot take another tile.
            let (keep, old): (Vec<Worker>, Vec<Worker>) = std::mem::take(&mut pool.idle)
                .into_iter()
                .partition(|w| w.last_used.elapsed() < WARM_IDLE_MAX && w.can_take_tile());
            pool.idle = keep;
            retire.extend(old);
            if let Some(i) = pool.idle.iter().position(|w| w.scene == scene_hash) {
                let w = pool.idle.swap_remove(i);
                pool.busy += 1;
                drop(pool);
                drop(retire);
                return Ok(w);
            }
            if pool.idle.len() + pool.busy < self.cfg.warm_max {
                break;
            }
            if let Some(lru) = (0..pool.idle.len()).min_by_key(|&i| pool.idle[i].last_used) {
                retire.push(pool.idle.swap_remove(lru));
                break;
            }
            pool = self.freed.wait(pool).expect("pool lock");
        }
        pool.busy += 1;
        drop(pool);
        drop(retire); // ends those processes outside the lock
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let dir_name = format!("scene-{}-{}-{n}", &scene_hash.to_hex()[..16], std::process::id());
        let settings = WorkerSettings {
            blender: self.cfg.blender.clone(),
            threads: self.cfg.threads,
            memory_bytes: self.cfg.memory_bytes,
            tile_wall: self.cfg.tile_wall,
            output_bytes_max: self
                .manifest
                .output(OUTPUT_TILE)
                .map(|d| d.max_bytes)
                .unwrap_or(1 << 20),
        };
        let started = Instant::now();
        let result = Worker::start(
            self.root.clone(),
            &self.cfg.work_root,
            dir_name,
            scene_hash,
            scene,
            settings,
            &self.confinement,
        );
        match result {
            Ok(w) => {
                tracing::info!(scene = %scene_hash, pid = w.pid(), start_ms = started.elapsed().as_millis() as u64, "blender started");
                Ok(w)
            }
            Err(e) => {
                let mut pool = self.pool.lock().expect("pool lock");
                pool.busy -= 1;
                // A scene the policy refused stays refused; crashes and timeouts may be
                // the machine's fault and are tried again.
                if matches!(
                    e.reason,
                    ReasonCode::BadInput | ReasonCode::Unsupported | ReasonCode::FuelExhausted
                ) {
                    if pool.refused.len() >= REFUSED_REMEMBERED {
                        pool.refused.remove(0);
                    }
                    pool.refused.push((scene_hash, e.clone()));
                }
                drop(pool);
                self.freed.notify_all();
                tracing::warn!(scene = %scene_hash, reason = %e.reason, message = %e.message, "scene refused");
                Err(e)
            }
        }
    }

    fn checkin(&self, w: Worker) {
        let mut pool = self.pool.lock().expect("pool lock");
        pool.busy -= 1;
        let dead = if w.alive() {
            pool.idle.push(w);
            None
        } else {
            Some(w)
        };
        drop(pool);
        self.freed.notify_all();
        drop(dead);
    }

    /// Process ids of the warm Blenders (for tests and the bench).
    pub fn warm_pids(&self) -> Vec<u32> {
        self.pool.lock().map(|p| p.idle.iter().map(Worker::pid).collect()).unwrap_or_default()
    }

    /// CPU seconds used so far by the warm Blenders.
    pub fn warm_cpu_seconds(&self) -> f64 {
        self.pool
            .lock()
            .map(|p| p.idle.iter().filter_map(Worker::cpu_seconds).sum())
            .unwrap_or_default()
    }

    /// End every warm Blender now.
    pub fn shutdown(&self) {
        let idle = self.pool.lock().map(|mut p| std::mem::take(&mut p.idle)).unwrap_or_default();
        drop(idle);
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Run `blender --version` under the same confinement as the renders.
fn detect_version(
    blender: &Path,
    root: &Dir,
    root_path: &Path,
    confinement: &Confinement,
    memory_bytes: u64,
) -> Result<String, BridgeError> {
    let io_err = |source| BridgeError::Blender { path: blender.to_path_buf(), source };
    let name = format!("probe-{}", std::process::id());
    let _ = root.remove_dir_all(&name);
    root.create_dir(&name).map_err(io_err)?;
    let rw = root_path.join(&name);
    let mut cmd = Command::new(blender);
    cmd.arg("--version").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    let limits = ProcLimits {
        address_space_bytes: memory_bytes,
        cpu_s: VERSION_WALL.as_secs(),
        cpu_hard_s: VERSION_WALL.as_secs(),
        file_size_bytes: 1 << 20,
        open_files: OPEN_FILES_MAX,
    };
    let result = (|| {
        let ruleset =
            confinement.apply(&mut cmd, blender, &[], &rw, limits, None).map_err(io_err)?;
        let mut child = cmd.spawn().map_err(io_err)?;
        drop(ruleset);
        let mut out = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = (&mut out).take(1 << 16).read_to_end(&mut s);
            let _ = tx.send(s);
        });
        let out = match rx.recv_timeout(VERSION_WALL) {
            Ok(s) => s,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(BridgeError::Version(format!(
                    "no answer within {} s",
                    VERSION_WALL.as_secs()
                )));
            }
        };
        let status = child.wait().map_err(io_err)?;
        let text = String::from_utf8_lossy(&out).into_owned();
        article::parse_version(&text).ok_or_else(|| {
            BridgeError::Version(format!(
                "{status}; output: {:?}",
                text.chars().take(300).collect::<String>()
            ))
        })
    })();
    let _ = root.remove_dir_all(&name);
    result
}
