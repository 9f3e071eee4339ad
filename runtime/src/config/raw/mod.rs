//! The config file as the user wrote it: serde types with
//! `deny_unknown_fields`, a doc comment with units on every field and named
//! defaults (inputs in `inputs`). Nothing here checks meaning beyond types;
//! `config` resolves this into the checked [`crate::config::Config`].

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

mod inputs;
pub use inputs::*;
use inputs::{default_host_root, default_kubelet_dir, default_pods_dir};

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Directory for Gleaner's own state: compiled plugin cache, dead-letter
    /// files, later checkpoints and the disk buffer. Relative paths are
    /// resolved against the config file's directory. Created if missing.
    pub data_dir: PathBuf,
    /// Where compiled plugins are cached (default `<data_dir>/plugin-cache`).
    #[serde(default)]
    pub plugin_cache_dir: Option<PathBuf>,
    /// How often delivered offsets are written to
    /// `<data_dir>/checkpoints.json` (also at shutdown). Default `1s`.
    #[serde(default = "default_checkpoint_interval", with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// Checkpoints of files not seen for this long are forgotten. Default `24h`.
    #[serde(default = "default_checkpoint_stale_after", with = "humantime_serde")]
    pub checkpoint_stale_after: Duration,
    /// On SIGTERM/SIGINT, how long queued batches may still be delivered
    /// before the rest is written to the disk buffer. Default `10s`.
    #[serde(default = "default_shutdown_timeout", with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// How often read progress and checkpoint lag are sampled (and a large
    /// backlog is logged with an estimate of the time left). Default `10s`.
    #[serde(default = "default_progress_interval", with = "humantime_serde")]
    pub progress_interval: Duration,
    /// A directory of plugin bundles (`<dir>/<any>/manifest.yaml` plus the
    /// component), referenced from pipelines as `name@version` or `name`
    /// (the newest). Watched: a new version is swapped into the pipelines
    /// that name it. Relative to the config file's directory.
    #[serde(default)]
    pub plugins_dir: Option<PathBuf>,
    /// The pipelines; names must be unique. May be empty when
    /// `pipeline_resources` is set.
    #[serde(default)]
    pub pipelines: Vec<RawPipeline>,
    /// Also run the pipelines defined by `GleanerPipeline` and
    /// `ClusterGleanerPipeline` resources (Kubernetes), for this node's pods.
    #[serde(default)]
    pub pipeline_resources: Option<RawPipelineResources>,
    /// The local HTTP API (`/healthz`, `/readyz`, `/api/v1/pipelines`).
    /// Off unless this section is present.
    #[serde(default)]
    pub api: Option<RawApi>,
}

/// The local HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    /// `ip:port` to listen on. Default `127.0.0.1:8686` (this host only);
    /// in a pod, `0.0.0.0:8686` lets kubelet's probes reach it.
    #[serde(default = "default_api_address")]
    pub address: String,
    /// Also serve per-file gauges on `/metrics` (size, read and delivered
    /// offsets of every open file; one series per file). Default false.
    #[serde(default)]
    pub file_metrics: bool,
    /// A bearer token that `POST` endpoints (reload) require in
    /// `Authorization: Bearer TOKEN`. Reads stay open (probes, metrics).
    /// Default: none (then listening beyond loopback logs a warning).
    #[serde(default)]
    pub token: Option<String>,
}

fn default_progress_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_api_address() -> String {
    "127.0.0.1:8686".into()
}

/// Where pipeline resources come from, and what their `kubernetes` inputs
/// use on this node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipelineResources {
    /// The API server URL. Default: the in-cluster service account, else
    /// the kubeconfig.
    #[serde(default)]
    pub api_server: Option<String>,
    /// This node's name. Default: `$NODE_NAME`.
    #[serde(default)]
    pub node_name: Option<String>,
    /// Where kubelet writes pod logs on the host. Default `/var/log/pods`.
    #[serde(default = "default_pods_dir")]
    pub pods_dir: String,
    /// Where the host's root file system is seen by Gleaner. Default `/`.
    #[serde(default = "default_host_root")]
    pub host_root: String,
    /// kubelet's root directory on the host. Default `/var/lib/kubelet`.
    #[serde(default = "default_kubelet_dir")]
    pub kubelet_dir: String,
    /// Watch `GleanerPipeline` resources (all namespaces). Default `true`.
    #[serde(default = "default_true")]
    pub namespaced: bool,
    /// Watch `ClusterGleanerPipeline` resources. Default `true`.
    #[serde(default = "default_true")]
    pub cluster: bool,
    /// The namespace of the Lease (`gleaner-pipeline-status`) that elects
    /// the agent writing shared status. Default: `$POD_NAMESPACE`, else
    /// `gleaner`.
    #[serde(default)]
    pub lease_namespace: Option<String>,
}

fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_checkpoint_stale_after() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(10)
}

/// One pipeline: inputs → processors (in order) → every flusher.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    /// Unique name, `[a-zA-Z0-9_-]+`; used in logs, metrics and file names.
    pub name: String,
    /// Where events come from (at least one).
    pub inputs: Vec<RawInput>,
    /// Processor plugins, applied in order.
    #[serde(default)]
    pub processors: Vec<RawPlugin>,
    /// Flusher plugins; every batch goes to each of them (at least one).
    pub flushers: Vec<RawPlugin>,
    /// How lines are grouped into batches.
    #[serde(default)]
    pub batch: RawBatch,
    /// Batches buffered between stages (input → processors → each flusher);
    /// bounds the pipeline's memory. Default 8.
    #[serde(default = "default_queue_batches")]
    pub queue_batches: usize,
    /// Processor workers: each runs its own instances of every processor
    /// over different batches at once (delivery order is kept). Default:
    /// the cores available to the process.
    #[serde(default)]
    pub workers: Option<usize>,
    /// When new processors are swapped in (a reload, a new bundle version):
    /// how their first batches are watched, and when they are rolled back.
    #[serde(default)]
    pub rollback: RawRollback,
}

/// Automatic rollback of swapped-in processors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRollback {
    /// How many batches the new processors are on probation (0: no
    /// probation, no rollback). Default 20.
    #[serde(default = "default_probation_batches")]
    pub first_batches: u32,
    /// Roll back when more than this share of the probation batches fail
    /// (a trap or an error in any new processor). Default 0.1.
    #[serde(default = "default_max_failure_share")]
    pub max_failure_share: f64,
}

impl Default for RawRollback {
    fn default() -> Self {
        RawRollback {
            first_batches: default_probation_batches(),
            max_failure_share: default_max_failure_share(),
        }
    }
}

fn default_probation_batches() -> u32 {
    20
}

fn default_max_failure_share() -> f64 {
    0.1
}

fn default_queue_batches() -> usize {
    8
}

/// Batch bounds: a batch is sent when any bound is reached.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBatch {
    /// Most events in one batch. Default 1024.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// Most body bytes in one batch. Default 1 MiB.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// Longest time the first event of a batch waits for more. Default `200ms`.
    #[serde(default = "default_linger", with = "humantime_serde")]
    pub linger: Duration,
}

impl Default for RawBatch {
    fn default() -> Self {
        RawBatch {
            max_events: default_max_events(),
            max_bytes: default_max_bytes(),
            linger: default_linger(),
        }
    }
}

fn default_max_events() -> usize {
    1024
}
fn default_max_bytes() -> usize {
    1024 * 1024
}
fn default_linger() -> Duration {
    Duration::from_millis(200)
}

/// A processor or flusher entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlugin {
    /// `builtin:NAME` for a first-party plugin, or a path to a `.wasm`
    /// component (relative to the config file's directory).
    pub plugin: String,
    /// Handed to the plugin's `init` as JSON. Default `{}`.
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    /// Resource limits of each instance.
    #[serde(default)]
    pub limits: RawLimits,
    /// What the plugin may reach (flushers only).
    #[serde(default)]
    pub grants: RawGrants,
    /// What happens to a batch the plugin cannot handle.
    #[serde(default)]
    pub on_error: RawOnError,
    /// Flushers only: while the destination fails, write batches to the
    /// disk buffer (so reading goes on) and deliver them, in order, once it
    /// is back. Off by default (the pipeline waits instead).
    #[serde(default)]
    pub spill: Option<RawSpill>,
    /// Flushers only: TLS of `https://` requests and `gleaner:tls` connections.
    #[serde(default)]
    pub tls: Option<RawTls>,
}

/// TLS of a flusher's `https://` requests. Without it the server's
/// certificate is verified against the system's roots.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM file of CA certificates to trust besides the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for mTLS; needs `key_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Verify the server's certificate and name. Default true; `false`
    /// logs a warning at start.
    #[serde(default = "default_true")]
    pub verify: bool,
}

/// Spill to the disk buffer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpill {
    /// Largest size of this flusher's disk buffer, in MiB. Default 1024.
    #[serde(default = "default_spill_mib")]
    pub max_mib: u64,
    /// When the buffer is full: `block` (stop taking batches: the pipeline
    /// waits) or `drop_oldest` (delete the oldest segments, counted).
    /// Default `block`.
    #[serde(default)]
    pub when_full: WhenFull,
}

fn default_spill_mib() -> u64 {
    1024
}

/// What a full spill buffer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait for the destination (back-pressure).
    #[default]
    Block,
    /// Delete the oldest buffered batches (counted as dropped).
    DropOldest,
}

/// Per-instance limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Linear memory cap per instance, in MiB. Default 128.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u64,
    /// Deadline of one call (`init`, `process` or `flush`). Default `10s`.
    #[serde(default = "default_call_timeout", with = "humantime_serde")]
    pub call_timeout: Duration,
    /// Enforce `call_timeout` with epoch interruption. Costs about 20 % on
    /// CPU-heavy plugins (see the benchmark); turn off only for plugins
    /// you trust not to loop. Default true.
    #[serde(default = "default_true")]
    pub epoch_deadline: bool,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            memory_mib: default_memory_mib(),
            call_timeout: default_call_timeout(),
            epoch_deadline: true,
        }
    }
}

fn default_memory_mib() -> u64 {
    128
}
fn default_call_timeout() -> Duration {
    Duration::from_secs(10)
}
pub(super) fn default_true() -> bool {
    true
}

/// Capabilities granted to a plugin. Nothing is granted by default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGrants {
    /// Host directories the plugin may read and write, each visible inside
    /// the plugin under the same path. Relative paths are resolved against
    /// the config file's directory; missing ones are created at start.
    #[serde(default)]
    pub dirs: Vec<PathBuf>,
    /// `host:port` destinations the plugin may send HTTP requests to.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Let the plugin write to Gleaner's stdout (the `stdout` flusher needs
    /// it). Default false.
    #[serde(default)]
    pub stdout: bool,
}

/// Failure policy of a plugin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOnError {
    /// Retries of a batch after a trap or timeout, with exponential backoff.
    /// (A flusher's `retryable` errors are retried until the batch is
    /// delivered or Gleaner stops.) Default 5.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// First backoff; doubles each retry up to `max_backoff`. Default `100ms`.
    #[serde(default = "default_backoff", with = "humantime_serde")]
    pub backoff: Duration,
    /// Longest backoff. Default `10s`.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// After the retries: `dead_letter` writes the batch to
    /// `<data_dir>/dead-letter/<pipeline>.ndjson`; `drop` discards it; both
    /// count it. For processors, `skip` sends the batch on unprocessed.
    /// Default `dead_letter`.
    #[serde(default)]
    pub then: GiveUp,
}

impl Default for RawOnError {
    fn default() -> Self {
        RawOnError {
            retries: default_retries(),
            backoff: default_backoff(),
            max_backoff: default_max_backoff(),
            then: GiveUp::default(),
        }
    }
}

fn default_retries() -> u32 {
    5
}
fn default_backoff() -> Duration {
    Duration::from_millis(100)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(10)
}

pub use crate::data::flush::policy::GiveUp;
