//! `gleaner plugin …`: the subcommands that make, build, test and pack
//! plugins, parsed here and carried out by `devkit` and `plugin::bundle`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Create a buildable plugin project NAME (with a sample and a test)
    /// in Rust, C or Python.
    New {
        /// The plugin's name (a directory of that name is created).
        name: String,
        /// Language.
        #[arg(long, value_enum)]
        lang: crate::tooling::devkit::Lang,
        /// `processor` or `flusher`.
        #[arg(long, default_value = "processor")]
        kind: String,
        /// Where to create it (default: here).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Rust: depend on this sdk/rust of a Gleaner checkout instead of
        /// the SDK vendored into the project (for SDK development).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build the plugin project in DIR (default: here) to DIR/plugin.wasm.
    Build {
        /// The project directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Run a plugin component in the real runtime on sample lines and
    /// print the events a processor returns (JSON lines).
    Test {
        /// The component (.wasm).
        component: PathBuf,
        /// Sample lines, one event each.
        #[arg(long)]
        input: PathBuf,
        /// The plugin's config as JSON or YAML (default `{}`).
        #[arg(long)]
        config: Option<String>,
        /// Events per batch.
        #[arg(long, default_value_t = 1024)]
        batch: usize,
        /// Every event's timestamp in ns since the epoch.
        #[arg(long, default_value_t = 0)]
        timestamp: i64,
        /// Compare the output with this file; exit 1 if it differs.
        #[arg(long)]
        expect: Option<PathBuf>,
        /// Flushers: a directory they may use (repeatable).
        #[arg(long = "grant-dir")]
        grant_dirs: Vec<PathBuf>,
        /// Flushers: a host:port they may reach (repeatable).
        #[arg(long = "grant-host")]
        grant_hosts: Vec<String>,
        /// Flushers: may write to stdout.
        #[arg(long)]
        grant_stdout: bool,
    },
    /// Write the WASI preview1 reactor adapter that `wasm-tools component
    /// new --adapt` needs to turn a wasm32-wasi core module (C, via
    /// wasi-libc) into a component; it matches this Gleaner's wasmtime.
    Adapter {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
    /// Make a plugin bundle (component + manifest with its SHA-256) in a
    /// plugins directory: written under a hidden name, then renamed into
    /// place, so a watching agent never sees half of it.
    Pack {
        /// The component (.wasm).
        component: PathBuf,
        /// Bundle name (what pipelines reference).
        #[arg(long)]
        name: String,
        /// Semantic version, e.g. 1.2.0.
        #[arg(long)]
        version: String,
        /// `processor` or `flusher`.
        #[arg(long)]
        kind: String,
        /// Default plugin config (a YAML or JSON file with a mapping).
        #[arg(long)]
        config: Option<PathBuf>,
        /// A `host:port` the flusher needs (repeatable).
        #[arg(long = "needs-host")]
        needs_hosts: Vec<String>,
        /// A directory the flusher needs (repeatable).
        #[arg(long = "needs-dir")]
        needs_dirs: Vec<PathBuf>,
        /// The flusher needs Gleaner's stdout.
        #[arg(long)]
        needs_stdout: bool,
        /// One line for humans.
        #[arg(long)]
        description: Option<String>,
        /// The plugins directory.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Carries out `cmd`. `Ok(false)`: `plugin test --expect` found the output
/// different (exit code 1).
pub fn run(cmd: PluginCommand) -> anyhow::Result<bool> {
    let done = match cmd {
        PluginCommand::New {
            name,
            lang,
            kind,
            dir,
            sdk,
        } => plugin_new(&name, lang, &kind, &dir, sdk),
        PluginCommand::Build { dir } => crate::tooling::devkit::build(&dir).map(|p| {
            println!("{}", p.display());
        }),
        PluginCommand::Test {
            component,
            input,
            config,
            batch,
            timestamp,
            expect,
            grant_dirs,
            grant_hosts,
            grant_stdout,
        } => {
            let grants = crate::plugin::Grants {
                dirs: grant_dirs,
                hosts: grant_hosts,
                stdout: grant_stdout,
            };
            return plugin_test(component, input, config, batch, timestamp, grants, expect);
        }
        PluginCommand::Adapter { out } => std::fs::write(
            &out,
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .with_context(|| format!("--out: cannot write {}", out.display())),
        PluginCommand::Pack {
            component,
            name,
            version,
            kind,
            config,
            needs_hosts,
            needs_dirs,
            needs_stdout,
            description,
            out,
        } => pack(
            &component,
            crate::plugin::bundle::Manifest {
                name,
                version,
                kind: match kind.as_str() {
                    "processor" => crate::plugin::bundle::ManifestKind::Processor,
                    "flusher" => crate::plugin::bundle::ManifestKind::Flusher,
                    other => anyhow::bail!("--kind: `{other}` is not processor or flusher"),
                },
                component: String::new(),
                sha256: String::new(),
                config: None,
                grants: crate::plugin::bundle::Needs {
                    hosts: needs_hosts,
                    dirs: needs_dirs,
                    stdout: needs_stdout,
                },
                description,
            },
            config.as_deref(),
            &out,
        ),
    };
    done.map(|()| true)
}

/// `gleaner plugin new`.
fn plugin_new(
    name: &str,
    lang: crate::tooling::devkit::Lang,
    kind: &str,
    dir: &Path,
    sdk: Option<PathBuf>,
) -> anyhow::Result<()> {
    let kind = match kind {
        "processor" => crate::plugin::bundle::ManifestKind::Processor,
        "flusher" => crate::plugin::bundle::ManifestKind::Flusher,
        other => anyhow::bail!("--kind: `{other}` is not processor or flusher"),
    };
    let sdk = sdk.map(|p| std::path::absolute(&p).unwrap_or(p));
    let created = crate::tooling::devkit::new(lang, kind, name, dir, sdk.as_deref())?;
    println!("{}", created.display());
    Ok(())
}

/// `gleaner plugin test`: true if the output is as expected (or nothing
/// was expected).
fn plugin_test(
    component: PathBuf,
    input: PathBuf,
    config: Option<String>,
    batch: usize,
    timestamp: i64,
    grants: crate::plugin::Grants,
    expect: Option<PathBuf>,
) -> anyhow::Result<bool> {
    let config = match config {
        None => "{}".to_owned(),
        Some(text) => {
            let v: serde_json::Value =
                serde_yaml_ng::from_str(&text).with_context(|| "--config: not JSON or YAML")?;
            v.to_string()
        }
    };
    let run = crate::tooling::devkit::TestRun {
        component,
        input,
        config,
        batch,
        grants,
        timestamp,
    };
    let mut out = Vec::new();
    let summary = crate::tooling::devkit::test(&run, &mut out)?;
    std::io::Write::write_all(&mut std::io::stdout(), &out)?;
    eprintln!(
        "{} {} lines in, {} events {}, {:.1} ms in plugin calls{}{}",
        summary.kind,
        summary.lines,
        summary.events_out,
        if summary.kind == crate::plugin::PluginKind::Processor {
            "out"
        } else {
            "flushed"
        },
        summary.call_time.as_secs_f64() * 1e3,
        if summary.retried + summary.rejected == 0 {
            String::new()
        } else {
            format!(
                ", {} to retry and {} refused by the destination",
                summary.retried, summary.rejected
            )
        },
        if summary.counters.is_empty() {
            String::new()
        } else {
            format!(", counters {:?}", summary.counters)
        }
    );
    let Some(path) = expect else {
        return Ok(true);
    };
    let want = std::fs::read(&path)
        .with_context(|| format!("--expect: cannot read {}", path.display()))?;
    if want == out {
        eprintln!("output matches {}", path.display());
        return Ok(true);
    }
    let (got, want) = (
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&want),
    );
    let line = got
        .lines()
        .zip(want.lines())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| got.lines().count().min(want.lines().count()));
    eprintln!(
        "output differs from {} at line {}:
  got:  {}
  want: {}",
        path.display(),
        line + 1,
        got.lines().nth(line).unwrap_or("(nothing)"),
        want.lines().nth(line).unwrap_or("(nothing)")
    );
    Ok(false)
}

/// `gleaner plugin pack`.
fn pack(
    component: &Path,
    mut manifest: crate::plugin::bundle::Manifest,
    config: Option<&Path>,
    out: &Path,
) -> anyhow::Result<()> {
    if let Some(path) = config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--config: cannot read {}", path.display()))?;
        let value: serde_json::Value = serde_yaml_ng::from_str(&text)
            .with_context(|| format!("--config: {} is not YAML or JSON", path.display()))?;
        if !value.is_object() {
            anyhow::bail!("--config: {} must hold a mapping", path.display());
        }
        manifest.config = Some(value);
    }
    let dir =
        crate::plugin::bundle::pack(component, &manifest, out).map_err(|e| anyhow::anyhow!(e))?;
    println!("{}", dir.display());
    Ok(())
}
