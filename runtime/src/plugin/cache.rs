//! The on-disk cache of compiled components: compile once, then load the
//! native artifact in milliseconds. Keyed by the component's SHA-256, the
//! wasmtime version and the engine's compatibility hash, so a new Gleaner
//! or a different engine configuration never loads a stale artifact.
//!
//! A component missing from the cache is compiled in a child process of
//! the `gleaner` binary (`gleaner compile-plugin`) where one is set with
//! [`compile_in`]: Cranelift's tens of MiB of scratch memory, spread over
//! its threads, leave with the child, and the agent maps the artifact from
//! the cache as on any later start. Elsewhere (tests, the devkit), and if
//! the child fails, it is compiled in this process.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// SHA-256 of `bytes`, lowercase hex.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The cache file for `wasm` under `dir` for `engine`.
fn entry(dir: &Path, engine: &Engine, wasm_digest: &str) -> PathBuf {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    env!("CARGO_PKG_VERSION").hash(&mut h);
    dir.join(format!("{wasm_digest}-{:016x}.cwasm", h.finish()))
}

/// The binary that compiles components in a child process.
static COMPILER: OnceLock<PathBuf> = OnceLock::new();

/// Compile components missing from the cache with `gleaner_exe
/// compile-plugin` (set once, by `main`).
pub fn compile_in(gleaner_exe: PathBuf) {
    let _ = COMPILER.set(gleaner_exe);
}

/// Compiles `wasm` for an engine configured for `epoch` and writes the
/// artifact to `out` (through a temporary file and a rename). What the
/// child process of [`compile_in`] runs.
pub fn compile_to(epoch: bool, wasm: &[u8], out: &Path) -> anyhow::Result<()> {
    let engine = Engine::new(&super::engine_config(epoch))?;
    let bytes = engine.precompile_component(wasm)?;
    write_atomically(out, &bytes)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Compiles `wasm` into `path` in a child process; false if there is no
/// compiler binary or it failed (the caller then compiles in process).
fn compile_in_child(epoch: bool, wasm: &[u8], path: &Path) -> bool {
    let Some(exe) = COMPILER.get() else {
        return false;
    };
    let started = std::time::Instant::now();
    let child = std::process::Command::new(exe)
        .arg("compile-plugin")
        .args(epoch.then_some("--epoch"))
        .arg("--out")
        .arg(path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn();
    let result = child.and_then(|mut child| {
        if let Some(mut stdin) = child.stdin.take() {
            // A child that exits early (a bad component) closes its stdin.
            let _ = stdin.write_all(wasm);
        }
        child.wait()
    });
    match result {
        Ok(status) if status.success() => {
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                bytes = wasm.len(),
                in_child = true,
                "Compiled plugin component."
            );
            true
        }
        Ok(status) => {
            tracing::debug!(%status, "The plugin compiler process failed; compiling in process.");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "Cannot run the plugin compiler process; compiling in process.");
            false
        }
    }
}

/// Loads `wasm` compiled from the cache, or compiles and stores it.
/// A cache that cannot be read or written only costs time: the component
/// is then compiled in memory.
pub fn load_or_compile(
    engine: &Engine,
    epoch: bool,
    dir: &Path,
    wasm: &[u8],
) -> wasmtime::Result<Component> {
    let path = entry(dir, engine, &digest(wasm));
    if !path.exists() {
        compile_in_child(epoch, wasm, &path);
    }
    if path.exists() {
        // SAFETY: the file was written by `Component::serialize` of this
        // same wasmtime version and engine config (both in the key), into a
        // directory owned by Gleaner's data dir; wasmtime checks the header
        // and refuses incompatible artifacts.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => return Ok(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "Compiled plugin cache entry is unusable; recompiling.")
            }
        }
    }
    let started = std::time::Instant::now();
    let component = Component::new(engine, wasm)?;
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        bytes = wasm.len(),
        "Compiled plugin component."
    );
    if let Err(e) = store(dir, &path, &component) {
        tracing::warn!(dir = %dir.display(), error = %e, "Cannot write the compiled plugin cache.");
    }
    Ok(component)
}

fn store(dir: &Path, path: &Path, component: &Component) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    write_atomically(path, &component.serialize()?)
}
