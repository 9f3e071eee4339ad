//! The Rust SDK that `gleaner plugin new --lang rust` vendors into a
//! project, so it builds anywhere with only cargo and the wasm32-wasip2
//! target: `vendor/gleaner-sdk` and `vendor/gleaner-kernels` (this
//! binary's own sources, embedded by `build.rs`), `wit/`, and this build's
//! `Cargo.lock`, so the project resolves the crate versions Gleaner was
//! tested with. Their manifests are made to stand alone here.
//!
//! Pure text; writes nothing itself.

include!(concat!(env!("OUT_DIR"), "/rust_sdk.rs"));

/// Where the workspace manifest sits among [`RUST_SDK`].
const WORKSPACE: &str = "(workspace)/Cargo.toml";

/// (path in the project, contents) of the vendored SDK.
pub fn files() -> Vec<(String, Vec<u8>)> {
    let workspace = RUST_SDK
        .iter()
        .find(|(p, _)| *p == WORKSPACE)
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    RUST_SDK
        .iter()
        .filter(|(p, _)| *p != WORKSPACE)
        .map(|(path, bytes)| {
            let bytes = if path.starts_with("vendor/") && path.ends_with("/Cargo.toml") {
                standalone(&String::from_utf8_lossy(bytes), &workspace).into_bytes()
            } else {
                bytes.to_vec()
            };
            ((*path).to_owned(), bytes)
        })
        .collect()
}

/// The `key = value` lines of `section` in `toml`.
fn section<'a>(toml: &'a str, section: &str) -> Vec<(&'a str, &'a str)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in toml.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            inside = t == format!("[{section}]");
        } else if inside
            && !t.starts_with('#')
            && let Some((k, v)) = t.split_once('=')
        {
            out.push((k.trim(), v.trim()));
        }
    }
    out
}

/// A dependency's value with its path, if any, pointed at its vendored
/// sibling.
fn sibling(name: &str, value: &str) -> String {
    match value.find("path = \"") {
        Some(at) => {
            let rest = &value[at + 8..];
            let end = rest.find('"').unwrap_or(0);
            format!("{}path = \"../{name}\"{}", &value[..at], &rest[end + 1..])
        }
        None => value.to_owned(),
    }
}

/// A member manifest made to stand alone: settings and dependencies it
/// inherits from `workspace` written out, path dependencies pointed at
/// their vendored siblings, workspace lints dropped.
pub fn standalone(member: &str, workspace: &str) -> String {
    let package = section(workspace, "workspace.package");
    let deps = section(workspace, "workspace.dependencies");
    let find = |list: &[(&str, &str)], key: &str| {
        list.iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
    };
    let mut out = String::from("# Vendored by `gleaner plugin new`: Gleaner's own SDK source.\n");
    let mut current = String::new();
    for line in member.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            current = t.to_owned();
        }
        if current == "[lints]" {
            continue;
        }
        let in_package = current == "[package]";
        let resolved = if let Some(key) = t.strip_suffix(".workspace = true") {
            let from = if in_package { &package } else { &deps };
            find(from, key).map(|v| format!("{key} = {}", sibling(key, &v)))
        } else if let Some((key, v)) = t.split_once('=')
            && let Some(extra) = v.trim().strip_prefix("{ workspace = true")
        {
            let key = key.trim();
            find(&deps, key).map(|base| {
                let base = sibling(key, &base);
                let extra = extra.trim_end_matches('}').trim().trim_start_matches(',');
                match base.strip_prefix('{') {
                    Some(inner) => format!(
                        "{key} = {{ {}, {} }}",
                        inner.trim_end_matches('}').trim(),
                        extra.trim()
                    ),
                    None => format!("{key} = {{ version = {base}, {} }}", extra.trim()),
                }
            })
        } else {
            None
        };
        out.push_str(resolved.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendored_manifests_stand_alone() {
        let files = files();
        let text = |p: &str| -> String {
            let (_, b) = files.iter().find(|(f, _)| f == p).unwrap();
            String::from_utf8_lossy(b).into_owned()
        };
        let sdk = text("vendor/gleaner-sdk/Cargo.toml");
        assert!(!sdk.contains("workspace"), "{sdk}");
        assert!(!sdk.contains("[lints]"), "{sdk}");
        assert!(sdk.contains("\nversion = \"0.1.0\"\n"), "{sdk}");
        assert!(sdk.contains("\nedition = \"2024\"\n"), "{sdk}");
        assert!(
            sdk.contains(
                "gleaner-kernels = { path = \"../gleaner-kernels\", default-features = false }"
            ),
            "{sdk}"
        );
        assert!(
            sdk.contains("gleaner-kernels = { path = \"../gleaner-kernels\", default-features = false, features = [\"regex\"] }"),
            "{sdk}"
        );
        assert!(sdk.contains("wit-bindgen = { version = \"0.63\""), "{sdk}");
        let kernels = text("vendor/gleaner-kernels/Cargo.toml");
        assert!(!kernels.contains("workspace"), "{kernels}");
        assert!(
            kernels.contains("regex = { version = \"1\", optional = true }"),
            "{kernels}"
        );
        // The sources, the WIT the bindings read, and the lock file.
        for p in [
            "vendor/gleaner-sdk/src/lib.rs",
            "vendor/gleaner-kernels/src/value.rs",
            "wit/plugin.wit",
            "wit/deps/tls-0.1.0/tls.wit",
            "Cargo.lock",
        ] {
            assert!(files.iter().any(|(f, _)| f == p), "{p}");
        }
        assert!(files.iter().all(|(f, _)| !f.starts_with("(workspace)")));
    }
}
