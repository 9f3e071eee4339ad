//! Plugin developer commands: `gleaner plugin new` (a buildable plugin
//! with a test, from templates, in Rust, C or Python), `gleaner plugin
//! build` (runs that language's toolchain to a component) and `gleaner
//! plugin test` (runs a component in the real plugin host on sample lines
//! and prints the events it returns).
//!
//! Uses the plugin host the way a pipeline does (same engines, limits and
//! sandbox); starts no pipeline and touches no checkpoint.

mod templates;
mod toolchains;
mod vendor;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::model::event::Batch;
use crate::plugin::{
    Grants, Ident, Limits, PluginError, PluginHost, PluginKind, PluginSource, PluginSpec,
};

pub use templates::Lang;

/// What `gleaner plugin test` runs.
#[derive(Debug, Clone)]
pub struct TestRun {
    /// The component.
    pub component: PathBuf,
    /// Sample lines, one event each.
    pub input: PathBuf,
    /// The plugin config (JSON), `{}` if none.
    pub config: String,
    /// Events per batch.
    pub batch: usize,
    /// Flushers: what they may reach.
    pub grants: Grants,
    /// Every event's timestamp (ns), so a run is repeatable.
    pub timestamp: i64,
}

/// What a test run did.
#[derive(Debug, Clone)]
pub struct TestSummary {
    /// Processor or flusher.
    pub kind: PluginKind,
    /// Lines read.
    pub lines: usize,
    /// Events returned (processors) or delivered (flushers).
    pub events_out: usize,
    /// Flushers: events the destination asked for again, or refused.
    pub retried: usize,
    /// Flushers: events the destination refused for good.
    pub rejected: usize,
    /// Time in plugin calls.
    pub call_time: Duration,
    /// The plugin's own counters.
    pub counters: std::collections::BTreeMap<String, u64>,
}

/// Runs `run.component` on the lines of `run.input` in batches; a
/// processor's output events are written to `out` as JSON lines (the
/// format of the `file` and `stdout` flushers), a flusher delivers them
/// itself. Every event gets `run.timestamp` and the tag `source.path`
/// (the input path as given), so a run is repeatable.
pub fn test(run: &TestRun, out: &mut dyn Write) -> anyhow::Result<TestSummary> {
    let text = std::fs::read(&run.input)
        .with_context(|| format!("--input: cannot read {}", run.input.display()))?;
    let cache = std::env::temp_dir().join("gleaner-plugin-test-cache");
    let host = PluginHost::new(&cache).context("cannot set up the plugin host")?;
    let spec = PluginSpec {
        source: PluginSource::File(run.component.clone()),
        config_json: run.config.clone(),
        config_dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        limits: Limits::default(),
        grants: run.grants.clone(),
        tls: crate::plugin::TlsSpec::default(),
    };
    let ident = Ident {
        pipeline: Arc::from("plugin-test"),
        plugin: Arc::from(run.component.to_string_lossy().as_ref()),
    };
    // Whichever world it implements.
    let (kind, prepared) = match host.prepare(ident.clone(), PluginKind::Processor, &spec) {
        Ok(p) => (PluginKind::Processor, p),
        Err(PluginError::WrongKind { .. }) => (
            PluginKind::Flusher,
            host.prepare(ident, PluginKind::Flusher, &spec)
                .with_context(|| format!("cannot load {}", run.component.display()))?,
        ),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot load {}", run.component.display()));
        }
    };
    let mut instance = prepared
        .instance()
        .with_context(|| format!("{}: init", run.component.display()))?;
    let source = run.input.to_string_lossy().into_owned();
    let lines: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect();
    // A final newline ends the last line; it does not start another.
    let lines = match lines.split_last() {
        Some((&[], rest)) => rest,
        _ => &lines[..],
    };
    let mut summary = TestSummary {
        kind,
        lines: lines.len(),
        events_out: 0,
        retried: 0,
        rejected: 0,
        call_time: Duration::ZERO,
        counters: Default::default(),
    };
    let mut json = Vec::new();
    for chunk in lines.chunks(run.batch.max(1)) {
        let mut batch =
            Batch::with_tags(vec![("source.path".into(), source.clone())], chunk.len(), 0);
        for line in chunk {
            batch.push(run.timestamp, line);
        }
        let started = Instant::now();
        match kind {
            PluginKind::Processor => {
                let result = instance.process(&mut batch);
                summary.call_time += started.elapsed();
                let result = result.map_err(|e| anyhow::anyhow!("process: {e}"))?;
                summary.events_out += result.len();
                json.clear();
                gleaner_sdk::json::write_ndjson(&to_sdk(&result), &mut json);
                out.write_all(&json)?;
            }
            PluginKind::Flusher => {
                let result = instance.flush(&mut batch);
                summary.call_time += started.elapsed();
                let report = result.map_err(|e| anyhow::anyhow!("flush: {e}"))?;
                summary.events_out += batch.len() - report.retry.len() - report.rejected.len();
                summary.retried += report.retry.len();
                summary.rejected += report.rejected.len();
            }
        }
    }
    out.flush()?;
    summary.counters = prepared.stats().counters_snapshot();
    Ok(summary)
}

/// The host batch as the SDK's, for its JSON encoder.
fn to_sdk(b: &Batch) -> gleaner_sdk::Batch {
    let mut out = gleaner_sdk::BatchBuilder::with_capacity(b.len(), b.bodies.len());
    for (k, v) in &b.tags {
        out.set_tag(k, v);
    }
    let keys: Vec<gleaner_sdk::Key> = b.keys.iter().map(|k| out.key(k)).collect();
    let mut next = 0;
    let mut start = 0usize;
    for (i, (&ts, &end)) in b.timestamps.iter().zip(&b.body_ends).enumerate() {
        let mut e = out.push(ts, &b.bodies[start..end as usize]);
        e.set_severity(b.severities.get(i).copied().unwrap_or(0));
        start = end as usize;
        while next < b.field_count() && b.field(next).event as usize == i {
            let f = b.field(next);
            let v = &b.values[f.start as usize..(f.start + f.len) as usize];
            e.typed_by_key(keys[f.key as usize], f.ty, &String::from_utf8_lossy(v));
            next += 1;
        }
    }
    out.finish()
}

/// What `gleaner-plugin.yaml` in a plugin directory says (written by
/// `plugin new`, read by `plugin build`).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PluginProject {
    /// Its name.
    pub name: String,
    /// `rust`, `c` or `python`.
    pub lang: Lang,
    /// `processor` or `flusher`.
    pub kind: crate::plugin::bundle::ManifestKind,
}

/// The project file's name.
pub const PROJECT_FILE: &str = "gleaner-plugin.yaml";

/// Builds the plugin in `dir` with its language's toolchain; returns the
/// component (`dir/plugin.wasm`).
pub fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let project_file = dir.join(PROJECT_FILE);
    let text = std::fs::read_to_string(&project_file).with_context(|| {
        format!(
            "cannot read {} (is {} a plugin made by `gleaner plugin new`?)",
            project_file.display(),
            dir.display()
        )
    })?;
    let project: PluginProject = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{}: not a plugin project file", project_file.display()))?;
    let world = match project.kind {
        crate::plugin::bundle::ManifestKind::Processor => "processor",
        crate::plugin::bundle::ManifestKind::Flusher => "flusher",
    };
    let out = dir.join("plugin.wasm");
    let gleaner = std::env::current_exe().context("cannot find this gleaner binary")?;
    match project.lang {
        Lang::Rust => {
            run(Command::new(cargo()).current_dir(dir).args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
            ]))?;
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| dir.join("target"), PathBuf::from);
            let built = target
                .join("wasm32-wasip2/release")
                .join(format!("{}.wasm", project.name.replace('-', "_")));
            std::fs::copy(&built, &out)
                .with_context(|| format!("cannot copy {} to {}", built.display(), out.display()))?;
        }
        Lang::C => {
            // CC and the rest of the environment reach make too.
            let wasm_tools = toolchains::find(toolchains::WASM_TOOLS)?;
            run(Command::new("make")
                .current_dir(dir)
                .arg(format!("GLEANER={}", gleaner.display()))
                .arg(format!("WASM_TOOLS={}", wasm_tools.display())))?;
        }
        Lang::Python => {
            let tool = toolchains::find(toolchains::COMPONENTIZE_PY)?;
            run(Command::new(tool).current_dir(dir).args([
                "-d",
                "wit",
                "-w",
                world,
                "componentize",
                "app",
                "-p",
                ".",
                "-o",
                "plugin.wasm",
            ]))?;
        }
    }
    if !out.exists() {
        bail!("the build did not write {}", out.display());
    }
    Ok(out)
}

fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Runs a toolchain step; its output goes to stderr (stdout is for the
/// component's path).
fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let what = format!("{cmd:?}");
    let status = cmd
        .stdout(std::process::Stdio::from(std::io::stderr()))
        .status()
        .with_context(|| {
            format!("cannot run {what} (is the toolchain installed? see scripts/setup.sh)")
        })?;
    if !status.success() {
        bail!("{what} failed: {status}");
    }
    Ok(())
}

/// `gleaner plugin new`: writes a buildable plugin project `dir/name`.
pub fn new(
    lang: Lang,
    kind: crate::plugin::bundle::ManifestKind,
    name: &str,
    parent: &Path,
    rust_sdk: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        || name.starts_with(|c: char| c.is_ascii_digit())
    {
        bail!("`{name}` is not a plugin name: use letters, digits, - and _ (not a digit first)");
    }
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} exists already", dir.display());
    }
    let files = templates::files(lang, kind, name, rust_sdk)?;
    for (rel, bytes) in &files {
        let path = dir.join(rel);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(dir)
}
