//! Discovery decides *what* to read: it watches what runs on the node (the
//! Docker engine now) and hands the tailer [`crate::data::tail::Target`]s (host
//! path patterns plus tags) as [`crate::data::tail::TargetUpdate`]s, through the
//! same seam a static `file` input uses.
//!
//! Must not open log files, build batches, or touch plugins or checkpoints:
//! the tailer does all of that, and knows nothing of where targets come from.

pub mod docker;
pub mod kubernetes;

use regex::Regex;

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

crate::telemetry::counters! {
    /// What one discovery did, for logs and metrics.
    pub struct DiscoveryStats {
        /// Containers or pods that became targets.
        containers_added => "discovery_containers_added_total",
        /// Containers skipped by the include/exclude filters.
        containers_filtered => "discovery_containers_filtered_total",
        /// Containers gone before they could be inspected (never read).
        containers_missed => "discovery_containers_missed_total",
        /// Containers whose log driver Gleaner cannot read.
        unsupported_drivers => "discovery_unsupported_drivers_total",
        /// Failed connections or broken event streams.
        engine_errors => "discovery_engine_errors_total",
        /// Full lists of the containers or pods.
        resyncs => "discovery_resyncs_total",
    }
}
