//! Config reload: on SIGHUP, a change of the config file, or an API call,
//! the whole file is read and checked again, every changed pipeline is
//! prepared (plugins compiled and initialised), and only then applied, all
//! or nothing: unchanged pipelines never pause, a pipeline whose processors
//! alone changed gets them swapped at a batch boundary, others are drained
//! and rebuilt on their checkpoints. An invalid file changes nothing and
//! says why (log, API, counter).
//!
//! Owns the triggers and the reload loop; knows pipelines only through the
//! supervisor.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use serde::Serialize;

use crate::config::{self, Config};
use crate::control::supervisor::{ApplyError, Change, Desired, Supervisor};
use crate::telemetry::Counter;

/// The supervisor owner name of the config file's pipelines.
pub const CONFIG_OWNER: &str = "the config file";

/// What one reload did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Whether the new config was applied.
    pub applied: bool,
    /// Why not, if not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Per pipeline: `unchanged`, `started`, `swapped`, `replaced`,
    /// `removed`, or the error.
    pub pipelines: Vec<(String, String)>,
    /// Top-level settings that changed but only take effect on restart.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restart_needed: Vec<String>,
    /// What asked for it: `signal`, `file`, `api`, `plugins` (a change in
    /// the plugins directory).
    pub trigger: &'static str,
}

/// Reload counters and the last outcome.
#[derive(Debug, Default)]
pub struct ReloadStats {
    /// Reloads applied.
    pub applied: Counter,
    /// Reloads refused (invalid config, or a plugin failed to start).
    pub failed: Counter,
    /// The last outcome.
    pub last: Mutex<Option<Outcome>>,
}

/// A request to reload; the outcome goes to `reply` if given.
pub struct Trigger {
    /// What asked.
    pub source: &'static str,
    /// Where to send the outcome.
    pub reply: Option<Sender<Outcome>>,
}

/// Asks the reloader for reloads.
#[derive(Clone)]
pub struct Reloader {
    tx: Sender<Trigger>,
    /// Counters and the last outcome.
    pub stats: Arc<ReloadStats>,
}

impl Reloader {
    /// Asks for a reload and returns at once.
    pub fn request(&self, source: &'static str) {
        let _ = self.tx.send(Trigger {
            source,
            reply: None,
        });
    }

    /// Reloads and waits for the outcome (`None` if the reloader is gone).
    pub fn reload_now(&self, source: &'static str) -> Option<Outcome> {
        let (tx, rx) = bounded(1);
        self.tx
            .send(Trigger {
                source,
                reply: Some(tx),
            })
            .ok()?;
        rx.recv().ok()
    }
}

/// Starts the reload thread and the watch of the config file.
pub fn spawn(
    path: PathBuf,
    current: Config,
    supervisor: Arc<Supervisor>,
) -> std::io::Result<Reloader> {
    let (tx, rx) = unbounded::<Trigger>();
    let stats = Arc::new(ReloadStats::default());
    let reloader = Reloader {
        tx: tx.clone(),
        stats: stats.clone(),
    };
    watch_file(&path, reloader.clone());
    if let Some(dir) = &current.plugins_dir {
        watch_plugins(dir, reloader.clone());
    }
    std::thread::Builder::new()
        .name("gleaner-reload".into())
        .spawn(move || run(&path, current, &supervisor, &stats, &rx))?;
    Ok(reloader)
}

fn run(
    path: &Path,
    mut current: Config,
    supervisor: &Supervisor,
    stats: &ReloadStats,
    triggers: &Receiver<Trigger>,
) {
    let mut last_text = std::fs::read(path).ok();
    let mut last_bundles = bundle_snapshot(current.plugins_dir.as_deref());
    while let Ok(first) = triggers.recv() {
        // Several triggers at once (an editor writes, renames and touches)
        // make one reload; every caller gets its outcome.
        let mut waiting = vec![first];
        while let Ok(more) = triggers.recv_timeout(Duration::from_millis(50)) {
            waiting.push(more);
        }
        if supervisor.stopping() {
            return;
        }
        let text = std::fs::read(path).ok();
        let forced = waiting
            .iter()
            .any(|t| t.source != "file" && t.source != "plugins");
        let bundles = if waiting.iter().any(|t| t.source == "plugins") {
            bundle_snapshot(current.plugins_dir.as_deref())
        } else {
            last_bundles.clone()
        };
        if !forced && text == last_text && bundles == last_bundles {
            continue;
        }
        let plugins_changed = bundles != last_bundles;
        for refused in bundles.iter().filter(|b| b.starts_with("refused ")) {
            if !last_bundles.contains(refused) {
                tracing::error!(bundle = %refused, "Plugin bundle refused.");
            }
        }
        last_text = text;
        last_bundles = bundles;
        // Named after who asked explicitly, if anyone did.
        let source = waiting
            .iter()
            .map(|t| t.source)
            .find(|s| *s != "file" && *s != "plugins")
            .unwrap_or(if plugins_changed { "plugins" } else { "file" });
        let outcome = reload(path, &mut current, supervisor, source);
        if outcome.applied {
            stats.applied.inc();
        } else {
            stats.failed.inc();
        }
        if let Ok(mut last) = stats.last.lock() {
            *last = Some(outcome.clone());
        }
        for t in waiting {
            if let Some(reply) = t.reply {
                let _ = reply.send(outcome.clone());
            }
        }
    }
}

/// What the plugins directory holds (ids, digests, refusals), to tell a
/// real change from an event that changed nothing; refused bundles are
/// logged when they appear.
fn bundle_snapshot(dir: Option<&Path>) -> Vec<String> {
    let Some(dir) = dir else {
        return Vec::new();
    };
    match crate::plugin::bundle::Registry::scan(dir) {
        Ok(reg) => reg
            .bundles
            .iter()
            .map(|b| format!("{} {}", b.id(), b.sha256))
            .chain(
                reg.refused
                    .iter()
                    .map(|r| format!("refused {}: {}", r.dir.display(), r.reason)),
            )
            .collect(),
        Err(e) => vec![format!("cannot read {}: {e}", dir.display())],
    }
}

/// Reads, checks and applies the config at `path`.
fn reload(
    path: &Path,
    current: &mut Config,
    supervisor: &Supervisor,
    trigger: &'static str,
) -> Outcome {
    let t0 = Instant::now();
    let mut outcome = Outcome {
        applied: false,
        error: None,
        pipelines: Vec::new(),
        restart_needed: Vec::new(),
        trigger,
    };
    let new = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(trigger, error = %e, "Config not reloaded: it does not check; everything runs as it was.");
            outcome.error = Some(e.to_string());
            return outcome;
        }
    };
    outcome.restart_needed = restart_needed(current, &new);
    if !outcome.restart_needed.is_empty() {
        tracing::warn!(keys = ?outcome.restart_needed, "These settings changed but take effect only after a restart.");
    }
    let desired = new
        .pipelines
        .iter()
        .map(|p| Desired { config: p.clone() })
        .collect();
    let results = supervisor.apply(CONFIG_OWNER, desired, &[], true);
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(n, r)| match r {
            Err(ApplyError::Aborted) | Ok(_) => None,
            Err(e) => Some(format!("{}: {e}", n)),
        })
        .collect();
    outcome.pipelines = results
        .into_iter()
        .map(|(n, r)| {
            let what = match r {
                Ok(Change::Unchanged) => "unchanged".to_owned(),
                Ok(Change::Started) => "started".to_owned(),
                Ok(Change::Swapped) => "swapped".to_owned(),
                Ok(Change::Replaced) => "replaced".to_owned(),
                Ok(Change::Removed) => "removed".to_owned(),
                Ok(Change::HeldBack) => {
                    "held back: these processors were rolled back; the previous ones run".to_owned()
                }
                Err(e) => e.to_string(),
            };
            (n, what)
        })
        .collect();
    if failed.is_empty() {
        outcome.applied = true;
        *current = new;
        tracing::info!(trigger, ms = t0.elapsed().as_millis() as u64, changes = ?outcome.pipelines, "Config reloaded.");
    } else {
        let e = format!("{}: {}", path.display(), failed.join("; "));
        tracing::error!(trigger, error = %e, "Config not reloaded: a pipeline cannot start; everything runs as it was.");
        outcome.error = Some(e);
    }
    outcome
}

/// Top-level settings that differ (they are read once, at start).
fn restart_needed(old: &Config, new: &Config) -> Vec<String> {
    let mut keys = Vec::new();
    let mut check = |key: &str, same: bool| {
        if !same {
            keys.push(key.to_owned());
        }
    };
    check("data_dir", old.data_dir == new.data_dir);
    check(
        "plugin_cache_dir",
        old.plugin_cache_dir == new.plugin_cache_dir,
    );
    check(
        "checkpoint_interval",
        old.checkpoint_interval == new.checkpoint_interval,
    );
    check(
        "checkpoint_stale_after",
        old.checkpoint_stale_after == new.checkpoint_stale_after,
    );
    check(
        "shutdown_timeout",
        old.shutdown_timeout == new.shutdown_timeout,
    );
    check(
        "api",
        old.api == new.api && old.file_metrics == new.file_metrics,
    );
    check(
        "progress_interval",
        old.progress_interval == new.progress_interval,
    );
    check(
        "plugins_dir (its watch)",
        old.plugins_dir == new.plugins_dir,
    );
    check(
        "pipeline_resources",
        format!("{:?}", old.pipeline_resources) == format!("{:?}", new.pipeline_resources),
    );
    keys
}

/// Watches the plugins directory (recursively): a bundle added, changed
/// or removed asks for a reload, which resolves every `name` again and
/// swaps in what changed.
fn watch_plugins(dir: &Path, reloader: Reloader) {
    use notify::Watcher;
    let watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if ev.is_ok_and(|e| !e.kind.is_access()) {
            reloader.request("plugins");
        }
    });
    let result = watcher.and_then(|mut w| {
        w.watch(dir, notify::RecursiveMode::Recursive)?;
        // The watcher lives as long as the process.
        std::mem::forget(w);
        Ok(())
    });
    if let Err(e) = result {
        tracing::warn!(dir = %dir.display(), error = %e, "Cannot watch the plugins directory; new bundles are picked up on reload (SIGHUP or the API).");
    }
}

/// Watches the config file's directory (editors replace files by rename)
/// and asks for a reload when an event names the file; the reloader skips
/// it if the content is the same.
fn watch_file(path: &Path, reloader: Reloader) {
    use notify::Watcher;
    let Some(dir) = path.parent().map(|d| {
        if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        }
    }) else {
        return;
    };
    let name = path.file_name().map(|n| n.to_owned());
    let watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev
            && ev
                .paths
                .iter()
                .any(|p| p.file_name().map(|n| n.to_owned()) == name)
        {
            reloader.request("file");
        }
    });
    match watcher {
        Ok(mut w) => match w.watch(dir, notify::RecursiveMode::NonRecursive) {
            // The watcher lives as long as the process.
            Ok(()) => std::mem::forget(w),
            Err(e) => {
                tracing::warn!(error = %e, "Cannot watch the config file; reload with SIGHUP or the API.")
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "Cannot watch the config file; reload with SIGHUP or the API.")
        }
    }
}
