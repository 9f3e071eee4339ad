//! Discovery decides *what* to read: it watches what runs on the node (the
//! Docker engine now) and hands the tailer [`crate::data::tail::Target`]s (host
//! path patterns plus tags) as [`crate::data::tail::TargetUpdate`]s, through the
//! same seam a static `file` input uses.
//!
//! Must not open log files, build batches, or touch plugins or checkpoints:
//! the tailer does all of that, and knows nothing of where targets come from.

pub mod docker;
pub mod kubernetes;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use regex::Regex;

use crate::telemetry::Counter;

/// Where an input's targets come from, besides fixed paths.
#[derive(Debug, Clone)]
pub enum DiscoveryConfig {
    /// A Docker engine.
    Docker(docker::DockerOptions),
    /// The pods of this Kubernetes node.
    Kubernetes(kubernetes::KubernetesOptions),
}

/// Compiles `pattern` to match a whole value (filters in configs).
pub fn whole(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

/// `text` with glob metacharacters escaped, for host paths built from
/// names an orchestrator chose.
pub fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if matches!(ch, '*' | '?' | '[' | ']' | '{' | '}' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// The host path of `pattern` (a path inside the container): below the
/// mount whose destination is the longest prefix of it, else below the
/// container's writable layer. Mounts are matched on whole components.
pub fn map_path(
    pattern: &str,
    mounts: &[(String, String)],
    upper_dir: Option<&str>,
) -> Option<String> {
    let under = |dest: &str| {
        let dest = dest.trim_end_matches('/');
        pattern == dest || pattern.starts_with(&format!("{dest}/"))
    };
    let best = mounts
        .iter()
        .filter(|(dest, _)| under(dest))
        .max_by_key(|(dest, _)| dest.trim_end_matches('/').len());
    match best {
        Some((dest, source)) => Some(format!(
            "{}{}",
            source.trim_end_matches('/'),
            &pattern[dest.trim_end_matches('/').len()..]
        )),
        None => upper_dir.map(|u| format!("{}{pattern}", u.trim_end_matches('/'))),
    }
}

/// `path` (a host path) as Gleaner sees it below `host_root`.
pub fn on_host(host_root: &std::path::Path, path: &str) -> String {
    if host_root == std::path::Path::new("/") {
        return path.to_owned();
    }
    format!(
        "{}{}",
        host_root.to_string_lossy().trim_end_matches('/'),
        path
    )
}

/// Runs `work` on a thread of its own with a current-thread tokio runtime
/// (the API clients are async; the data path is not).
pub fn spawn_on_runtime<F>(name: String, work: F) -> std::io::Result<JoinHandle<()>>
where
    F: Future<Output = ()> + Send + 'static,
{
    let thread = name.clone();
    std::thread::Builder::new().name(thread).spawn(move || {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(work),
            Err(e) => {
                tracing::error!(discovery = %name, error = %e, "Cannot start a discovery runtime.")
            }
        }
    })
}

/// Waits `backoff` (waking early if `stop` is set), then doubles it up to
/// 30 s. Returns false if stopped.
pub async fn back_off(backoff: &mut Duration, stop: &AtomicBool) -> bool {
    let until = tokio::time::Instant::now() + *backoff;
    while !stop.load(Ordering::Relaxed) && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    *backoff = (*backoff * 2).min(Duration::from_secs(30));
    !stop.load(Ordering::Relaxed)
}

/// The next item of an optional stream; never, if there is none (for a
/// `select!` over watches some configs do not open).
pub async fn next_of<S: futures_util::Stream + Unpin>(s: &mut Option<S>) -> Option<S::Item> {
    use futures_util::StreamExt;
    match s {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// The first backoff after a failure.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// What one discovery did, for logs and metrics.
#[derive(Debug, Default)]
pub struct DiscoveryStats {
    /// Containers that became targets.
    pub containers_added: Counter,
    /// Containers skipped by the include/exclude filters.
    pub containers_filtered: Counter,
    /// Containers gone before they could be inspected (their output could
    /// not be read at all).
    pub containers_missed: Counter,
    /// Containers whose log driver Gleaner cannot read.
    pub unsupported_drivers: Counter,
    /// Failed connections or broken event streams.
    pub errors: Counter,
    /// Full lists of the containers.
    pub resyncs: Counter,
}
