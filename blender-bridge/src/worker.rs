//! One confined, warm Blender process holding one scene: started with the driver
//! script, checked against the policy once, then fed tile jobs over stdin; replies come
//! on a dedicated pipe (fd 3), the tile from a fixed path in its work directory.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitwrk_protocol::{Hash32, ReasonCode};
use cap_std::ambient_authority;
use cap_std::fs::Dir;

use crate::RenderError;
use crate::confine::{Confinement, ProcLimits};
use crate::job::TileJob;
use crate::limits::*;

/// The driver script, written into each work directory.
pub const DRIVER_PY: &str = include_str!("driver.py");
/// Blender's exit code when the driver script raises (`--python-exit-code`).
const DRIVER_EXIT_CODE: i32 = 17;
const OUT_FILE: &str = "rw/out/tile.exr";
const LOADING: &str = "loading the scene";
const EXR_MAGIC: [u8; 4] = [0x76, 0x2f, 0x31, 0x01];

/// What the scene reported when it passed the policy check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct SceneInfo {
    pub version: String,
    pub width: u32,
    pub height: u32,
    pub frame_start: i32,
    pub frame_end: i32,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reply {
    Ready(SceneInfo),
    Done { cpu_s: f64 },
    Refused { reason: String, message: String },
}

enum Event {
    Reply(Reply),
    Garbage(String),
    Eof,
}

/// Settings a worker needs from the bridge.
#[derive(Clone)]
pub struct WorkerSettings {
    pub blender: PathBuf,
    pub threads: u32,
    pub memory_bytes: u64,
    pub tile_wall: Duration,
    pub output_bytes_max: u64,
}

/// A running, ready Blender with one scene loaded.
pub struct Worker {
    pub scene: Hash32,
    pub info: SceneInfo,
    pub last_used: Instant,
    /// Rendered tiles, for logs.
    pub tiles: u64,
    child: Child,
    stdin: Option<ChildStdin>,
    events: Receiver<Event>,
    log: Arc<Mutex<LogTail>>,
    root: Arc<Dir>,
    dir_name: String,
    dir: Dir,
    settings: WorkerSettings,
    /// False once the process is gone or in an unknown state.
    alive: bool,
}

impl Worker {
    /// Start Blender on `scene` in a fresh work directory `dir_name` under `root` and
    /// wait for the policy check. A refusal or a crash is the scene's result.
    pub fn start(
        root: Arc<Dir>,
        root_path: &Path,
        dir_name: String,
        scene_hash: Hash32,
        scene: &[u8],
        settings: WorkerSettings,
        confinement: &Confinement,
    ) -> Result<Worker, RenderError> {
        let internal = |what: &str, e: std::io::Error| {
            RenderError::new(ReasonCode::Internal, format!("{what}: {e}"))
        };
        root.create_dir(&dir_name).map_err(|e| internal("creating the work dir", e))?;
        let dir = root.open_dir(&dir_name).map_err(|e| internal("opening the work dir", e))?;
        let cleanup = |e: RenderError| {
            let _ = root.remove_dir_all(&dir_name);
            e
        };
        for d in ["in", "rw", "rw/home", "rw/tmp", "rw/out"] {
            dir.create_dir(d).map_err(|e| cleanup(internal("creating the work dir", e)))?;
        }
        dir.write("in/scene.blend", scene)
            .map_err(|e| cleanup(internal("writing the scene", e)))?;
        dir.write("in/driver.py", DRIVER_PY)
            .map_err(|e| cleanup(internal("writing the driver", e)))?;
        let path = root_path.join(&dir_name);
        match Self::spawn(
            root.clone(),
            path,
            dir_name.clone(),
            dir,
            scene_hash,
            settings,
            confinement,
        ) {
            Ok(w) => Ok(w),
            Err(e) => Err(cleanup(e)),
        }
    }

    fn spawn(
        root: Arc<Dir>,
        path: PathBuf,
        dir_name: String,
        dir: Dir,
        scene_hash: Hash32,
        settings: WorkerSettings,
        confinement: &Confinement,
    ) -> Result<Worker, RenderError> {
        let internal = |what: &str, e: std::io::Error| {
            RenderError::new(ReasonCode::Internal, format!("{what}: {e}"))
        };
        let ro = path.join("in");
        let rw = path.join("rw");
        let args = serde_json::json!({
            "out_path": path.join(OUT_FILE),
            "scene_path": ro.join("scene.blend"),
            "faces_max": SCENE_FACES_MAX,
            "particles_max": SCENE_PARTICLES_MAX,
            "threads": settings.threads,
        });
        let mut cmd = Command::new(&settings.blender);
        cmd.args(["-b", "--factory-startup", "--disable-autoexec", "-noaudio", "-t"])
            .arg(settings.threads.to_string())
            .arg(ro.join("scene.blend"))
            .args(["--python-exit-code", &DRIVER_EXIT_CODE.to_string(), "--python"])
            .arg(ro.join("driver.py"))
            .arg("--")
            .arg(args.to_string())
            .current_dir(&rw);
        let (reply_r, reply_w) = std::io::pipe().map_err(|e| internal("pipe", e))?;
        let (log_r, log_w) = std::io::pipe().map_err(|e| internal("pipe", e))?;
        cmd.stdin(Stdio::piped())
            .stdout(log_w.try_clone().map_err(|e| internal("pipe", e))?)
            .stderr(log_w);
        let limits = ProcLimits {
            address_space_bytes: settings.memory_bytes,
            cpu_s: STARTUP_CPU_S,
            cpu_hard_s: WARM_CPU_S_MAX,
            file_size_bytes: settings.output_bytes_max,
            open_files: OPEN_FILES_MAX,
        };
        let ruleset = confinement
            .apply(&mut cmd, &settings.blender, &[&ro], &rw, limits, Some(reply_w.as_raw_fd()))
            .map_err(|e| internal("preparing confinement", e))?;
        let mut child = cmd
            .spawn()
            .map_err(|e| internal(&format!("starting {}", settings.blender.display()), e))?;
        drop(cmd); // closes the parent's copies of the write ends
        drop(ruleset);
        drop(reply_w);
        let log = Arc::new(Mutex::new(LogTail::default()));
        {
            let log = log.clone();
            std::thread::spawn(move || drain_log(log_r, &log));
        }
        let (tx, events) = mpsc::sync_channel(4);
        std::thread::spawn(move || read_replies(reply_r, tx));
        let stdin = child.stdin.take();
        let mut w = Worker {
            scene: scene_hash,
            info: SceneInfo {
                version: String::new(),
                width: 0,
                height: 0,
                frame_start: 0,
                frame_end: 0,
            },
            last_used: Instant::now(),
            tiles: 0,
            child,
            stdin,
            events,
            log,
            root,
            dir_name,
            dir,
            settings,
            alive: true,
        };
        match w.wait_event(STARTUP_WALL, LOADING)? {
            Reply::Ready(info) => {
                tracing::info!(scene = %w.scene, pid = w.child.id(), width = info.width, height = info.height, "warm blender ready");
                w.info = info;
                Ok(w)
            }
            Reply::Refused { reason, message } => {
                w.kill();
                Err(RenderError::new(reason.parse().unwrap_or(ReasonCode::Internal), message))
            }
            Reply::Done { .. } => {
                w.kill();
                Err(RenderError::new(ReasonCode::Internal, "driver answered out of turn".into()))
            }
        }
    }

    pub fn alive(&self) -> bool {
        self.alive
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU seconds the process has used so far.
    pub fn cpu_seconds(&self) -> Option<f64> {
        proc_cpu_seconds(self.child.id())
    }

    /// Whether the process's life CPU budget still covers one more tile.
    pub fn can_take_tile(&self) -> bool {
        self.alive
            && self
                .cpu_seconds()
                .is_some_and(|u| u + self.tile_cpu_budget() as f64 <= WARM_CPU_S_MAX as f64)
    }

    fn tile_cpu_budget(&self) -> u64 {
        self.settings.tile_wall.as_secs() * u64::from(self.settings.threads) + TILE_CPU_SLACK_S
    }

    /// Render one tile; the EXR bytes, size-checked and with the EXR signature.
    pub fn render(&mut self, job: &TileJob) -> Result<(Vec<u8>, f64), RenderError> {
        self.last_used = Instant::now();
        let internal = |what: &str, e: std::io::Error| {
            RenderError::new(ReasonCode::Internal, format!("{what}: {e}"))
        };
        match self.dir.remove_file(OUT_FILE) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(internal("clearing the output", e)),
        }
        // Per-tile CPU limit: move the soft RLIMIT_CPU to what is used plus this tile.
        let used = self.cpu_seconds().unwrap_or(0.0).ceil() as u64;
        let soft = (used + self.tile_cpu_budget()).min(WARM_CPU_S_MAX);
        set_cpu_soft_limit(self.child.id(), soft, WARM_CPU_S_MAX)
            .map_err(|e| internal("setting the CPU limit", e))?;
        let mut line = job.to_json();
        line.push(b'\n');
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(RenderError::new(ReasonCode::Internal, "blender is gone".into()));
        };
        if let Err(e) = stdin.write_all(&line).and_then(|_| stdin.flush()) {
            // The process ended; its exit says why.
            self.alive = false;
            return Err(self.death(&format!("sending the job: {e}")));
        }
        let reply = self.wait_event(self.settings.tile_wall, "rendering the tile")?;
        match reply {
            Reply::Done { cpu_s } => {
                self.tiles += 1;
                let bytes = self.take_output()?;
                Ok((bytes, cpu_s))
            }
            Reply::Refused { reason, message } => {
                let reason = reason.parse().unwrap_or(ReasonCode::Internal);
                if reason == ReasonCode::Internal {
                    self.kill();
                }
                Err(RenderError::new(reason, message))
            }
            Reply::Ready(_) => {
                self.kill();
                Err(RenderError::new(ReasonCode::Internal, "driver answered out of turn".into()))
            }
        }
    }

    /// Read the tile from the fixed output path inside the work dir (cap-std: a symlink
    /// planted there cannot lead outside), refusing anything but a regular EXR file
    /// within the output limit.
    fn take_output(&mut self) -> Result<Vec<u8>, RenderError> {
        let internal = |what: &str, e: std::io::Error| {
            RenderError::new(ReasonCode::Internal, format!("{what}: {e}"))
        };
        let meta =
            self.dir.symlink_metadata(OUT_FILE).map_err(|e| internal("the tile output", e))?;
        if !meta.is_file() {
            self.kill();
            return Err(RenderError::new(
                ReasonCode::Internal,
                "the tile output is not a regular file".into(),
            ));
        }
        if meta.len() > self.settings.output_bytes_max {
            return Err(RenderError::new(
                ReasonCode::OutputTooLarge,
                format!(
                    "the tile is {} bytes, at most {}",
                    meta.len(),
                    self.settings.output_bytes_max
                ),
            ));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        self.dir
            .open(OUT_FILE)
            .and_then(|f| {
                f.into_std().take(self.settings.output_bytes_max + 1).read_to_end(&mut bytes)
            })
            .map_err(|e| internal("reading the tile", e))?;
        if bytes.len() as u64 > self.settings.output_bytes_max {
            return Err(RenderError::new(
                ReasonCode::OutputTooLarge,
                "the tile grew past the output limit".into(),
            ));
        }
        if bytes.len() < 8 || bytes[..4] != EXR_MAGIC {
            return Err(RenderError::new(
                ReasonCode::Internal,
                "the tile output is not an OpenEXR file".into(),
            ));
        }
        let _ = self.dir.remove_file(OUT_FILE);
        Ok(bytes)
    }

    fn wait_event(&mut self, wall: Duration, what: &str) -> Result<Reply, RenderError> {
        match self.events.recv_timeout(wall) {
            Ok(Event::Reply(r)) => Ok(r),
            Ok(Event::Garbage(g)) => {
                self.kill();
                Err(RenderError::new(
                    ReasonCode::Internal,
                    format!("driver sent an unreadable reply while {what}: {g}"),
                ))
            }
            Ok(Event::Eof) | Err(RecvTimeoutError::Disconnected) => {
                self.alive = false;
                Err(self.death(what))
            }
            Err(RecvTimeoutError::Timeout) => {
                tracing::warn!(
                    pid = self.child.id(),
                    ?wall,
                    what,
                    "wall-clock limit: killing blender"
                );
                self.kill();
                Err(RenderError::new(
                    ReasonCode::Timeout,
                    format!("{what} took longer than {} s", wall.as_secs()),
                ))
            }
        }
    }

    /// The process is gone (reply pipe closed): reap it and say why it died.
    fn death(&mut self, what: &str) -> RenderError {
        self.stdin = None;
        let status = self.child.wait();
        self.alive = false;
        let tail = self.log.lock().map(|l| l.text()).unwrap_or_default();
        // The most telling line: the last error Blender printed, else its last line.
        let last = tail
            .lines()
            .rev()
            .find(|l| l.contains("Error") || l.contains("error"))
            .or_else(|| tail.lines().rev().find(|l| !l.trim().is_empty()))
            .unwrap_or("")
            .to_string();
        match status {
            Ok(s) => exit_reason(s, what, &last),
            Err(e) => RenderError::new(
                ReasonCode::Internal,
                format!("blender vanished while {what}: {e}"),
            ),
        }
    }

    /// End the process (by its id and process group, which the bridge created) and reap it.
    pub fn kill(&mut self) {
        self.stdin = None;
        if self.alive {
            let pid = self.child.id() as libc::pid_t;
            // SAFETY: signals our own child's process group (pgid == pid by process_group(0)).
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        self.alive = false;
    }

    /// The last lines Blender printed (for diagnostics).
    pub fn log_tail(&self) -> String {
        self.log.lock().map(|l| l.text()).unwrap_or_default()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing stdin lets an idle driver exit cleanly; then make sure.
        self.stdin = None;
        self.kill();
        if let Err(e) = self.root.remove_dir_all(&self.dir_name) {
            tracing::warn!(dir = %self.dir_name, error = %e, "could not remove work dir");
        }
    }
}

fn exit_reason(s: ExitStatus, what: &str, last_line: &str) -> RenderError {
    use std::os::unix::process::ExitStatusExt;
    if let Some(sig) = s.signal() {
        let (reason, why) = match sig {
            libc::SIGXCPU => (ReasonCode::FuelExhausted, "the CPU time limit".to_string()),
            libc::SIGXFSZ => (ReasonCode::OutputTooLarge, "the file size limit".to_string()),
            libc::SIGKILL => (ReasonCode::Timeout, "SIGKILL (a limit)".to_string()),
            // Blender aborts or segfaults when it runs out of address space.
            libc::SIGSEGV | libc::SIGABRT | libc::SIGBUS => {
                (ReasonCode::MemoryExceeded, format!("signal {sig} (most likely the memory limit)"))
            }
            _ => (ReasonCode::Trap, format!("signal {sig}")),
        };
        return RenderError::new(
            reason,
            format!("blender died while {what}: {why}; last output: {last_line}"),
        );
    }
    let code = s.code().unwrap_or(-1);
    if code == DRIVER_EXIT_CODE {
        return RenderError::new(
            ReasonCode::Internal,
            format!("the driver script failed while {what}; last output: {last_line}"),
        );
    }
    if what == LOADING {
        // Blender leaves before running the driver only when the file does not load.
        return RenderError::new(
            ReasonCode::BadInput,
            format!(
                "the scene is not a readable .blend file (blender exited with code {code}: {last_line})"
            ),
        );
    }
    RenderError::new(
        ReasonCode::Trap,
        format!("blender exited with code {code} while {what}; last output: {last_line}"),
    )
}

fn read_replies(r: std::io::PipeReader, tx: mpsc::SyncSender<Event>) {
    let mut reader = BufReader::new(r);
    loop {
        let mut line = Vec::new();
        match (&mut reader).take(REPLY_LINE_BYTES_MAX as u64).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let ev = if line.last() != Some(&b'\n') {
                    Event::Garbage(format!("reply line longer than {REPLY_LINE_BYTES_MAX} bytes"))
                } else {
                    match serde_json::from_slice::<Reply>(&line) {
                        Ok(r) => Event::Reply(r),
                        Err(e) => Event::Garbage(e.to_string()),
                    }
                };
                let garbage = matches!(ev, Event::Garbage(_));
                if tx.send(ev).is_err() || garbage {
                    return;
                }
            }
        }
    }
    let _ = tx.send(Event::Eof);
}

/// The last `LOG_TAIL_BYTES` of Blender's stdout and stderr.
#[derive(Default)]
struct LogTail {
    buf: std::collections::VecDeque<u8>,
}

impl LogTail {
    fn push(&mut self, data: &[u8]) {
        self.buf.extend(data);
        let extra = self.buf.len().saturating_sub(LOG_TAIL_BYTES);
        self.buf.drain(..extra);
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.iter().copied().collect::<Vec<u8>>()).into_owned()
    }
}

fn drain_log(mut r: std::io::PipeReader, log: &Mutex<LogTail>) {
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if let Ok(mut l) = log.lock() {
                    l.push(&buf[..n]);
                }
            }
        }
    }
}

/// User + system CPU seconds of a process, from /proc/<pid>/stat.
pub fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After "pid (comm) " the fields start at "state" (field 3); utime is 14, stime 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks)
}

fn set_cpu_soft_limit(pid: u32, soft: u64, hard: u64) -> std::io::Result<()> {
    let lim = libc::rlimit { rlim_cur: soft, rlim_max: hard };
    // SAFETY: prlimit on our own child with a stack value; old limit not requested.
    let rc =
        unsafe { libc::prlimit(pid as libc::pid_t, libc::RLIMIT_CPU, &lim, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Open `path` as a capability directory (used for the work root).
pub fn open_root(path: &Path) -> std::io::Result<Dir> {
    std::fs::create_dir_all(path)?;
    Dir::open_ambient_dir(path, ambient_authority())
}
