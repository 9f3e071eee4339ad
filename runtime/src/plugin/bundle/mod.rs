//! Plugin bundles: the `plugins_dir` of versioned plugins. Each bundle is a
//! directory holding a component and a `manifest.yaml` (name, version,
//! kind, the component's SHA-256, a default config and the grants it
//! needs). Pipelines name a bundle as `name@version`, or `name` for the
//! newest version that checks.
//!
//! Owns scanning the directory, checking manifests and digests, and
//! resolving references. Reads files only: compiling (cached by digest) is
//! `plugin/`'s, and noticing changes and applying them is `reload/`'s.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::plugin::PluginKind;

/// The manifest's file name inside a bundle directory.
pub const MANIFEST: &str = "manifest.yaml";

/// A bundle's `manifest.yaml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Plugin name: letters, digits, `-`, `_` (what pipelines reference).
    pub name: String,
    /// Semantic version (`1.4.0`); `name` alone picks the highest.
    pub version: String,
    /// `processor` or `flusher`: the world the component implements.
    pub kind: ManifestKind,
    /// The component file, relative to the bundle directory. Default
    /// `plugin.wasm`.
    #[serde(default = "default_component")]
    pub component: String,
    /// SHA-256 of the component file, lowercase hex. A bundle whose
    /// component does not match is refused.
    pub sha256: String,
    /// Default plugin config; a pipeline's `config` keys override its
    /// top-level keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    /// What the plugin needs; a pipeline using it must grant each of these.
    #[serde(default, skip_serializing_if = "Needs::is_empty")]
    pub grants: Needs,
    /// One line for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn default_component() -> String {
    "plugin.wasm".into()
}

/// The world named in a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ManifestKind {
    /// `gleaner:plugin/processor`.
    Processor,
    /// `gleaner:plugin/flusher`.
    Flusher,
}

impl From<ManifestKind> for PluginKind {
    fn from(k: ManifestKind) -> PluginKind {
        match k {
            ManifestKind::Processor => PluginKind::Processor,
            ManifestKind::Flusher => PluginKind::Flusher,
        }
    }
}

/// Grants a bundle needs (as the config file spells them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Needs {
    /// `host:port` destinations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Host directories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<PathBuf>,
    /// Gleaner's stdout.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stdout: bool,
}

impl Needs {
    fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.dirs.is_empty() && !self.stdout
    }
}

/// A bundle that checks.
#[derive(Debug, Clone, Serialize)]
pub struct Bundle {
    /// Its name.
    pub name: String,
    /// Its version.
    #[serde(serialize_with = "display")]
    pub version: semver::Version,
    /// Processor or flusher.
    #[serde(serialize_with = "display")]
    pub kind: PluginKind,
    /// Its directory.
    pub dir: PathBuf,
    /// The component file.
    pub component: PathBuf,
    /// The component's SHA-256 (checked).
    pub sha256: String,
    /// The manifest's default config.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_config: Option<serde_json::Value>,
    /// The grants it needs.
    #[serde(skip_serializing_if = "Needs::is_empty")]
    pub needs: Needs,
    /// The manifest's description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

impl Bundle {
    /// `name@version`.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// The plugin config handed to `init`: the manifest's default config
    /// with the pipeline's top-level keys laid over it.
    pub fn merged_config(&self, pipeline: Option<&serde_json::Value>) -> serde_json::Value {
        let pipeline = pipeline.filter(|v| !v.is_null());
        match (&self.default_config, pipeline) {
            (Some(serde_json::Value::Object(base)), Some(serde_json::Value::Object(over))) => {
                let mut merged = base.clone();
                for (k, v) in over {
                    merged.insert(k.clone(), v.clone());
                }
                serde_json::Value::Object(merged)
            }
            (_, Some(v)) => v.clone(),
            (Some(d), None) => d.clone(),
            (None, None) => serde_json::json!({}),
        }
    }
}

/// A bundle directory that does not check, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Refused {
    /// The bundle directory.
    pub dir: PathBuf,
    /// `name@version` if the manifest got that far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What is wrong.
    pub reason: String,
}

/// What a scan of the plugins directory found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Registry {
    /// The directory.
    pub dir: PathBuf,
    /// Bundles that check, by name then version (ascending).
    pub bundles: Vec<Bundle>,
    /// Bundle directories that do not.
    pub refused: Vec<Refused>,
}

/// Why a reference does not resolve.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The reference is not `name` or `name@version`.
    #[error("`{0}` is not NAME or NAME@VERSION (a semantic version, e.g. 1.2.0)")]
    Syntax(String),
    /// No bundle of that name and version checks.
    #[error("no bundle `{reference}` in {dir}{available}")]
    Missing {
        /// As written.
        reference: String,
        /// The plugins directory.
        dir: PathBuf,
        /// What there is instead, as text.
        available: String,
    },
    /// It exists but was refused.
    #[error("bundle `{id}` in {dir} is refused: {reason}")]
    Refused {
        /// `name@version`.
        id: String,
        /// Its directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
}

impl Registry {
    /// Reads every bundle directory directly under `dir` (`dir` itself must
    /// exist). Bundles that do not check are listed in `refused` (and
    /// logged once per scan by the caller, if it wants).
    pub fn scan(dir: &Path) -> std::io::Result<Registry> {
        let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            // Hidden entries are installs in progress (write to `.tmp-x`,
            // then rename into place).
            .filter(|p| {
                p.is_dir()
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        subdirs.sort();
        let mut reg = Registry {
            dir: dir.to_path_buf(),
            ..Registry::default()
        };
        for sub in subdirs {
            match read_bundle(&sub) {
                Ok(b) => {
                    if let Some(first) = reg
                        .bundles
                        .iter()
                        .find(|o| o.name == b.name && o.version == b.version)
                    {
                        reg.refused.push(Refused {
                            id: Some(b.id()),
                            reason: format!(
                                "{} is also in {}; remove one",
                                b.id(),
                                first.dir.display()
                            ),
                            dir: sub,
                        });
                    } else {
                        reg.bundles.push(b);
                    }
                }
                Err((id, reason)) => reg.refused.push(Refused {
                    dir: sub,
                    id,
                    reason,
                }),
            }
        }
        reg.bundles
            .sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
        Ok(reg)
    }

    /// The bundle `reference` (`name@version`, or `name`: the highest
    /// version that checks) names.
    pub fn resolve(&self, reference: &str) -> Result<&Bundle, ResolveError> {
        let (name, version) = match reference.split_once('@') {
            Some((n, v)) => (
                n,
                Some(
                    semver::Version::parse(v)
                        .map_err(|_| ResolveError::Syntax(reference.to_owned()))?,
                ),
            ),
            None => (reference, None),
        };
        if !valid_name(name) {
            return Err(ResolveError::Syntax(reference.to_owned()));
        }
        let found = self
            .bundles
            .iter()
            .rev()
            .find(|b| b.name == name && version.as_ref().is_none_or(|v| *v == b.version));
        if let Some(b) = found {
            return Ok(b);
        }
        let wanted = version.as_ref().map(|v| format!("{name}@{v}"));
        if let Some(r) = self.refused.iter().find(|r| match (&r.id, &wanted) {
            (Some(id), Some(w)) => id == w,
            (Some(id), None) => id.split_once('@').is_some_and(|(n, _)| n == name),
            _ => false,
        }) {
            return Err(ResolveError::Refused {
                id: r.id.clone().unwrap_or_default(),
                dir: r.dir.clone(),
                reason: r.reason.clone(),
            });
        }
        let same: Vec<String> = self
            .bundles
            .iter()
            .filter(|b| b.name == name)
            .map(Bundle::id)
            .collect();
        let available = if same.is_empty() {
            let all: Vec<String> = self.bundles.iter().map(Bundle::id).collect();
            if all.is_empty() {
                " (it holds no bundles)".to_owned()
            } else {
                format!(" (bundles: {})", all.join(", "))
            }
        } else {
            format!(" (versions: {})", same.join(", "))
        };
        Err(ResolveError::Missing {
            reference: reference.to_owned(),
            dir: self.dir.clone(),
            available,
        })
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Reads and checks one bundle directory; on failure, its id if known and
/// why.
fn read_bundle(dir: &Path) -> Result<Bundle, (Option<String>, String)> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| (None, format!("cannot read {}: {e}", path.display())))?;
    let de = serde_yaml_ng::Deserializer::from_str(&text);
    let m: Manifest = serde_path_to_error::deserialize(de).map_err(|e| {
        (
            None,
            format!("{}: {}: {}", path.display(), e.path(), e.inner()),
        )
    })?;
    let bad = |id: Option<String>, key: &str, msg: String| {
        Err((id, format!("{}: {key}: {msg}", path.display())))
    };
    if !valid_name(&m.name) {
        return bad(
            None,
            "name",
            format!("`{}`: use letters, digits, - and _", m.name),
        );
    }
    let version = match semver::Version::parse(&m.version) {
        Ok(v) => v,
        Err(e) => {
            return bad(
                None,
                "version",
                format!("`{}` is not a semantic version: {e}", m.version),
            );
        }
    };
    let id = Some(format!("{}@{version}", m.name));
    let kind = PluginKind::from(m.kind);
    if kind == PluginKind::Processor && !m.grants.is_empty() {
        return bad(
            id,
            "grants",
            "processors get no grants: only flushers reach files or the network".into(),
        );
    }
    if m.config.as_ref().is_some_and(|c| !c.is_object()) {
        return bad(id, "config", "must be a mapping".into());
    }
    let expected = m.sha256.to_ascii_lowercase();
    if expected.len() != 64 || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
        return bad(id, "sha256", "must be 64 hex digits".into());
    }
    let component = dir.join(&m.component);
    if component.parent() != Some(dir) {
        return bad(
            id,
            "component",
            format!("`{}` must be a file name inside the bundle", m.component),
        );
    }
    let actual = file_digest(&component).map_err(|e| {
        (
            id.clone(),
            format!("cannot read {}: {e}", component.display()),
        )
    })?;
    if actual != expected {
        return bad(
            id,
            "sha256",
            format!(
                "{} has SHA-256 {actual}, the manifest says {expected}: refusing the bundle (a partial copy, or not the component the manifest describes)",
                component.display()
            ),
        );
    }
    Ok(Bundle {
        name: m.name,
        version,
        kind,
        dir: dir.to_path_buf(),
        component,
        sha256: actual,
        default_config: m.config,
        needs: m.grants,
        description: m.description,
    })
}

type DigestKey = (PathBuf, u64, Option<SystemTime>, u64);

/// SHA-256 of a file, remembered by path, size, mtime and inode so a
/// rescan does not hash unchanged components again.
pub fn file_digest(path: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    static SEEN: Mutex<Option<HashMap<DigestKey, String>>> = Mutex::new(None);
    let meta = std::fs::metadata(path)?;
    let key = (
        path.to_path_buf(),
        meta.len(),
        meta.modified().ok(),
        meta.ino(),
    );
    if let Some(d) = SEEN
        .lock()
        .ok()
        .and_then(|m| m.as_ref().and_then(|m| m.get(&key).cloned()))
    {
        return Ok(d);
    }
    let d = crate::plugin::digest(&std::fs::read(path)?);
    if let Ok(mut m) = SEEN.lock() {
        m.get_or_insert_with(HashMap::new).insert(key, d.clone());
    }
    Ok(d)
}

/// Writes a bundle for `component` into `out/<name>-<version>/`: the
/// component as `plugin.wasm` and a manifest with its digest. The
/// directory is written under a hidden name and renamed into place, so a
/// watching agent never sees half a bundle.
pub fn pack(
    component: &Path,
    manifest: &Manifest,
    out: &Path,
) -> Result<PathBuf, Box<dyn std::error::Error + Send + Sync>> {
    let version = semver::Version::parse(&manifest.version)
        .map_err(|e| format!("version `{}`: {e}", manifest.version))?;
    if !valid_name(&manifest.name) {
        return Err(format!("name `{}`: use letters, digits, - and _", manifest.name).into());
    }
    if manifest.kind == ManifestKind::Processor && !manifest.grants.is_empty() {
        return Err("processors get no grants: only flushers reach files or the network".into());
    }
    let bytes = std::fs::read(component)
        .map_err(|e| format!("cannot read {}: {e}", component.display()))?;
    let mut m = manifest.clone();
    m.component = default_component();
    m.sha256 = crate::plugin::digest(&bytes);
    let final_dir = out.join(format!("{}-{version}", m.name));
    if final_dir.exists() {
        return Err(format!("{} exists already", final_dir.display()).into());
    }
    let tmp = out.join(format!(".tmp-{}-{version}", m.name));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    std::fs::write(tmp.join(&m.component), &bytes)?;
    std::fs::write(tmp.join(MANIFEST), serde_yaml_ng::to_string(&m)?)?;
    std::fs::rename(&tmp, &final_dir)?;
    Ok(final_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(name: &str, version: &str, sha: &str) -> String {
        format!(
            "name: {name}\nversion: {version}\nkind: processor\nsha256: {sha}\nconfig: {{a: 1, b: 2}}\n"
        )
    }

    fn bundle(root: &Path, dir: &str, name: &str, version: &str, wasm: &[u8], sha: Option<&str>) {
        let d = root.join(dir);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("plugin.wasm"), wasm).unwrap();
        let sha = sha.map_or_else(|| crate::plugin::digest(wasm), str::to_owned);
        std::fs::write(d.join(MANIFEST), manifest(name, version, &sha)).unwrap();
    }

    #[test]
    fn resolves_exact_and_newest_valid_and_refuses_digest_mismatch() {
        let t = tempfile::tempdir().unwrap();
        bundle(t.path(), "m1", "mask", "1.2.0", b"one", None);
        bundle(t.path(), "m10", "mask", "1.10.0", b"ten", None);
        bundle(
            t.path(),
            "m2",
            "mask",
            "2.0.0",
            b"two",
            Some(&"0".repeat(64)),
        );
        bundle(t.path(), ".tmp-x", "mask", "3.0.0", b"three", None);
        bundle(t.path(), "dup", "mask", "1.2.0", b"other", None);
        let reg = Registry::scan(t.path()).unwrap();
        let ids: Vec<String> = reg.bundles.iter().map(Bundle::id).collect();
        assert_eq!(ids, ["mask@1.2.0", "mask@1.10.0"]);
        // Semantic, not lexical, order; a refused newer one is skipped.
        assert_eq!(reg.resolve("mask").unwrap().id(), "mask@1.10.0");
        assert_eq!(
            reg.resolve("mask@1.2.0").unwrap().sha256,
            crate::plugin::digest(b"other")
        );
        let e = reg.resolve("mask@2.0.0").unwrap_err().to_string();
        assert!(
            e.contains("bundle `mask@2.0.0`") && e.contains("the manifest says 0000"),
            "{e}"
        );
        assert!(e.contains(&crate::plugin::digest(b"two")), "{e}");
        let e = reg.resolve("mask@9.0.0").unwrap_err().to_string();
        assert!(e.ends_with("(versions: mask@1.2.0, mask@1.10.0)"), "{e}");
        assert!(matches!(
            reg.resolve("mask@x"),
            Err(ResolveError::Syntax(_))
        ));
        // `dup` sorts before `m1`: the later directory is the one refused.
        assert_eq!(reg.refused.len(), 2);
        assert!(
            reg.refused
                .iter()
                .any(|r| r.dir.ends_with("m1") && r.reason.contains("also in"))
        );
    }

    #[test]
    fn default_config_is_overlaid_by_the_pipeline() {
        let t = tempfile::tempdir().unwrap();
        bundle(t.path(), "m", "mask", "1.0.0", b"x", None);
        let reg = Registry::scan(t.path()).unwrap();
        let b = reg.resolve("mask").unwrap();
        assert_eq!(b.merged_config(None), serde_json::json!({"a": 1, "b": 2}));
        assert_eq!(
            b.merged_config(Some(&serde_json::json!({"b": 3, "c": 4}))),
            serde_json::json!({"a": 1, "b": 3, "c": 4})
        );
    }

    #[test]
    fn pack_writes_a_bundle_that_scans() {
        let t = tempfile::tempdir().unwrap();
        let wasm = t.path().join("c.wasm");
        std::fs::write(&wasm, b"component").unwrap();
        let out = t.path().join("plugins");
        std::fs::create_dir(&out).unwrap();
        let m = Manifest {
            name: "f".into(),
            version: "0.1.0".into(),
            kind: ManifestKind::Flusher,
            component: String::new(),
            sha256: String::new(),
            config: None,
            grants: Needs {
                stdout: true,
                ..Needs::default()
            },
            description: None,
        };
        let dir = pack(&wasm, &m, &out).unwrap();
        assert_eq!(dir, out.join("f-0.1.0"));
        let reg = Registry::scan(&out).unwrap();
        assert!(reg.refused.is_empty(), "{:?}", reg.refused);
        let b = reg.resolve("f@0.1.0").unwrap();
        assert_eq!(b.kind, PluginKind::Flusher);
        assert!(b.needs.stdout);
        assert!(pack(&wasm, &m, &out).is_err());
    }
}
