//! The sandbox against real components: a well-behaved one and the hostile ones built from
//! runtime/hostile/ by `cargo build-articles` (a missing .wasm fails the test, never skips).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use bitwrk_protocol::{Hash32, Manifest, ReasonCode};
use bitwrk_runtime::{LoadedArticle, RunError, Sandbox, SandboxConfig};

/// The built component of a hostile test crate (`hostile-<name>`).
fn wasm(name: &str) -> Vec<u8> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join(format!("wasm32-wasip2/release/hostile_{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. Build the test guests first: `cargo build-articles` (the README's test command does)",
            path.display()
        )
    })
}

/// A manifest for `module` with the given inputs/outputs (name, max_bytes) and limits.
fn manifest(
    module: &[u8],
    inputs: &[(&str, u64)],
    outputs: &[(&str, u64)],
    fuel: u64,
    memory: u64,
    wall_ms: u64,
) -> Manifest {
    let io = |kind: &str, list: &[(&str, u64)]| -> String {
        list.iter()
            .map(|(n, max)| format!("[[{kind}]]\nname = \"{n}\"\nmedia_type = \"application/octet-stream\"\nmax_bytes = {max}\n"))
            .collect()
    };
    let text = format!(
        "name = \"test\"\nversion = \"1.0.0\"\nruntime = \"wasm\"\nmodule_sha256 = \"{}\"\n{}{}[limits]\nfuel = {fuel}\nmemory_bytes = {memory}\nwall_ms = {wall_ms}\n",
        Hash32::of(module),
        io("inputs", inputs),
        io("outputs", outputs)
    );
    Manifest::from_toml(&text).unwrap()
}

const FUEL: u64 = 10_000_000_000;
const MEMORY: u64 = 64 << 20;
const WALL_MS: u64 = 20_000;

/// One sandbox for the whole test binary, as a seller has: every test also shows that the
/// sandbox keeps serving after the others' hostile runs.
fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<(tempfile::TempDir, Sandbox)> = OnceLock::new();
    &SANDBOX
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let sb = Sandbox::new(SandboxConfig::new(dir.path().join("cache"))).unwrap();
            (dir, sb)
        })
        .1
}

fn load(
    name: &str,
    inputs: &[(&str, u64)],
    outputs: &[(&str, u64)],
    fuel: u64,
    memory: u64,
    wall_ms: u64,
) -> LoadedArticle {
    let module = wasm(name);
    let m = manifest(&module, inputs, outputs, fuel, memory, wall_ms);
    sandbox().load(&m, &module).unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

fn input(name: &str, data: &[u8]) -> (String, Vec<u8>) {
    (name.to_string(), data.to_vec())
}

#[track_caller]
fn expect_err(
    result: Result<bitwrk_runtime::RunOutput, RunError>,
    reason: ReasonCode,
    word: &str,
) -> RunError {
    let e = result.expect_err("the run must fail");
    assert_eq!(e.reason, reason, "{e}");
    assert!(e.message.contains(word), "message should mention {word:?}: {e}");
    e
}

fn echo() -> LoadedArticle {
    load("echo", &[("text", 1 << 20)], &[("echo", 1 << 20), ("probe", 1024)], FUEL, MEMORY, WALL_MS)
}

#[test]
fn echo_runs_with_frozen_clocks_and_seeded_random() {
    let a = echo();
    let out = sandbox().run(&a, vec![input("text", b"hello")]).unwrap();
    let get = |o: &bitwrk_runtime::RunOutput, n: &str| {
        o.outputs.iter().find(|(k, _)| k == n).unwrap().1.clone()
    };
    assert_eq!(get(&out, "echo"), b"hello");
    let probe = String::from_utf8(get(&out, "probe")).unwrap();
    assert!(probe.starts_with("wall=1577836800000000000 elapsed=0 random="), "{probe}");
    assert!(out.fuel_used > 0);
    assert!(out.log.contains("echo: 5 bytes\n"), "{}", out.log);
    assert!(out.log.contains("to stdout\n") && out.log.contains("to stderr\n"), "{}", out.log);

    // The same work gives the same result and the same fuel; other work other random.
    let again = sandbox().run(&a, vec![input("text", b"hello")]).unwrap();
    assert_eq!(get(&again, "probe"), get(&out, "probe"));
    assert_eq!(again.fuel_used, out.fuel_used);
    let other = sandbox().run(&a, vec![input("text", b"hellp")]).unwrap();
    assert_ne!(get(&other, "probe"), get(&out, "probe"));
}

/// The bench's like-with-like sandbox (Cranelift limited to this binary's own CPU
/// features) accepts its flags and gives the same result and the same fuel.
#[test]
fn as_compiled_cpu_features_run_alike() {
    let dir = tempfile::tempdir().unwrap();
    let config = SandboxConfig {
        cpu_features: bitwrk_runtime::CpuFeatures::AsCompiled,
        ..SandboxConfig::new(dir.path().join("cache"))
    };
    let baseline = Sandbox::new(config).unwrap();
    let module = wasm("echo");
    let m = manifest(
        &module,
        &[("text", 100)],
        &[("echo", 100), ("probe", 1024)],
        FUEL,
        MEMORY,
        WALL_MS,
    );
    let a = baseline.load(&m, &module).unwrap();
    let out = baseline.run(&a, vec![input("text", b"x")]).unwrap();
    let on_host = sandbox().load(&m, &module).unwrap();
    let host = sandbox().run(&on_host, vec![input("text", b"x")]).unwrap();
    assert_eq!(out.outputs, host.outputs);
    assert_eq!(out.fuel_used, host.fuel_used);
}

#[test]
fn strict_floats_engine_runs_too() {
    let module = wasm("echo");
    let mut m = manifest(
        &module,
        &[("text", 100)],
        &[("echo", 100), ("probe", 1024)],
        FUEL,
        MEMORY,
        WALL_MS,
    );
    m.limits.strict_floats = true;
    let a = sandbox().load(&m, &module).unwrap();
    let out = sandbox().run(&a, vec![input("text", b"x")]).unwrap();
    assert_eq!(out.outputs[0], input("echo", b"x"));
}

#[test]
fn inputs_are_checked_before_the_run() {
    let a = echo();
    expect_err(sandbox().run(&a, vec![]), ReasonCode::BadInput, "missing");
    expect_err(
        sandbox().run(&a, vec![input("text", b"a"), input("extra", b"")]),
        ReasonCode::BadInput,
        "not declared",
    );
    expect_err(
        sandbox().run(&a, vec![input("text", &vec![0; (1 << 20) + 1])]),
        ReasonCode::BadInput,
        "max_bytes",
    );
}

#[test]
fn load_refusals() {
    let module = wasm("echo");
    let m = manifest(&module, &[("text", 100)], &[("echo", 100)], FUEL, MEMORY, WALL_MS);
    let mut tampered = module.clone();
    tampered.push(0);
    let e = sandbox().load(&m, &tampered).unwrap_err();
    assert_eq!(e.reason, ReasonCode::BadInput, "{e}");
    assert!(e.message.contains("SHA256"), "{e}");

    let not_wasm = b"\0asm but not really".to_vec();
    let e = sandbox()
        .load(&manifest(&not_wasm, &[("a", 1)], &[("b", 1)], FUEL, MEMORY, WALL_MS), &not_wasm)
        .unwrap_err();
    assert_eq!(e.reason, ReasonCode::Unsupported, "{e}");
}

#[test]
fn filesystem_import_is_refused_at_load() {
    let module = wasm("fs");
    let e = sandbox()
        .load(&manifest(&module, &[("a", 1)], &[("out", 1)], FUEL, MEMORY, WALL_MS), &module)
        .unwrap_err();
    assert_eq!(e.reason, ReasonCode::Unsupported, "{e}");
    assert!(e.message.contains("wasi:filesystem/"), "{e}");
}

#[test]
fn socket_import_is_refused_at_load() {
    let module = wasm("net");
    let names: Vec<String> = bitwrk_runtime::imports::component_imports(&module)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(names.iter().any(|n| n.starts_with("wasi:sockets/tcp@")), "{names:?}");
    let e = sandbox()
        .load(&manifest(&module, &[("a", 1)], &[("out", 1)], FUEL, MEMORY, WALL_MS), &module)
        .unwrap_err();
    assert_eq!(e.reason, ReasonCode::Unsupported, "{e}");
    // std's socket code also pulls in the filesystem, which is named first.
    assert!(e.message.contains("is not allowed"), "{e}");
}

#[test]
fn infinite_loop_ends_by_fuel() {
    let a = load("spin", &[("mode", 16)], &[("out", 16)], 50_000_000, MEMORY, WALL_MS);
    expect_err(sandbox().run(&a, vec![input("mode", b"spin")]), ReasonCode::FuelExhausted, "fuel");
}

#[test]
fn infinite_loop_ends_by_wall_clock() {
    let a = load(
        "spin",
        &[("mode", 16)],
        &[("out", 16)],
        bitwrk_protocol::manifest::caps::FUEL_MAX,
        MEMORY,
        300,
    );
    expect_err(sandbox().run(&a, vec![input("mode", b"spin")]), ReasonCode::Timeout, "wall_ms 300");
}

#[test]
fn sleeping_in_the_host_ends_by_wall_clock() {
    let a = load("spin", &[("mode", 16)], &[("out", 16)], FUEL, MEMORY, 300);
    expect_err(
        sandbox().run(&a, vec![input("mode", b"sleep")]),
        ReasonCode::Timeout,
        "wall_ms 300",
    );
}

#[test]
fn memory_bomb_ends_by_memory_limit() {
    let a = load("membomb", &[("a", 1)], &[("out", 1)], FUEL, 32 << 20, WALL_MS);
    expect_err(
        sandbox().run(&a, vec![input("a", b"")]),
        ReasonCode::MemoryExceeded,
        "memory_bytes 33554432",
    );
}

#[test]
fn deep_recursion_ends_by_stack_limit() {
    let a = load("recurse", &[("a", 1)], &[("out", 8)], FUEL, MEMORY, WALL_MS);
    expect_err(sandbox().run(&a, vec![input("a", b"")]), ReasonCode::MemoryExceeded, "stack");
}

#[test]
fn panic_is_a_trap_with_the_message() {
    let a = load("panic", &[("a", 1)], &[("out", 1)], FUEL, MEMORY, WALL_MS);
    let e = expect_err(
        sandbox().run(&a, vec![input("a", b"")]),
        ReasonCode::Trap,
        "hostile guest panics on purpose",
    );
    // The message, not wasmtime's backtrace of mangled wasm frames.
    assert!(!e.message.contains("backtrace") && !e.message.contains("!<"), "{}", e.message);
    assert!(e.message.len() < 1000, "{}", e.message);
}

#[test]
fn outputs_are_checked_after_the_run() {
    let a = load("output", &[("mode", 16)], &[("out", 1 << 20)], FUEL, 256 << 20, WALL_MS);
    let run = |mode: &str| sandbox().run(&a, vec![input("mode", mode.as_bytes())]);
    assert_eq!(run("ok").unwrap().outputs, vec![input("out", b"fine")]);
    // The guest's own failure has its own reason code.
    expect_err(run("fail"), ReasonCode::Failed, "mode fail asked for");
    expect_err(run("huge"), ReasonCode::OutputTooLarge, "67108864 bytes");
    expect_err(run("undeclared"), ReasonCode::Trap, "\"secret\", which is not declared");
    expect_err(run("twice"), ReasonCode::Trap, "twice");
    expect_err(run("none"), ReasonCode::Trap, "did not return output \"out\"");
    expect_err(run("error"), ReasonCode::BadInput, "mode error asked for");
    // A huge output that does not even fit the guest's memory limit.
    let small = load("output", &[("mode", 16)], &[("out", 1 << 20)], FUEL, 32 << 20, WALL_MS);
    expect_err(
        sandbox().run(&small, vec![input("mode", b"huge")]),
        ReasonCode::MemoryExceeded,
        "memory_bytes",
    );
}

#[test]
fn concurrent_runs_share_the_pool() {
    let a = Arc::new(echo());
    let threads: Vec<_> = (0..12)
        .map(|i| {
            let a = a.clone();
            std::thread::spawn(move || {
                sandbox().run(&a, vec![input("text", format!("run {i}").as_bytes())])
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        let out = t.join().unwrap().unwrap();
        assert_eq!(out.outputs[0].1, format!("run {i}").as_bytes());
    }
}

#[test]
fn compiled_components_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let module = wasm("echo");
    let m = manifest(
        &module,
        &[("text", 100)],
        &[("echo", 100), ("probe", 1024)],
        FUEL,
        MEMORY,
        WALL_MS,
    );
    let cache = dir.path().join("cache");
    let entries =
        || std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().path()).collect::<Vec<_>>();
    {
        let sb = Sandbox::new(SandboxConfig::new(&cache)).unwrap();
        sb.load(&m, &module).unwrap();
    }
    let files = entries();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].extension().is_some_and(|e| e == "cwasm"));
    let written = std::fs::metadata(&files[0]).unwrap().modified().unwrap();
    {
        // A new sandbox (a restarted seller) loads it from disk instead of compiling.
        let sb = Sandbox::new(SandboxConfig::new(&cache)).unwrap();
        let a = sb.load(&m, &module).unwrap();
        assert_eq!(sb.run(&a, vec![input("text", b"x")]).unwrap().outputs[0].1, b"x");
    }
    assert_eq!(entries(), files);
    assert_eq!(std::fs::metadata(&files[0]).unwrap().modified().unwrap(), written);
    // A damaged entry is dropped and the module compiled again.
    std::fs::write(&files[0], b"garbage").unwrap();
    let sb = Sandbox::new(SandboxConfig::new(&cache)).unwrap();
    let a = sb.load(&m, &module).unwrap();
    assert_eq!(sb.run(&a, vec![input("text", b"y")]).unwrap().outputs[0].1, b"y");
    assert!(std::fs::metadata(&files[0]).unwrap().len() > 1000);
}
