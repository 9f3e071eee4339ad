//! The agent's lifecycle: load and check the config, take the `data_dir`
//! lock, check that state can be written, prepare every pipeline (leaving
//! nothing behind if that fails), start them, serve the API, reload on
//! SIGHUP, and on SIGTERM drain within `shutdown_timeout` and write the
//! last checkpoints. `gleaner run` and `gleaner validate` are these
//! functions; the binary only parses arguments.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;

use crate::config::{self, Config};
use crate::control::assemble;
use crate::control::reload::CONFIG_OWNER;
use crate::control::supervisor::{self, Supervisor};
use crate::data::pipeline::PreparedPipeline;
use crate::plugin::PluginHost;
use crate::state::checkpoint::CheckpointStore;

/// What `run` and `validate` start from.
struct Prepared {
    config: Config,
    store: Arc<CheckpointStore>,
    pipelines: Vec<PreparedPipeline>,
    host: Arc<PluginHost>,
    /// `run` only: the lock on `data_dir`, held until the process ends.
    _lock: Option<crate::state::checkpoint::DataDirLock>,
}

/// Loads the config, the checkpoints, and prepares every pipeline; nothing
/// runs yet. For `run` (`lock`), also takes the lock on `data_dir` and
/// checks that state can be written there. A refused config leaves
/// nothing behind: the directories this attempt created are removed.
fn prepare_all(path: &Path, lock: bool) -> anyhow::Result<Prepared> {
    let config = config::load(path)?;
    let created = crate::state::checkpoint::Created::before(&state_paths(&config));
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
            crate::state::checkpoint::DataDirLock::acquire(&config.data_dir)
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
        let ready = assemble::prepare(p, &host, &config.data_dir)
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

/// `gleaner validate`: checks everything, including each plugin's own
/// config, and prints what it found.
pub fn validate(path: &Path) -> anyhow::Result<()> {
    let Prepared { config, .. } = prepare_all(path, false)?;
    println!(
        "{}: OK ({} pipelines)",
        path.display(),
        config.pipelines.len()
    );
    Ok(())
}

/// `gleaner run`: runs the config's pipelines until SIGTERM / SIGINT (or,
/// with `exit_on_eof`, until what was there at start is delivered).
pub fn run(path: &Path, exit_on_eof: bool) -> anyhow::Result<()> {
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
    for (c, p) in config.pipelines.iter().zip(prepared) {
        supervisor.start(CONFIG_OWNER, c.clone(), p)?;
    }
    // Reloads (SIGHUP, the file changing, the API), except for one-off runs.
    let reloader = if exit_on_eof {
        None
    } else {
        Some(crate::control::reload::spawn(
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
    let health = Arc::new(crate::control::api::Health::default());
    let progress = crate::control::progress::spawn(store.clone(), config.progress_interval)?;
    if let Some(addr) = config.api {
        let ctx = crate::control::api::ApiContext {
            supervisor: supervisor.clone(),
            store: store.clone(),
            token: config.api_token.clone(),
            health: health.clone(),
            reloader: reloader.clone(),
            progress,
            plugins_dir: config.plugins_dir.clone(),
            file_metrics: config.file_metrics,
        };
        crate::control::api::serve(addr, ctx)
            .with_context(|| format!("{}: api.address: cannot listen on {addr}", path.display()))?;
    }
    let resources_stop = Arc::new(AtomicBool::new(false));
    let resources = match &config.pipeline_resources {
        Some(r) if !exit_on_eof => Some(crate::control::crd::watch::spawn(
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
    let writer =
        crate::state::checkpoint::Writer::spawn(store.clone(), config.checkpoint_interval)?;
    let drained = wait_within_deadline(&supervisor);
    resources_stop.store(true, Ordering::Relaxed);
    if drained && let Some(r) = resources {
        let _ = r.join();
    }
    // ...and once more when every batch is delivered, buffered or failed.
    writer.finish()?;
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
