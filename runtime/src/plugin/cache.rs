//! The on-disk cache of compiled components: compile once, then load the
//! native artifact in milliseconds. Keyed by the component's SHA-256, the
//! wasmtime version and the engine's compatibility hash, so a new Gleaner
//! or a different engine configuration never loads a stale artifact.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

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

/// Loads `wasm` compiled from the cache, or compiles and stores it.
/// A cache that cannot be read or written only costs time: the component
/// is then compiled in memory.
pub fn load_or_compile(engine: &Engine, dir: &Path, wasm: &[u8]) -> wasmtime::Result<Component> {
    let path = entry(dir, engine, &digest(wasm));
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
    let bytes = component.serialize()?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
