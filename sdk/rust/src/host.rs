//! Host services for plugins: logging, counters, native compression and
//! digests.
//!
//! Inside a component these call the `gleaner:plugin/host` imports; in a
//! native build (a plugin's own `cargo test`) logging goes to stderr,
//! counters are kept in a thread-local map you can read with
//! [`crate::testing::counters`], compression is not available, and
//! [`sha256`] is computed in process.

pub use crate::bindings::wit::{Codec, Level};

/// Writes a line to the host's log. Never log per event at `info` or above.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::wit_host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}

/// Logs at `info`.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Logs at `warn`.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Logs at `error`.
pub fn error(message: &str) {
    log(Level::Error, message);
}

/// Adds `delta` to the plugin counter `name` (see the WIT docs for limits).
pub fn counter_add(name: &str, delta: u64) {
    if delta == 0 {
        return;
    }
    #[cfg(target_arch = "wasm32")]
    crate::bindings::wit_host::counter_add(name, delta);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::record_counter(name, delta);
}

/// Compresses `data` with `codec` in the host, natively.
pub fn compress(codec: Codec, data: &[u8]) -> Result<Vec<u8>, String> {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::wit_host::compress(codec, data);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (codec, data);
        Err("compression is done by the Gleaner host and is not available in native tests".into())
    }
}

/// The SHA-256 of `data`, computed natively by the host (Wasm has no SHA
/// instructions: hashing a payload in the plugin costs ten times more).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    #[cfg(target_arch = "wasm32")]
    let digest = crate::bindings::wit_host::hash(crate::bindings::wit::HashAlgorithm::Sha256, data);
    #[cfg(not(target_arch = "wasm32"))]
    let digest = {
        use sha2::Digest as _;
        sha2::Sha256::digest(data).to_vec()
    };
    let mut out = [0u8; 32];
    out.copy_from_slice(&digest[..32.min(digest.len())]);
    out
}
