//! The sandbox that runs `wasm` articles: wasmtime with the component model, one engine per
//! float mode, compiled components cached on disk by module hash, the pooling allocator,
//! and per run a fresh store with fuel, memory, stack and wall-clock limits, frozen clocks,
//! seeded random and no filesystem or network. Every way a run can end badly becomes a
//! PROTOCOL §4 reason code; nothing a guest does ends the host.

use std::collections::VecDeque;
use std::hash::{Hash as _, Hasher as _};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

use bitwrk_protocol::manifest::Runtime;
use bitwrk_protocol::{Hash32, Manifest, ReasonCode};
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use wasmtime::component::{Component, HasData, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig, Store, Trap,
};
use wasmtime_wasi::cli::{WasiCli, WasiCliView as _};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView as _};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};

use crate::contract::{check_inputs, check_outputs, random_seed};
use crate::error::{RunError, RuntimeError};
use crate::limits;
use crate::log::{LogBuffer, LogPipe};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../guest-sdk/wit",
        world: "article",
        exports: { default: async },
    });
}

/// How the sandbox is set up. `SandboxConfig::new(cache_dir)` gives the defaults.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where compiled components are kept (created 0700 if missing).
    pub cache_dir: PathBuf,
    /// Runs at once; more callers wait for a free slot. Sizes the instance pool.
    pub max_concurrent_instances: u32,
    /// The wasm stack of each run.
    pub wasm_stack_bytes: usize,
    /// Which CPU features Cranelift may use.
    pub cpu_features: CpuFeatures,
}

impl SandboxConfig {
    pub fn new(cache_dir: impl Into<PathBuf>) -> SandboxConfig {
        SandboxConfig {
            cache_dir: cache_dir.into(),
            max_concurrent_instances: limits::DEFAULT_CONCURRENT_INSTANCES,
            wasm_stack_bytes: limits::WASM_STACK_BYTES,
            cpu_features: CpuFeatures::Host,
        }
    }
}

/// The CPU features the sandbox compiles guests for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuFeatures {
    /// Every feature this CPU has (wasmtime's default): what sellers run with.
    Host,
    /// Exactly the features this binary itself was compiled for (rustc's target features;
    /// baseline x86-64 unless built with `-C target-cpu=…`), so that a guest and native
    /// code of the same binary are compared like with like (the runtime bench).
    AsCompiled,
}

/// x86-64 features: rustc's `target_feature` name, Cranelift's flag, and whether this
/// binary was compiled with it. The ones Cranelift's x64 backend knows.
#[cfg(target_arch = "x86_64")]
const X86_FEATURES: &[(&str, &str, bool)] = &[
    ("sse3", "has_sse3", cfg!(target_feature = "sse3")),
    ("ssse3", "has_ssse3", cfg!(target_feature = "ssse3")),
    ("cmpxchg16b", "has_cmpxchg16b", cfg!(target_feature = "cmpxchg16b")),
    ("sse4.1", "has_sse41", cfg!(target_feature = "sse4.1")),
    ("sse4.2", "has_sse42", cfg!(target_feature = "sse4.2")),
    ("popcnt", "has_popcnt", cfg!(target_feature = "popcnt")),
    ("avx", "has_avx", cfg!(target_feature = "avx")),
    ("avx2", "has_avx2", cfg!(target_feature = "avx2")),
    ("fma", "has_fma", cfg!(target_feature = "fma")),
    ("bmi1", "has_bmi1", cfg!(target_feature = "bmi1")),
    ("bmi2", "has_bmi2", cfg!(target_feature = "bmi2")),
    ("lzcnt", "has_lzcnt", cfg!(target_feature = "lzcnt")),
    ("avx512f", "has_avx512f", cfg!(target_feature = "avx512f")),
    ("avx512vl", "has_avx512vl", cfg!(target_feature = "avx512vl")),
    ("avx512dq", "has_avx512dq", cfg!(target_feature = "avx512dq")),
    ("avx512bitalg", "has_avx512bitalg", cfg!(target_feature = "avx512bitalg")),
    ("avx512vbmi", "has_avx512vbmi", cfg!(target_feature = "avx512vbmi")),
    ("avx512vnni", "has_avx512vnni", cfg!(target_feature = "avx512vnni")),
];

/// Cranelift's CPU feature flags for [`CpuFeatures::AsCompiled`]: (flag, on). Empty where
/// the features of this architecture are not mapped (the host's are used there).
fn as_compiled_cranelift_flags() -> Vec<(&'static str, bool)> {
    #[cfg(target_arch = "x86_64")]
    {
        X86_FEATURES.iter().map(|&(_, flag, on)| (flag, on)).collect()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Vec::new()
    }
}

/// The optional CPU features (beyond the architecture's baseline), by rustc's names:
/// (those this binary was compiled for, those this CPU has that the binary was not compiled
/// for). The first is what [`CpuFeatures::AsCompiled`] gives Cranelift; `Host` adds the second.
pub fn cpu_features_report() -> (Vec<&'static str>, Vec<&'static str>) {
    #[cfg(target_arch = "x86_64")]
    {
        let compiled = X86_FEATURES.iter().filter(|f| f.2).map(|f| f.0).collect();
        let left_out =
            X86_FEATURES.iter().filter(|f| !f.2 && host_has_x86(f.0)).map(|f| f.0).collect();
        (compiled, left_out)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        (Vec::new(), Vec::new())
    }
}

/// Whether this CPU has x86 feature `name` (rustc's name), detected at run time.
#[cfg(target_arch = "x86_64")]
fn host_has_x86(name: &str) -> bool {
    match name {
        "sse3" => std::arch::is_x86_feature_detected!("sse3"),
        "ssse3" => std::arch::is_x86_feature_detected!("ssse3"),
        "cmpxchg16b" => std::arch::is_x86_feature_detected!("cmpxchg16b"),
        "sse4.1" => std::arch::is_x86_feature_detected!("sse4.1"),
        "sse4.2" => std::arch::is_x86_feature_detected!("sse4.2"),
        "popcnt" => std::arch::is_x86_feature_detected!("popcnt"),
        "avx" => std::arch::is_x86_feature_detected!("avx"),
        "avx2" => std::arch::is_x86_feature_detected!("avx2"),
        "fma" => std::arch::is_x86_feature_detected!("fma"),
        "bmi1" => std::arch::is_x86_feature_detected!("bmi1"),
        "bmi2" => std::arch::is_x86_feature_detected!("bmi2"),
        "lzcnt" => std::arch::is_x86_feature_detected!("lzcnt"),
        "avx512f" => std::arch::is_x86_feature_detected!("avx512f"),
        "avx512vl" => std::arch::is_x86_feature_detected!("avx512vl"),
        "avx512dq" => std::arch::is_x86_feature_detected!("avx512dq"),
        "avx512bitalg" => std::arch::is_x86_feature_detected!("avx512bitalg"),
        "avx512vbmi" => std::arch::is_x86_feature_detected!("avx512vbmi"),
        "avx512vnni" => std::arch::is_x86_feature_detected!("avx512vnni"),
        _ => false,
    }
}

/// What a successful run gives.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// The declared outputs, in the order the article returned them.
    pub outputs: Vec<(String, Vec<u8>)>,
    /// Fuel burnt, instantiation included: the unit of work.
    pub fuel_used: u64,
    /// Wall time of instantiation and run.
    pub wall: Duration,
    /// The article's `log` calls, stdout and stderr, cut at `limits::LOG_BYTES_MAX`.
    pub log: String,
}

/// A checked, compiled article, ready to run any number of times.
#[derive(Clone)]
pub struct LoadedArticle {
    manifest: Manifest,
    id: Hash32,
    strict_floats: bool,
    pre: bindings::ArticlePre<State>,
}

impl LoadedArticle {
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    /// The article id (SHA256 of the canonical manifest).
    pub fn id(&self) -> Hash32 {
        self.id
    }
}

impl std::fmt::Debug for LoadedArticle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedArticle")
            .field("name", &self.manifest.name)
            .field("id", &self.id)
            .finish()
    }
}

/// One engine and its linker: the sandbox has one for ordinary floats and one with NaN
/// canonicalisation (a per-engine setting in wasmtime).
struct Flavor {
    engine: Engine,
    linker: Linker<State>,
    /// Names the engine's compiled-code format in cache keys.
    compat: u64,
}

/// The sandbox. Cheap to share in an `Arc`; `load` and `run` take `&self`.
pub struct Sandbox {
    plain: Flavor,
    strict: Flavor,
    cache_dir: PathBuf,
    memo: Mutex<VecDeque<(Hash32, Component)>>,
    slots: Slots,
    ticker_stop: Option<mpsc::Sender<()>>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl Sandbox {
    pub fn new(cfg: SandboxConfig) -> Result<Sandbox, RuntimeError> {
        ensure_private_dir(&cfg.cache_dir)
            .map_err(|source| RuntimeError::CacheDir { path: cfg.cache_dir.clone(), source })?;
        let n = cfg.max_concurrent_instances.max(1);
        let plain = Flavor::new(&cfg, n, false)?;
        let strict = Flavor::new(&cfg, n, true)?;
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let engines = [plain.engine.clone(), strict.engine.clone()];
        let ticker = std::thread::Builder::new()
            .name("bitwrk-epoch".into())
            .spawn(move || {
                let tick = Duration::from_millis(limits::EPOCH_TICK_MS);
                // Ticks until the sandbox drops the sender.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(tick) {
                    for e in &engines {
                        e.increment_epoch();
                    }
                }
            })
            .map_err(RuntimeError::Ticker)?;
        tracing::info!(cache_dir = %cfg.cache_dir.display(), slots = n, "sandbox ready");
        Ok(Sandbox {
            plain,
            strict,
            cache_dir: cfg.cache_dir,
            memo: Mutex::new(VecDeque::new()),
            slots: Slots::new(n),
            ticker_stop: Some(stop_tx),
            ticker: Some(ticker),
        })
    }

    fn flavor(&self, strict_floats: bool) -> &Flavor {
        if strict_floats { &self.strict } else { &self.plain }
    }

    /// Check the module against the manifest's `module_sha256`, check its imports, compile
    /// it or load it from the disk cache.
    pub fn load(
        &self,
        manifest: &Manifest,
        module_bytes: &[u8],
    ) -> Result<LoadedArticle, RunError> {
        if manifest.runtime != Runtime::Wasm {
            return Err(RunError::unsupported(format!(
                "runtime {} is not run by the wasm sandbox",
                manifest.runtime.as_string()
            )));
        }
        manifest.validate().map_err(|e| RunError::bad_input(e.to_string()))?;
        let declared = manifest
            .module_sha256
            .ok_or_else(|| RunError::bad_input("the manifest has no module_sha256"))?;
        let actual = Hash32::of(module_bytes);
        if actual != declared {
            return Err(RunError::bad_input(format!(
                "the module's SHA256 is {actual}, the manifest says {declared}"
            )));
        }
        crate::imports::check_component(module_bytes)
            .map_err(|e| RunError::unsupported(e.to_string()))?;
        let strict = manifest.limits.strict_floats;
        let flavor = self.flavor(strict);
        let component = self.component(flavor, strict, actual, module_bytes)?;
        let pre =
            flavor.linker.instantiate_pre(&component).and_then(bindings::ArticlePre::new).map_err(
                |e| {
                    RunError::unsupported(format!(
                        "the component does not fit the bitwrk:article world: {e:#}"
                    ))
                },
            )?;
        Ok(LoadedArticle {
            manifest: manifest.clone(),
            id: manifest.id(),
            strict_floats: strict,
            pre,
        })
    }

    /// The compiled component: from memory, else from the disk cache, else compiled now
    /// (and written to the cache).
    fn component(
        &self,
        flavor: &Flavor,
        strict: bool,
        module: Hash32,
        bytes: &[u8],
    ) -> Result<Component, RunError> {
        let key = cache_key(module, flavor.compat, strict);
        {
            let mut memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(pos) = memo.iter().position(|(k, _)| *k == key) {
                let entry = memo.remove(pos).expect("position is in range");
                let component = entry.1.clone();
                memo.push_front(entry);
                return Ok(component);
            }
        }
        let path = self.cache_dir.join(format!("{key}.cwasm"));
        let component = match load_cached(&flavor.engine, &path) {
            Some(c) => c,
            None => {
                let started = Instant::now();
                let c = Component::new(&flavor.engine, bytes).map_err(|e| {
                    RunError::unsupported(format!("the component does not compile: {e:#}"))
                })?;
                tracing::info!(module = %module, ms = started.elapsed().as_millis() as u64, "compiled component");
                if let Err(e) = store_cached(&c, &path) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot write the compile cache");
                }
                c
            }
        };
        let mut memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
        memo.push_front((key, component.clone()));
        memo.truncate(limits::MEMORY_CACHE_ENTRIES);
        Ok(component)
    }

    /// Run the article once. Synchronous: callers run it on a blocking thread. Inputs are
    /// checked against the manifest before, outputs after. Waits for a free slot when
    /// `max_concurrent_instances` runs are going on.
    pub fn run(
        &self,
        article: &LoadedArticle,
        inputs: Vec<(String, Vec<u8>)>,
    ) -> Result<RunOutput, RunError> {
        check_inputs(&article.manifest, &inputs)?;
        let _slot = self.slots.acquire();
        let started = Instant::now();
        let outcome =
            std::panic::catch_unwind(AssertUnwindSafe(|| self.run_in_store(article, inputs)));
        let result = match outcome {
            Ok(r) => r,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(article = %article.id, panic = %what, "the sandbox panicked during a run");
                Err(RunError::internal(format!("the sandbox failed: {what}")))
            }
        };
        let wall = started.elapsed();
        match result {
            Ok((outputs, fuel_used, log)) => {
                check_outputs(&article.manifest, &outputs)?;
                tracing::debug!(article = %article.id, fuel_used, wall_ms = wall.as_millis() as u64, "run finished");
                Ok(RunOutput { outputs, fuel_used, wall, log })
            }
            Err(e) => {
                tracing::debug!(article = %article.id, reason = %e.reason, message = %e.message, "run failed");
                Err(e)
            }
        }
    }

    /// A fresh store for one run of `article`: WASI context (frozen clocks, seeded random,
    /// stdout/stderr into the log), memory limiter, fuel and epoch deadline set.
    fn new_store(
        &self,
        article: &LoadedArticle,
        seed: &[u8; 32],
    ) -> Result<(Store<State>, LogBuffer), RunError> {
        let lim = &article.manifest.limits;
        let flavor = self.flavor(article.strict_floats);
        let log = LogBuffer::new(limits::LOG_BYTES_MAX);
        let wasi = WasiCtxBuilder::new()
            .stdout(LogPipe::new(log.clone()))
            .stderr(LogPipe::new(log.clone()))
            .wall_clock(FrozenWallClock)
            .monotonic_clock(FrozenMonotonicClock)
            .secure_random(StdRng::from_seed(derive(seed, b"random")))
            .insecure_random(StdRng::from_seed(derive(seed, b"insecure")))
            .insecure_random_seed(u128::from_le_bytes(
                derive(seed, b"insecure-seed")[..16].try_into().expect("16 bytes"),
            ))
            .max_random_size(limits::RANDOM_BYTES_MAX)
            .build();
        let state = State {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter::new(lim.memory_bytes),
            log: log.clone(),
        };
        let mut store = Store::new(&flavor.engine, state);
        store.limiter(|s| &mut s.limiter);
        store
            .set_fuel(lim.fuel)
            .map_err(|e| RunError::internal(format!("cannot set fuel: {e}")))?;
        store.set_epoch_deadline(lim.wall_ms.div_ceil(limits::EPOCH_TICK_MS) + 1);
        store.epoch_deadline_trap();
        Ok((store, log))
    }

    /// How long it takes to make a store and instantiate `article` in it (what every run
    /// pays before the article's code starts; the article's `run` is not called). For the
    /// benchmark and for diagnostics.
    pub fn instantiate_time(&self, article: &LoadedArticle) -> Result<Duration, RunError> {
        let _slot = self.slots.acquire();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| RunError::internal(format!("cannot start the event loop: {e}")))?;
        let started = Instant::now();
        let (mut store, _log) = self.new_store(article, &[0; 32])?;
        rt.block_on(article.pre.instantiate_async(&mut store))
            .map_err(|e| classify(Phase::Instantiate(e), &article.manifest.limits, None, ""))?;
        Ok(started.elapsed())
    }

    #[allow(clippy::type_complexity)]
    fn run_in_store(
        &self,
        article: &LoadedArticle,
        inputs: Vec<(String, Vec<u8>)>,
    ) -> Result<(Vec<(String, Vec<u8>)>, u64, String), RunError> {
        let lim = &article.manifest.limits;
        let seed = random_seed(&inputs);
        let (mut store, log) = self.new_store(article, &seed)?;

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| RunError::internal(format!("cannot start the run's event loop: {e}")))?;
        let blobs: Vec<bindings::Blob> =
            inputs.into_iter().map(|(name, data)| bindings::Blob { name, data }).collect();
        // The epoch deadline stops running code; this outer timeout also stops a guest that
        // waits in a host call (a sleep on a pollable).
        let wall = Duration::from_millis(lim.wall_ms + limits::WALL_GRACE_MS);
        let outcome = rt.block_on(async {
            tokio::time::timeout(wall, async {
                let instance =
                    article.pre.instantiate_async(&mut store).await.map_err(Phase::Instantiate)?;
                instance.call_run(&mut store, &blobs).await.map_err(Phase::Call)
            })
            .await
        });
        drop(blobs);
        let fuel_left = store.get_fuel().unwrap_or(0);
        let fuel_used = lim.fuel.saturating_sub(fuel_left);
        let memory_denied = store.data().limiter.denied;
        drop(store);
        let log_text = log.text();
        match outcome {
            Err(_elapsed) => Err(RunError::new(
                ReasonCode::Timeout,
                format!(
                    "the run took longer than wall_ms {} (it was waiting in a host call)",
                    lim.wall_ms
                ),
            )),
            Ok(Err(phase)) => Err(classify(phase, lim, memory_denied, &log_text)),
            Ok(Ok(Err(guest))) => Err(match guest {
                bindings::RunError::MissingInput(s) => {
                    RunError::bad_input(format!("the article misses input {s:?}"))
                }
                bindings::RunError::InvalidInput(s) => {
                    RunError::bad_input(format!("the article refused its input: {s}"))
                }
                bindings::RunError::Failed(s) => {
                    RunError::new(ReasonCode::Failed, format!("the article failed: {s}"))
                }
            }),
            Ok(Ok(Ok(blobs))) => {
                Ok((blobs.into_iter().map(|b| (b.name, b.data)).collect(), fuel_used, log_text))
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        drop(self.ticker_stop.take());
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

/// Where a wasmtime error came from.
enum Phase {
    Instantiate(wasmtime::Error),
    Call(wasmtime::Error),
}

/// Map a wasmtime error to its reason code, with a message that says what happened.
fn classify(
    phase: Phase,
    lim: &bitwrk_protocol::manifest::Limits,
    memory_denied: Option<u64>,
    log: &str,
) -> RunError {
    let (err, during) = match phase {
        Phase::Instantiate(e) => (e, "instantiation"),
        Phase::Call(e) => (e, "the run"),
    };
    let tail = log_tail(log);
    if let Some(trap) = err.downcast_ref::<Trap>() {
        match trap {
            Trap::OutOfFuel => {
                return RunError::new(
                    ReasonCode::FuelExhausted,
                    format!("the run used all of its fuel ({})", lim.fuel),
                );
            }
            Trap::Interrupt => {
                return RunError::new(
                    ReasonCode::Timeout,
                    format!("the run took longer than wall_ms {}", lim.wall_ms),
                );
            }
            Trap::StackOverflow => {
                return RunError::new(
                    ReasonCode::MemoryExceeded,
                    "the wasm stack overflowed (too deep recursion)",
                );
            }
            _ => {}
        }
    }
    if let Some(wanted) = memory_denied {
        return RunError::new(
            ReasonCode::MemoryExceeded,
            format!(
                "the article asked for {wanted} bytes of memory, more than memory_bytes {} ({during} ended: {err}){tail}",
                lim.memory_bytes
            ),
        );
    }
    if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return RunError::new(
            ReasonCode::Trap,
            format!("the article called exit({}){tail}", exit.0),
        );
    }
    if let Some(trap) = err.downcast_ref::<Trap>() {
        // The trap itself, not the error's outermost layer (wasmtime's wasm backtrace, a
        // list of mangled frames of no use to a buyer); a panic's message is in the log.
        return RunError::new(
            ReasonCode::Trap,
            format!("the article trapped during {during}: {trap}{tail}"),
        );
    }
    match during {
        // Not a trap at instantiation: the sandbox could not set the instance up.
        "instantiation" => RunError::internal(format!("cannot instantiate the article: {err:#}")),
        // Not a trap in the call: the guest handed back values the canonical ABI refuses.
        _ => RunError::new(
            ReasonCode::Trap,
            format!("the article returned invalid values: {err:#}{tail}"),
        ),
    }
}

/// The end of the log, for messages: a panic message is usually the last thing printed.
/// A Rust panic is cut to its message (from `panicked at` up to the hint or backtrace
/// std prints after it): a list of mangled frames is of no use to a buyer.
fn log_tail(log: &str) -> String {
    const TAIL_CHARS: usize = 400;
    let log = match log.rfind("panicked at ") {
        Some(at) => {
            let start = log[..at].rfind('\n').map_or(0, |i| i + 1);
            let panic = &log[start..];
            let end = ["\nnote: run with", "\nstack backtrace:"]
                .iter()
                .filter_map(|cut| panic.find(cut))
                .min()
                .unwrap_or(panic.len());
            &panic[..end]
        }
        None => log,
    };
    let trimmed = log.trim_end();
    if trimmed.is_empty() {
        return String::new();
    }
    let count = trimmed.chars().count();
    let tail: String = trimmed.chars().skip(count.saturating_sub(TAIL_CHARS)).collect();
    format!("; log ends with: {tail}")
}

impl Flavor {
    fn new(cfg: &SandboxConfig, n: u32, strict: bool) -> Result<Flavor, RuntimeError> {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(n)
            .total_core_instances(n * limits::CORE_INSTANCES_PER_COMPONENT)
            .total_memories(n * limits::MEMORIES_PER_COMPONENT)
            .total_tables(n * limits::TABLES_PER_COMPONENT)
            .total_stacks(n)
            .max_core_instances_per_component(limits::CORE_INSTANCES_PER_COMPONENT)
            .max_memories_per_component(limits::MEMORIES_PER_COMPONENT)
            .max_tables_per_component(limits::TABLES_PER_COMPONENT)
            .table_elements(limits::TABLE_ELEMENTS_MAX)
            .max_memory_size(limits::POOL_MEMORY_BYTES_MAX as usize);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(cfg.wasm_stack_bytes)
            .async_stack_size(
                cfg.wasm_stack_bytes + (limits::FIBER_STACK_BYTES - limits::WASM_STACK_BYTES),
            )
            .cranelift_opt_level(OptLevel::Speed)
            .cranelift_nan_canonicalization(strict)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if cfg.cpu_features == CpuFeatures::AsCompiled {
            for (flag, on) in as_compiled_cranelift_flags() {
                // SAFETY: these flags only choose instructions; every feature set here is
                // one this very binary was compiled for, so this CPU has it (wasmtime also
                // checks each against the host when it loads the code).
                unsafe {
                    config.cranelift_flag_set(flag, if on { "true" } else { "false" });
                }
            }
        }
        let engine = Engine::new(&config).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let linker = sandbox_linker(&engine).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(Flavor { engine, linker, compat: h.finish() })
    }
}

/// The linker holds exactly the allowed imports (`imports::ALLOWED_WASI_INTERFACES` and
/// `log`): even a module that slipped past the import check could not reach anything else.
fn sandbox_linker(engine: &Engine) -> wasmtime::Result<Linker<State>> {
    use wasmtime_wasi::p2::bindings::{cli, clocks, random};
    use wasmtime_wasi_io::bindings::wasi::io;
    let mut l = Linker::<State>::new(engine);
    io::error::add_to_linker::<State, HasTable>(&mut l, |s| &mut s.table)?;
    io::poll::add_to_linker::<State, HasTable>(&mut l, |s| &mut s.table)?;
    io::streams::add_to_linker::<State, HasTable>(&mut l, |s| &mut s.table)?;
    clocks::wall_clock::add_to_linker::<State, WasiClocks>(&mut l, State::clocks)?;
    clocks::monotonic_clock::add_to_linker::<State, WasiClocks>(&mut l, State::clocks)?;
    random::random::add_to_linker::<State, WasiRandom>(&mut l, |s| s.wasi.random())?;
    random::insecure::add_to_linker::<State, WasiRandom>(&mut l, |s| s.wasi.random())?;
    random::insecure_seed::add_to_linker::<State, WasiRandom>(&mut l, |s| s.wasi.random())?;
    cli::exit::add_to_linker::<State, WasiCli>(&mut l, State::cli)?;
    cli::environment::add_to_linker::<State, WasiCli>(&mut l, State::cli)?;
    cli::stdin::add_to_linker::<State, WasiCli>(&mut l, State::cli)?;
    cli::stdout::add_to_linker::<State, WasiCli>(&mut l, State::cli)?;
    cli::stderr::add_to_linker::<State, WasiCli>(&mut l, State::cli)?;
    cli::terminal_input::add_to_linker::<State, WasiCli>(&mut l, State::cli)?;
    cli::terminal_output::add_to_linker::<State, WasiCli>(&mut l, State::cli)?;
    cli::terminal_stdin::add_to_linker::<State, WasiCli>(&mut l, State::cli)?;
    cli::terminal_stdout::add_to_linker::<State, WasiCli>(&mut l, State::cli)?;
    cli::terminal_stderr::add_to_linker::<State, WasiCli>(&mut l, State::cli)?;
    bindings::Article::add_to_linker::<State, HasSelf<State>>(&mut l, |s| s)?;
    Ok(l)
}

struct HasTable;

impl HasData for HasTable {
    type Data<'a> = &'a mut ResourceTable;
}

/// The store's data for one run.
struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    log: LogBuffer,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl bindings::ArticleImports for State {
    fn log(&mut self, msg: String) {
        self.log.line(&msg);
    }
}

/// Counts linear memory across the store's memories against the manifest's
/// `memory_bytes`; remembers a refusal so a later trap is reported as `memory_exceeded`.
struct Limiter {
    max_bytes: u64,
    total_bytes: u64,
    denied: Option<u64>,
}

impl Limiter {
    fn new(max_bytes: u64) -> Limiter {
        Limiter { max_bytes, total_bytes: 0, denied: None }
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = (self.total_bytes + desired as u64).saturating_sub(current as u64);
        if total > self.max_bytes {
            self.denied = Some(total);
            return Ok(false);
        }
        self.total_bytes = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= limits::TABLE_ELEMENTS_MAX)
    }

    fn instances(&self) -> usize {
        limits::CORE_INSTANCES_PER_COMPONENT as usize
    }
    fn tables(&self) -> usize {
        limits::TABLES_PER_COMPONENT as usize
    }
    fn memories(&self) -> usize {
        limits::MEMORIES_PER_COMPONENT as usize
    }
}

/// Wall clock stopped at `limits::FROZEN_WALL_CLOCK_SECS`.
struct FrozenWallClock;

impl HostWallClock for FrozenWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::from_secs(limits::FROZEN_WALL_CLOCK_SECS)
    }
}

/// Monotonic clock that never moves: timing code sees zero elapsed time.
struct FrozenMonotonicClock;

impl HostMonotonicClock for FrozenMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// A 32-byte seed for one purpose, derived from the run's seed.
fn derive(seed: &[u8; 32], purpose: &[u8]) -> [u8; 32] {
    let mut text = seed.to_vec();
    text.extend_from_slice(purpose);
    Hash32::of(&text).0
}

/// Counting semaphore for run slots (the pool has room for this many instances).
struct Slots {
    free: Mutex<u32>,
    freed: Condvar,
}

struct SlotGuard<'a>(&'a Slots);

impl Slots {
    fn new(n: u32) -> Slots {
        Slots { free: Mutex::new(n), freed: Condvar::new() }
    }
    fn acquire(&self) -> SlotGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        SlotGuard(self)
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

/// The cache file name: the module hash, the engine's compatibility hash (wasmtime
/// version and every setting that changes compiled code) and the float mode.
fn cache_key(module: Hash32, compat: u64, strict: bool) -> Hash32 {
    let mut text = b"bitwrk-runtime cache v1".to_vec();
    text.extend_from_slice(module.as_bytes());
    text.extend_from_slice(&compat.to_le_bytes());
    text.push(strict as u8);
    Hash32::of(&text)
}

fn load_cached(engine: &Engine, path: &Path) -> Option<Component> {
    if !path.exists() {
        return None;
    }
    // SAFETY: `deserialize_file` trusts the file to be wasmtime's own output. Files in the
    // cache dir are written only by `store_cached` below, from code this process compiled
    // itself from a module whose hash it checked; the dir is private (0700). Precompiled
    // code from the network is never accepted. wasmtime still checks the header (version,
    // settings) and refuses a file made by another configuration.
    match unsafe { Component::deserialize_file(engine, path) } {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "dropping an unusable compile-cache entry");
            let _ = std::fs::remove_file(path);
            None
        }
    }
}

fn store_cached(component: &Component, path: &Path) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let bytes = component.serialize().map_err(|e| std::io::Error::other(format!("{e:#}")))?;
    let tmp = path.with_extension(format!(
        "tmp.{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&tmp, &bytes)?;
    // Rename is atomic: a reader sees the whole file or none.
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    if !dir.exists() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}
