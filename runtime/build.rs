//! Builds the first-party plugins in `plugins/` for `wasm32-wasip2` (the same
//! build as `cargo plugins`, into `target/plugins`) and embeds them so that
//! `builtin:NAME` works with nothing else installed. Also lists the Rust
//! SDK's sources (with the kernels', the WIT and `Cargo.lock`) for
//! `gleaner plugin new` to vendor into Rust projects.
//!
//! Set `GLEANER_PLUGINS_DIR` to a directory of prebuilt `*.wasm` files to
//! skip the nested build (e.g. for packaging).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest
        .parent()
        .expect("runtime/ is inside the workspace")
        .to_path_buf();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    for dir in [
        "plugins",
        "kernels",
        "kafka",
        "sdk/rust/src",
        "sdk/rust/Cargo.toml",
        "wit",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    println!("cargo:rerun-if-env-changed=GLEANER_PLUGINS_DIR");

    let plugins = plugin_crates(&workspace.join("plugins"));
    let wasm_dir = match std::env::var_os("GLEANER_PLUGINS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => build_plugins(&workspace),
    };

    let mut code = String::from(
        "/// (builtin name, component bytes)\npub static BUILTINS: &[(&str, &[u8])] = &[\n",
    );
    for krate in &plugins {
        let file = wasm_dir.join(format!("{}.wasm", krate.replace('-', "_")));
        if !file.exists() {
            panic!("plugin component {} was not built", file.display());
        }
        let name = krate
            .trim_start_matches("processor-")
            .trim_start_matches("flusher-");
        code.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            file.display().to_string()
        ));
    }
    code.push_str("];\n");
    std::fs::write(out.join("builtin_plugins.rs"), code).expect("write builtin_plugins.rs");
    std::fs::write(out.join("rust_sdk.rs"), rust_sdk_files(&workspace)).expect("write rust_sdk.rs");
}

/// The Rust SDK as `gleaner plugin new` vendors it into a project: (path
/// in the project, file) for the SDK's and the kernels' sources and
/// manifests, the WIT, the workspace's lock file, and (as
/// `(workspace)/Cargo.toml`) the manifest their inherited settings come from.
fn rust_sdk_files(workspace: &Path) -> String {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut pairs: Vec<(String, PathBuf)> = Vec::new();
    for (from, to) in [
        ("sdk/rust/src", "vendor/gleaner-sdk/src"),
        ("kernels/src", "vendor/gleaner-kernels/src"),
        ("wit", "wit"),
    ] {
        let mut files = Vec::new();
        walk(&workspace.join(from), &mut files);
        for f in files {
            let rel = f
                .strip_prefix(workspace.join(from))
                .expect("under its directory")
                .to_string_lossy()
                .into_owned();
            pairs.push((format!("{to}/{rel}"), f));
        }
    }
    for (from, to) in [
        ("sdk/rust/Cargo.toml", "vendor/gleaner-sdk/Cargo.toml"),
        ("kernels/Cargo.toml", "vendor/gleaner-kernels/Cargo.toml"),
        ("Cargo.lock", "Cargo.lock"),
        ("Cargo.toml", "(workspace)/Cargo.toml"),
    ] {
        pairs.push((to.to_owned(), workspace.join(from)));
    }
    let mut code = String::from(
        "/// (path in a new Rust plugin project, contents): the vendored SDK.\npub static RUST_SDK: &[(&str, &[u8])] = &[\n",
    );
    for (to, from) in pairs {
        code.push_str(&format!(
            "    ({to:?}, include_bytes!({:?})),\n",
            from.display().to_string()
        ));
    }
    code.push_str("];\n");
    code
}

/// Crate names of the first-party plugins (directory names under plugins/).
fn plugin_crates(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("plugins/ exists")
        .filter_map(Result::ok)
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("processor-") || n.starts_with("flusher-"))
        .collect();
    names.sort();
    names
}

fn build_plugins(workspace: &Path) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace).arg("plugins");
    // Do not leak the outer build's settings into the wasm build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("run cargo to build the plugins");
    if !status.success() {
        panic!(
            "building the plugins for wasm32-wasip2 failed (see above). \
             If the target is missing: rustup target add wasm32-wasip2"
        );
    }
    workspace.join("target/plugins/wasm32-wasip2/plugin")
}
