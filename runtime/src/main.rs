//! The `gleaner` binary: CLI, logging, signals. Everything else lives in the
//! library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gleaner::checkpoint::CheckpointStore;
use gleaner::config::{self, Config};
use gleaner::pipeline::{self, PreparedPipeline};
use gleaner::plugin::PluginHost;
use gleaner::reload::CONFIG_OWNER;
use gleaner::supervisor::{self, Supervisor};

#[derive(Parser)]
#[command(
    name = "gleaner",
    version,
    about = "Log collector with WebAssembly processors and flushers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipelines of a config file until SIGTERM or SIGINT.
    Run {
        /// The YAML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Read the files present at start to their end, deliver everything,
        /// and exit (for one-off imports and demos).
        #[arg(long)]
        exit_on_eof: bool,
    },
    /// Check a config file, including each plugin's own config, and exit.
    Validate {
        /// The YAML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Measure end-to-end throughput on generated nginx logs, next to a
    /// native baseline.
    Bench {
        /// Size of the generated log in MiB.
        #[arg(long, default_value_t = 256)]
        mib: usize,
        /// Working directory, kept afterwards (default: a temporary directory, removed).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Only run scenarios whose name contains this.
        #[arg(long)]
        filter: Option<String>,
    },
    /// Work with plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Print the CustomResourceDefinitions of `GleanerPipeline` and
    /// `ClusterGleanerPipeline` (YAML, as in deploy/kubernetes/crd.yaml).
    Crd,
    /// The native baseline of `bench` (run by `bench` as a child process).
    #[command(hide = true)]
    BenchNative {
        #[arg(long, value_enum)]
        mode: gleaner::bench::NativeMode,
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
    },
    /// Run a command and print its wall time, CPU time and peak RSS as
    /// JSON (as `bench` measures its children). Measuring through this
    /// small process keeps a large parent's memory out of the child's peak
    /// RSS, which Linux carries across fork and exec.
    #[command(hide = true)]
    Measure {
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Create a buildable plugin project NAME (with a sample and a test)
    /// in Rust, C or Python.
    New {
        /// The plugin's name (a directory of that name is created).
        name: String,
        /// Language.
        #[arg(long, value_enum)]
        lang: gleaner::devkit::Lang,
        /// `processor` or `flusher`.
        #[arg(long, default_value = "processor")]
        kind: String,
        /// Where to create it (default: here).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Rust: the path of Gleaner's sdk/rust (default: the one this
        /// gleaner was built from).
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

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GLEANER_LOG")
                .unwrap_or_else(|_| "info,wasmtime=warn".into()),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            config,
            exit_on_eof,
        } => run(&config, exit_on_eof),
        Command::Validate { config } => validate(&config),
        Command::Bench { mib, dir, filter } => bench(mib, dir, filter),
        Command::Plugin(PluginCommand::New {
            name,
            lang,
            kind,
            dir,
            sdk,
        }) => plugin_new(&name, lang, &kind, &dir, sdk),
        Command::Plugin(PluginCommand::Build { dir }) => gleaner::devkit::build(&dir).map(|p| {
            println!("{}", p.display());
        }),
        Command::Plugin(PluginCommand::Test {
            component,
            input,
            config,
            batch,
            timestamp,
            expect,
            grant_dirs,
            grant_hosts,
            grant_stdout,
        }) => {
            let grants = gleaner::plugin::Grants {
                dirs: grant_dirs,
                hosts: grant_hosts,
                stdout: grant_stdout,
            };
            match plugin_test(component, input, config, batch, timestamp, grants, expect) {
                Ok(true) => Ok(()),
                Ok(false) => return ExitCode::from(1),
                Err(e) => Err(e),
            }
        }
        Command::Plugin(PluginCommand::Adapter { out }) => std::fs::write(
            &out,
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .with_context(|| format!("--out: cannot write {}", out.display())),
        Command::Plugin(PluginCommand::Pack {
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
        }) => pack(
            &component,
            gleaner::bundle::Manifest {
                name,
                version,
                kind: match kind.as_str() {
                    "processor" => gleaner::bundle::ManifestKind::Processor,
                    "flusher" => gleaner::bundle::ManifestKind::Flusher,
                    other => {
                        eprintln!("error: --kind: `{other}` is not processor or flusher");
                        return ExitCode::from(2);
                    }
                },
                component: String::new(),
                sha256: String::new(),
                config: None,
                grants: gleaner::bundle::Needs {
                    hosts: needs_hosts,
                    dirs: needs_dirs,
                    stdout: needs_stdout,
                },
                description,
            },
            config.as_deref(),
            &out,
        ),
        Command::Crd => gleaner::crd::types::crd_yaml()
            .map(|y| print!("{y}"))
            .map_err(anyhow::Error::from),
        Command::BenchNative {
            mode,
            input,
            output,
        } => gleaner::bench::native(mode, &input, &output).map(|_| ()),
        Command::Measure { command } => {
            // The child's stdout goes to stderr: stdout carries the figures.
            let mut child = std::process::Command::new(&command[0]);
            child.args(&command[1..]).stdout(std::io::stderr());
            gleaner::bench::run_measured(&mut child).map(|u| {
                println!(
                    r#"{{"wall":{},"cpu":{},"max_rss_kib":{}}}"#,
                    u.wall, u.cpu, u.max_rss_kib
                )
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `gleaner plugin new`.
fn plugin_new(
    name: &str,
    lang: gleaner::devkit::Lang,
    kind: &str,
    dir: &Path,
    sdk: Option<PathBuf>,
) -> anyhow::Result<()> {
    let kind = match kind {
        "processor" => gleaner::bundle::ManifestKind::Processor,
        "flusher" => gleaner::bundle::ManifestKind::Flusher,
        other => anyhow::bail!("--kind: `{other}` is not processor or flusher"),
    };
    // The sdk/rust this binary was built from, if it is still there.
    let sdk = sdk.or_else(|| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/rust");
        p.join("Cargo.toml")
            .exists()
            .then(|| gleaner_sdk::normalize_path(&p))
    });
    let sdk = sdk.map(|p| std::path::absolute(&p).unwrap_or(p));
    let created = gleaner::devkit::new(lang, kind, name, dir, sdk.as_deref())?;
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
    grants: gleaner::plugin::Grants,
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
    let run = gleaner::devkit::TestRun {
        component,
        input,
        config,
        batch,
        grants,
        timestamp,
    };
    let mut out = Vec::new();
    let summary = gleaner::devkit::test(&run, &mut out)?;
    std::io::Write::write_all(&mut std::io::stdout(), &out)?;
    eprintln!(
        "{} {} lines in, {} events {}, {:.1} ms in plugin calls{}",
        summary.kind,
        summary.lines,
        summary.events_out,
        if summary.kind == gleaner::plugin::PluginKind::Processor {
            "out"
        } else {
            "flushed"
        },
        summary.call_time.as_secs_f64() * 1e3,
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
    mut manifest: gleaner::bundle::Manifest,
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
    let dir = gleaner::bundle::pack(component, &manifest, out).map_err(|e| anyhow::anyhow!(e))?;
    println!("{}", dir.display());
    Ok(())
}

/// What `run` and `validate` start from.
struct Prepared {
    config: Config,
    store: Arc<CheckpointStore>,
    pipelines: Vec<PreparedPipeline>,
    host: Arc<PluginHost>,
    /// `run` only: the lock on `data_dir`, held until the process ends.
    _lock: Option<gleaner::checkpoint::DataDirLock>,
}

/// Loads the config, the checkpoints, and prepares every pipeline; nothing
/// runs yet. For `run` (`lock`), also takes the lock on `data_dir` and
/// checks that state can be written there. A refused config leaves
/// nothing behind: the directories this attempt created are removed.
fn prepare_all(path: &Path, lock: bool) -> anyhow::Result<Prepared> {
    let config = config::load(path)?;
    let created = gleaner::checkpoint::Created::before(&state_paths(&config));
    let result = prepare_checked(path, config, lock);
    if result.is_err() {
        created.undo();
    }
    result
}

/// Directories a start may create: `data_dir`, the plugin cache, each
/// flusher's granted directories and disk buffer.
fn state_paths(config: &Config) -> Vec<PathBuf> {
    let mut paths = vec![
        config.data_dir.clone(),
        config.plugin_cache_dir.clone(),
        config.data_dir.join("buffer"),
    ];
    for p in &config.pipelines {
        paths.push(config.data_dir.join("buffer").join(&p.name));
        for (i, f) in p.flushers.iter().enumerate() {
            paths.push(
                config
                    .data_dir
                    .join("buffer")
                    .join(&p.name)
                    .join(i.to_string()),
            );
            paths.extend(f.spec.grants.dirs.iter().cloned());
        }
    }
    paths
}

fn prepare_checked(path: &Path, config: Config, lock: bool) -> anyhow::Result<Prepared> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "{}: data_dir: cannot create {}",
            path.display(),
            config.data_dir.display()
        )
    })?;
    let lock = if lock {
        Some(
            gleaner::checkpoint::DataDirLock::acquire(&config.data_dir)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        )
    } else {
        None
    };
    let store = CheckpointStore::open(&config.data_dir, config.checkpoint_stale_after)?;
    if lock.is_some() {
        // Without writable state every later start would look like a first
        // one (and `start_at: end` skip what was written meanwhile).
        store.probe_write().map_err(|e| {
            anyhow::anyhow!(
                "{}: data_dir: cannot write state in {}: {e}; free space or fix permissions, then start again",
                path.display(),
                config.data_dir.display()
            )
        })?;
    }
    let host = Arc::new(
        PluginHost::new(&config.plugin_cache_dir)
            .context("cannot set up the WebAssembly engine")?,
    );
    let mut prepared = Vec::new();
    for p in &config.pipelines {
        let ready = pipeline::prepare(p, &host, &config.data_dir)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        prepared.push(ready);
    }
    Ok(Prepared {
        config,
        store,
        pipelines: prepared,
        host,
        _lock: lock,
    })
}

fn bench(mib: usize, dir: Option<PathBuf>, filter: Option<String>) -> anyhow::Result<()> {
    // A directory the user names is kept (data and all) for profiling; a
    // temporary one is removed.
    let (dir, temporary) = match dir {
        Some(d) => (d, false),
        None => (
            std::env::temp_dir().join(format!("gleaner-bench-{}", std::process::id())),
            true,
        ),
    };
    let result = gleaner::bench::run(&gleaner::bench::BenchOptions {
        mib,
        dir: dir.clone(),
        filter,
    });
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn validate(path: &Path) -> anyhow::Result<()> {
    let Prepared { config, .. } = prepare_all(path, false)?;
    println!(
        "{}: OK ({} pipelines)",
        path.display(),
        config.pipelines.len()
    );
    Ok(())
}

fn run(path: &Path, exit_on_eof: bool) -> anyhow::Result<()> {
    let Prepared {
        config,
        store,
        pipelines: prepared,
        host,
        _lock,
    } = prepare_all(path, true)?;
    raise_fd_limit();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])
    .context("cannot install signal handlers")?;
    let supervisor = Supervisor::new(supervisor::Context {
        host,
        store: store.clone(),
        data_dir: config.data_dir.clone(),
        grace: config.shutdown_timeout,
        exit_on_eof,
    });
    for p in prepared {
        supervisor.start(CONFIG_OWNER, p)?;
    }
    // Reloads (SIGHUP, the file changing, the API), except for one-off runs.
    let reloader = if exit_on_eof {
        None
    } else {
        Some(gleaner::reload::spawn(
            path.to_path_buf(),
            config.clone(),
            supervisor.clone(),
        )?)
    };
    let grace = config.shutdown_timeout;
    let sup = supervisor.clone();
    let hup = reloader.clone();
    std::thread::Builder::new().name("gleaner-signals".into()).spawn(move || {
        let mut stops = 0;
        for sig in signals.forever() {
            if sig == signal_hook::consts::SIGHUP {
                match &hup {
                    Some(r) => r.request("signal"),
                    None => tracing::info!("SIGHUP ignored: a one-off run does not reload."),
                }
                continue;
            }
            stops += 1;
            if stops == 1 {
                tracing::info!(
                    signal = sig,
                    grace_ms = grace.as_millis() as u64,
                    "Stopping: no more reading; delivering what is queued, buffering the rest (signal again to exit at once)."
                );
                sup.stop_all();
            } else {
                tracing::warn!(signal = sig, "Second signal: exiting without draining.");
                std::process::exit(130);
            }
        }
    })?;
    let health = Arc::new(gleaner::api::Health::default());
    let progress = gleaner::progress::spawn(store.clone(), config.progress_interval)?;
    if let Some(addr) = config.api {
        let ctx = gleaner::api::ApiContext {
            supervisor: supervisor.clone(),
            store: store.clone(),
            token: config.api_token.clone(),
            health: health.clone(),
            reloader: reloader.clone(),
            progress,
            plugins_dir: config.plugins_dir.clone(),
            file_metrics: config.file_metrics,
        };
        gleaner::api::serve(addr, ctx)
            .with_context(|| format!("{}: api.address: cannot listen on {addr}", path.display()))?;
    }
    let resources_stop = Arc::new(AtomicBool::new(false));
    let resources = match &config.pipeline_resources {
        Some(r) if !exit_on_eof => Some(gleaner::crd::watch::spawn(
            r.clone(),
            supervisor.clone(),
            resources_stop.clone(),
            health.clone(),
        )?),
        _ => {
            health.ready.store(true, Ordering::Relaxed);
            None
        }
    };
    // Checkpoints are written on an interval while running...
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (store, writing, every) = (store.clone(), writing.clone(), config.checkpoint_interval);
        std::thread::Builder::new()
            .name("gleaner-checkpoint".into())
            .spawn(move || {
                while writing.load(Ordering::Relaxed) {
                    let next = std::time::Instant::now() + every;
                    while writing.load(Ordering::Relaxed) && std::time::Instant::now() < next {
                        std::thread::sleep(std::time::Duration::from_millis(20).min(every));
                    }
                    let was_writable = store.writable();
                    match store.write() {
                        // Said when it starts failing, then every 60th failure.
                        Err(e) if was_writable || store.write_errors.get() % 60 == 0 => {
                            tracing::error!(error = %e, failures = store.write_errors.get(), "Cannot write checkpoints; not ready until a write succeeds (the previous checkpoint file stays in place).");
                        }
                        Ok(()) if !was_writable => {
                            tracing::info!("Checkpoints are written again.");
                        }
                        _ => {}
                    }
                }
            })?
    };
    let drained = wait_within_deadline(&supervisor);
    resources_stop.store(true, Ordering::Relaxed);
    if drained && let Some(r) = resources {
        let _ = r.join();
    }
    writing.store(false, Ordering::Relaxed);
    let _ = writer.join();
    // ...and once more when every batch is delivered, buffered or failed.
    store.write()?;
    tracing::info!("Stopped.");
    Ok(())
}

/// Raises the soft limit of open files to the hard one: a node agent holds
/// a descriptor per tailed file, and the API's connections are capped
/// well below what remains.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                tracing::debug!(
                    from = lim.rlim_cur,
                    to = lim.rlim_max,
                    "Raised the open-file limit."
                );
            }
        }
    }
}

/// How long after the drain deadline the agent still waits for its
/// pipelines (buffering what is left to disk) before exiting anyway.
const EXIT_MARGIN: std::time::Duration = std::time::Duration::from_secs(3);

/// Waits until every pipeline has drained; false if, after a stop, that
/// took longer than `shutdown_timeout` plus [`EXIT_MARGIN`] (a plugin call
/// or destination that does not return): then the agent exits with what
/// is committed, and the rest is read again on the next start.
fn wait_within_deadline(supervisor: &Arc<Supervisor>) -> bool {
    let (tx, rx) = std::sync::mpsc::channel();
    let sup = supervisor.clone();
    if let Err(e) = std::thread::Builder::new()
        .name("gleaner-drain".into())
        .spawn(move || {
            sup.wait();
            let _ = tx.send(());
        })
    {
        tracing::warn!(error = %e, "Cannot spawn the drain waiter; waiting without a deadline.");
        supervisor.wait();
        return true;
    }
    loop {
        match rx.recv_timeout(std::time::Duration::from_millis(50)) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            _ => return true,
        }
        if supervisor
            .stop_deadline()
            .is_some_and(|d| std::time::Instant::now() >= d + EXIT_MARGIN)
        {
            tracing::error!(
                margin_ms = EXIT_MARGIN.as_millis() as u64,
                "Pipelines did not finish within shutdown_timeout; exiting with what is committed (what was not delivered is read again on the next start)."
            );
            return false;
        }
    }
}
