//! Every fixed limit of the sandbox in one place, each with why it has its value. The
//! per-article limits (fuel, memory, wall time, max bytes of inputs and outputs) come from
//! the manifest; these are the ones the seller sets for all articles.

/// The wasm stack of a run (wasmtime `max_wasm_stack`). 1 MiB is twice wasmtime's default
/// and enough for deep recursive renderers; a deeper recursion ends as `memory_exceeded`.
pub const WASM_STACK_BYTES: usize = 1 << 20;

/// The native stack the run's fiber gets: the wasm stack plus room for host calls.
pub const FIBER_STACK_BYTES: usize = WASM_STACK_BYTES + (1 << 20);

/// Largest single linear memory the pooling allocator reserves address space for: the
/// whole wasm32 space, so every manifest `memory_bytes` (capped at 4 GiB) fits. Reserving
/// costs only virtual address space.
pub const POOL_MEMORY_BYTES_MAX: u64 = bitwrk_protocol::manifest::caps::MEMORY_BYTES_MAX;

/// Core instances per component: a wit-bindgen component has 3-5 (the program and the
/// canonical-ABI shims); 16 leaves room for articles linked from several modules.
pub const CORE_INSTANCES_PER_COMPONENT: u32 = 16;

/// Linear memories per component (a Rust component has one; a composed one a few).
pub const MEMORIES_PER_COMPONENT: u32 = 4;

/// Tables per component (shims use one each).
pub const TABLES_PER_COMPONENT: u32 = 16;

/// Most elements in one table: enough for large programs' function tables, small enough
/// that a table bomb cannot use much host memory (8 bytes an element).
pub const TABLE_ELEMENTS_MAX: usize = 1 << 20;

/// How often the epoch ticker advances wasmtime's epoch: the granularity of the wall-time
/// limit. 10 ms keeps the ticker's cost negligible and timeouts precise enough.
pub const EPOCH_TICK_MS: u64 = 10;

/// Extra wall time before the outer timeout cancels a run that is blocked in a host call
/// (a guest sleeping on a pollable), beyond the epoch deadline that stops running code.
pub const WALL_GRACE_MS: u64 = 50;

/// The run's log (our `log` import, stdout and stderr together) is cut at this size: it is
/// for the article author's debugging, not a data channel.
pub const LOG_BYTES_MAX: usize = 64 * 1024;

/// Largest single `get-random-bytes` request (wasmtime-wasi's default is 64 MiB; a guest
/// needs a few bytes for seeds).
pub const RANDOM_BYTES_MAX: u64 = 1 << 20;

/// The frozen wall clock every run sees: 2020-01-01T00:00:00Z. A fixed time keeps runs
/// reproducible; a plausible one keeps date code from tripping over the Unix epoch.
pub const FROZEN_WALL_CLOCK_SECS: u64 = 1_577_836_800;

/// Compiled components kept in memory (besides the disk cache), most recently used first.
pub const MEMORY_CACHE_ENTRIES: usize = 32;

/// Default number of runs at once (instances in the pool) when the caller does not say.
pub const DEFAULT_CONCURRENT_INSTANCES: u32 = 4;
