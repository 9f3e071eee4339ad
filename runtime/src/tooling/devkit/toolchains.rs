//! Where `gleaner plugin build` finds the C and Python toolchains: the
//! variable naming each tool (`WASM_TOOLS`, `COMPONENTIZE_PY`), else
//! `PATH`, else the tools cache `scripts/setup.sh --sdks` installs into
//! (`$GLEANER_TOOLS`, else `$XDG_CACHE_HOME/gleaner/tools`, else
//! `~/.cache/gleaner/tools`); otherwise an error that says how to install
//! it. Looks only; installs nothing.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// A tool the build needs.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    /// Its command name.
    pub name: &'static str,
    /// The variable that names it.
    pub var: &'static str,
    /// Where it is in the tools cache.
    pub cached: &'static str,
    /// How to install it.
    pub install: &'static str,
}

/// `wasm-tools`, which turns a C plugin's module into a component.
pub const WASM_TOOLS: Tool = Tool {
    name: "wasm-tools",
    var: "WASM_TOOLS",
    cached: "bin/wasm-tools",
    install: "cargo install --locked --root ~/.cache/gleaner/tools wasm-tools@1.262.0 --no-default-features --features component",
};

/// `componentize-py`, which builds a Python plugin.
pub const COMPONENTIZE_PY: Tool = Tool {
    name: "componentize-py",
    var: "COMPONENTIZE_PY",
    cached: "py/bin/componentize-py",
    install: "python3 -m venv ~/.cache/gleaner/tools/py && ~/.cache/gleaner/tools/py/bin/pip install componentize-py==0.25.1",
};

/// The tools cache `scripts/setup.sh` fills.
pub fn tools_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("GLEANER_TOOLS") {
        return Some(PathBuf::from(dir));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join("gleaner/tools"))
}

fn on_path(name: &str, path: Option<OsString>) -> Option<PathBuf> {
    std::env::split_paths(&path?)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Where `tool` is, or why it cannot be used and how to install it.
pub fn find(tool: Tool) -> anyhow::Result<PathBuf> {
    if let Some(given) = std::env::var_os(tool.var) {
        let given = PathBuf::from(given);
        // A bare name is looked up on PATH, as make would.
        let found = if given.components().count() == 1 {
            on_path(&given.to_string_lossy(), std::env::var_os("PATH"))
        } else {
            Some(given.clone()).filter(|p| is_executable(p))
        };
        return found.ok_or_else(|| {
            anyhow::anyhow!(
                "{}={} is not an executable file; install it with `{}` (or run scripts/setup.sh --sdks in a Gleaner checkout)",
                tool.var,
                given.display(),
                tool.install
            )
        });
    }
    if let Some(p) = on_path(tool.name, std::env::var_os("PATH")) {
        return Ok(p);
    }
    let cache = tools_dir();
    if let Some(p) = cache
        .as_ref()
        .map(|d| d.join(tool.cached))
        .filter(|p| is_executable(p))
    {
        return Ok(p);
    }
    anyhow::bail!(
        "{} not found: not in {}, not on PATH, not in the tools cache ({}). Install it with `{}` (or run scripts/setup.sh --sdks in a Gleaner checkout), or set {} to it",
        tool.name,
        tool.var,
        cache.map_or_else(
            || "none: no HOME".into(),
            |d| d.join(tool.cached).display().to_string()
        ),
        tool.install,
        tool.var
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_on_a_path_is_found_and_a_missing_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("wasm-tools");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        assert_eq!(
            on_path("wasm-tools", Some(dir.path().into())),
            None,
            "not executable"
        );
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(on_path("wasm-tools", Some(dir.path().into())), Some(exe));
        assert_eq!(on_path("componentize-py", Some(dir.path().into())), None);
        assert_eq!(on_path("wasm-tools", None), None);
    }
}
