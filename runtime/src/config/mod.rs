//! Configuration: read the YAML file (`raw`), then resolve it into a checked
//! [`Config`] before anything starts. Every error names the file, the key
//! path (`pipelines[0].processors[1].config`) and what is wrong.
//!
//! This module only reads files; it starts nothing and names no wasmtime
//! type. Plugin configs are checked by their plugin's `init` later, in
//! `control::assemble`, before any pipeline starts. Resolution is split by
//! concept: the file and pipelines here, inputs in `inputs`, plugin entries
//! (grants, bundles, URLs) in `plugins`.

mod inputs;
mod plugins;
pub mod raw;
pub mod secrets;

use std::path::{Path, PathBuf};

use gleaner_sdk::normalize_path as normalize;

use crate::data::batch::BatchLimits;
pub use crate::data::discovery::DiscoveryConfig;
pub use crate::data::flush::policy::{GiveUp, OnError, Spill};
pub use crate::data::pipeline::{InputConfig, Rollback};
use crate::plugin::{PluginKind, PluginSpec};

/// Most processor workers a pipeline may have.
pub const MAX_WORKERS: usize = 64;

/// A config problem: where and what.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {message}")]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// The key path, e.g. `pipelines[0].inputs[0].paths`.
    pub key: String,
    /// What is wrong and, where it helps, what to do.
    pub message: String,
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    /// Gleaner's state directory (absolute).
    pub data_dir: PathBuf,
    /// Compiled plugin cache (absolute).
    pub plugin_cache_dir: PathBuf,
    /// How often checkpoints are written.
    pub checkpoint_interval: std::time::Duration,
    /// When unseen files' checkpoints are forgotten.
    pub checkpoint_stale_after: std::time::Duration,
    /// Drain deadline at shutdown.
    pub shutdown_timeout: std::time::Duration,
    /// The pipelines.
    pub pipelines: Vec<PipelineConfig>,
    /// Pipelines from Kubernetes resources, if enabled.
    pub pipeline_resources: Option<PipelineResources>,
    /// Where the local HTTP API listens, if enabled.
    pub api: Option<std::net::SocketAddr>,
    /// The plugin bundle directory (absolute), if set.
    pub plugins_dir: Option<PathBuf>,
    /// How often read progress is sampled.
    pub progress_interval: std::time::Duration,
    /// Per-file gauges on `/metrics`.
    pub file_metrics: bool,
    /// The bearer token the API's mutating endpoints require, if set.
    pub api_token: Option<Secret>,
}

/// A credential from the config: compared and sent, never printed (its
/// `Debug` is redacted).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Checked `pipeline_resources`: the generated `kubernetes` inputs get
/// these values (as the config file spells them).
#[derive(Debug, Clone)]
pub struct PipelineResources {
    /// API server URL (`None`: in-cluster, else kubeconfig).
    pub api_server: Option<String>,
    /// This node.
    pub node_name: String,
    /// kubelet's pod log directory on the host.
    pub pods_dir: String,
    /// Where the host's root is seen.
    pub host_root: String,
    /// kubelet's root directory on the host.
    pub kubelet_dir: String,
    /// Watch `GleanerPipeline`.
    pub namespaced: bool,
    /// Watch `ClusterGleanerPipeline`.
    pub cluster: bool,
    /// Where the Lease electing the status writer lives.
    pub lease_namespace: String,
    /// Relative plugin paths of cluster resources resolve against this
    /// (the config file's directory).
    pub base: PathBuf,
    /// Bundles cluster resources may name (the config file's
    /// `plugins_dir`).
    pub plugins_dir: Option<PathBuf>,
}

/// One checked pipeline.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Unique name.
    pub name: String,
    /// Key path of this pipeline, e.g. `pipelines[2]`.
    pub key: String,
    /// Inputs.
    pub inputs: Vec<InputConfig>,
    /// Processors, in order.
    pub processors: Vec<PluginEntry>,
    /// Flushers.
    pub flushers: Vec<PluginEntry>,
    /// Batch bounds.
    pub batch: BatchLimits,
    /// Queue depth between stages, in batches.
    pub queue_batches: usize,
    /// Processor workers (at least 1).
    pub workers: usize,
    /// Probation of swapped-in processors.
    pub rollback: Rollback,
}

/// One checked plugin entry.
#[derive(Debug, Clone)]
pub struct PluginEntry {
    /// Key path, e.g. `pipelines[0].processors[1]`.
    pub key: String,
    /// The `plugin:` value as written.
    pub reference: String,
    /// Processor or flusher.
    pub kind: PluginKind,
    /// What the plugin host needs.
    pub spec: PluginSpec,
    /// Failure policy.
    pub on_error: OnError,
    /// Flushers: spill to the disk buffer while the destination fails.
    pub spill: Option<Spill>,
}

/// Reads and checks the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        key: "(file)".into(),
        message: format!("cannot read the config file: {e}"),
    })?;
    parse(path, &text)
}

/// Parses and checks config `text` as if read from `path`.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let raw: raw::RawConfig = if text.contains("${") {
        // `${…}` is resolved in the parsed tree, then the tree is read.
        let mut tree: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(text).map_err(|e| ConfigError {
                file: path.to_path_buf(),
                key: "(file)".into(),
                message: e.to_string(),
            })?;
        secrets::resolve(&mut tree, "").map_err(|(key, message)| ConfigError {
            file: path.to_path_buf(),
            key,
            message,
        })?;
        serde_path_to_error::deserialize(tree).map_err(|e| path_error(path, e))?
    } else {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| path_error(path, e))?
    };
    // Relative paths in the config are relative to the config file's
    // directory, made absolute here once.
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let base = match std::env::current_dir() {
        Ok(cwd) => normalize(&cwd.join(base)),
        Err(_) => normalize(base),
    };
    let plugins_dir = raw.plugins_dir.as_deref().map(|d| normalize(&base.join(d)));
    let bundles = match &plugins_dir {
        None => None,
        Some(d) => Some(
            crate::plugin::bundle::Registry::scan(d).map_err(|e| ConfigError {
                file: path.to_path_buf(),
                key: "plugins_dir".into(),
                message: format!("cannot read {}: {e}", d.display()),
            })?,
        ),
    };
    Resolver {
        file: path,
        base: &base,
        bundles: bundles.as_ref(),
    }
    .config(raw, plugins_dir)
}

/// A deserialization error as a [`ConfigError`] naming the key path
/// (including the path inside an input, see `raw::RawInput`).
fn path_error<E: std::fmt::Display>(file: &Path, e: serde_path_to_error::Error<E>) -> ConfigError {
    let key = e.path().to_string();
    let mut message = e.into_inner().to_string();
    // The YAML error repeats (part of) the path before its message.
    if let Some((head, rest)) = message.split_once(": ")
        && key.starts_with(head)
    {
        message = rest.to_owned();
    }
    let mut key = if key == "." {
        "(top level)".into()
    } else {
        key
    };
    // An input reports the path inside it (see `raw::RawInput`).
    if let Some(rest) = message.strip_prefix(raw::INNER_PATH_MARK)
        && let Some((inner, msg)) = rest.split_once(": ")
    {
        if inner != "." {
            key = format!("{key}.{inner}");
        }
        message = msg.to_owned();
    }
    ConfigError {
        file: file.to_path_buf(),
        key,
        message,
    }
}

/// Checks one pipeline given as a JSON value with the config file's keys
/// (for pipelines from other sources, e.g. Kubernetes resources). Errors
/// name `origin` as the file and keys below `key`; relative paths resolve
/// against `base`.
pub fn pipeline_from_json(
    origin: &Path,
    base: &Path,
    bundles: Option<&crate::plugin::bundle::Registry>,
    key: &str,
    value: serde_json::Value,
) -> Result<PipelineConfig, ConfigError> {
    let raw: raw::RawPipeline = serde_path_to_error::deserialize(value).map_err(|e| {
        let mut err = path_error(origin, e);
        err.key = if err.key == "(top level)" {
            key.to_owned()
        } else {
            format!("{key}.{}", err.key)
        };
        err
    })?;
    Resolver {
        file: origin,
        base,
        bundles,
    }
    .pipeline(key, raw)
}

struct Resolver<'a> {
    file: &'a Path,
    base: &'a Path,
    /// The scanned `plugins_dir`, if one is set.
    bundles: Option<&'a crate::plugin::bundle::Registry>,
}

impl Resolver<'_> {
    fn err<T>(&self, key: impl Into<String>, message: impl Into<String>) -> Result<T, ConfigError> {
        Err(ConfigError {
            file: self.file.to_path_buf(),
            key: key.into(),
            message: message.into(),
        })
    }

    fn absolute(&self, p: &Path) -> PathBuf {
        normalize(&self.base.join(p))
    }

    fn config(
        &self,
        raw: raw::RawConfig,
        plugins_dir: Option<PathBuf>,
    ) -> Result<Config, ConfigError> {
        let data_dir = self.absolute(&raw.data_dir);
        let plugin_cache_dir = raw
            .plugin_cache_dir
            .as_deref()
            .map(|p| self.absolute(p))
            .unwrap_or_else(|| data_dir.join("plugin-cache"));
        if raw.pipelines.is_empty() && raw.pipeline_resources.is_none() {
            return self.err(
                "pipelines",
                "at least one pipeline is needed (or pipeline_resources)",
            );
        }
        if raw
            .api
            .as_ref()
            .and_then(|a| a.token.as_deref())
            .is_some_and(|t| t.trim().is_empty())
        {
            return self.err("api.token", "must not be empty (leave it out for no token)");
        }
        let api = match &raw.api {
            None => None,
            Some(a) => Some(a.address.parse().or_else(|_| {
                self.err(
                    "api.address",
                    format!("`{}` is not ip:port (e.g. 127.0.0.1:8686)", a.address),
                )
            })?),
        };
        let pipeline_resources = match raw.pipeline_resources {
            None => None,
            Some(r) => Some(self.pipeline_resources(r, plugins_dir.clone())?),
        };
        let mut pipelines = Vec::new();
        for (i, p) in raw.pipelines.into_iter().enumerate() {
            let key = format!("pipelines[{i}]");
            if pipelines.iter().any(|q: &PipelineConfig| q.name == p.name) {
                return self.err(
                    format!("{key}.name"),
                    format!("pipeline name `{}` is used twice", p.name),
                );
            }
            pipelines.push(self.pipeline(&key, p)?);
        }
        let mut leases = std::collections::HashMap::new();
        for (pi, p) in pipelines.iter().enumerate() {
            for (i, input) in p.inputs.iter().enumerate() {
                if let InputConfig::KubernetesEvents(k) = input {
                    let key = format!("pipelines[{pi}].inputs[{i}].lease");
                    if let Some(first) =
                        leases.insert((k.lease_namespace.clone(), k.lease.clone()), key.clone())
                    {
                        return self.err(
                            key,
                            format!(
                                "Lease `{}/{}` is also {first}'s: two inputs would both hold it and ship every Event twice; name another",
                                k.lease_namespace, k.lease
                            ),
                        );
                    }
                }
            }
        }
        for p in &pipelines {
            for f in &p.flushers {
                for (i, d) in f.spec.grants.dirs.iter().enumerate() {
                    if data_dir.starts_with(d) || d.starts_with(&data_dir) {
                        return self.err(
                            format!("{}.grants.dirs[{i}]", f.key),
                            format!(
                                "{} overlaps data_dir ({}): a plugin could rewrite checkpoints and buffers; grant a directory outside it",
                                d.display(),
                                data_dir.display()
                            ),
                        );
                    }
                }
            }
        }
        if raw.checkpoint_interval.is_zero() {
            return self.err("checkpoint_interval", "must be above zero");
        }
        if raw.progress_interval.is_zero() {
            return self.err("progress_interval", "must be above zero");
        }
        Ok(Config {
            file: self.file.to_path_buf(),
            data_dir,
            plugin_cache_dir,
            checkpoint_interval: raw.checkpoint_interval,
            checkpoint_stale_after: raw.checkpoint_stale_after,
            shutdown_timeout: raw.shutdown_timeout,
            pipelines,
            pipeline_resources,
            api,
            plugins_dir,
            progress_interval: raw.progress_interval,
            file_metrics: raw.api.as_ref().is_some_and(|a| a.file_metrics),
            api_token: raw
                .api
                .as_ref()
                .and_then(|a| a.token.clone())
                .map(crate::config::Secret),
        })
    }

    fn pipeline_resources(
        &self,
        r: raw::RawPipelineResources,
        plugins_dir: Option<PathBuf>,
    ) -> Result<PipelineResources, ConfigError> {
        let key = "pipeline_resources";
        let node_name = self.node_name(&format!("{key}.node_name"), r.node_name)?;
        self.api_server(&format!("{key}.api_server"), r.api_server.as_deref())?;
        for (k, v) in [
            ("pods_dir", &r.pods_dir),
            ("host_root", &r.host_root),
            ("kubelet_dir", &r.kubelet_dir),
        ] {
            if !v.starts_with('/') {
                return self.err(format!("{key}.{k}"), "must be an absolute path");
            }
        }
        if !r.namespaced && !r.cluster {
            return self.err(
                key,
                "namespaced and cluster are both false: nothing to watch",
            );
        }
        Ok(PipelineResources {
            api_server: r.api_server,
            node_name,
            pods_dir: r.pods_dir,
            host_root: r.host_root,
            kubelet_dir: r.kubelet_dir,
            namespaced: r.namespaced,
            cluster: r.cluster,
            lease_namespace: self.lease_namespace(r.lease_namespace),
            base: self.base.to_path_buf(),
            plugins_dir,
        })
    }

    /// Where a Lease lives: as given, else `$POD_NAMESPACE`, else `gleaner`.
    fn lease_namespace(&self, given: Option<String>) -> String {
        given
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "gleaner".into())
    }

    fn node_name(&self, key: &str, given: Option<String>) -> Result<String, ConfigError> {
        match given.or_else(|| std::env::var("NODE_NAME").ok()) {
            Some(n) if !n.is_empty() => Ok(n),
            _ => self.err(
                key,
                "not set and $NODE_NAME is empty: set it, or pass NODE_NAME from the downward API (spec.nodeName)",
            ),
        }
    }

    fn api_server(&self, key: &str, url: Option<&str>) -> Result<(), ConfigError> {
        if let Some(url) = url
            && url
                .parse::<http::Uri>()
                .map_or(true, |u| u.scheme().is_none())
        {
            return self.err(
                key,
                format!("`{url}` is not a URL (e.g. https://10.0.0.1:6443)"),
            );
        }
        Ok(())
    }

    fn pipeline(&self, key: &str, p: raw::RawPipeline) -> Result<PipelineConfig, ConfigError> {
        if p.name.is_empty()
            || !p
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            || p.name.starts_with('.')
        {
            return self.err(
                format!("{key}.name"),
                format!(
                    "`{}` is not a valid name: use letters, digits, -, _ and . (not first)",
                    p.name
                ),
            );
        }
        if p.inputs.is_empty() {
            return self.err(format!("{key}.inputs"), "at least one input is needed");
        }
        if p.flushers.is_empty() {
            return self.err(format!("{key}.flushers"), "at least one flusher is needed");
        }
        let b = &p.batch;
        if b.max_events == 0 || b.max_bytes == 0 {
            return self.err(
                format!("{key}.batch"),
                "max_events and max_bytes must be at least 1",
            );
        }
        if p.queue_batches == 0 {
            return self.err(format!("{key}.queue_batches"), "must be at least 1");
        }
        if let Some(w) = p.workers
            && !(1..=MAX_WORKERS).contains(&w)
        {
            return self.err(
                format!("{key}.workers"),
                format!("must be between 1 and {MAX_WORKERS}, not {w}"),
            );
        }
        let share = p.rollback.max_failure_share;
        if !(0.0..=1.0).contains(&share) {
            return self.err(
                format!("{key}.rollback.max_failure_share"),
                format!("{share} is not between 0 and 1"),
            );
        }
        let rollback = Rollback {
            batches: p.rollback.first_batches,
            max_failures: (share * f64::from(p.rollback.first_batches)).floor() as u32,
        };
        let inputs = p
            .inputs
            .into_iter()
            .enumerate()
            .map(|(i, input)| self.input(&format!("{key}.inputs[{i}]"), &p.name, input))
            .collect::<Result<_, _>>()?;
        // The same with or without processors, so that adding processors
        // by a reload is a swap, not a rebuild.
        let workers = p
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let processors = p
            .processors
            .into_iter()
            .enumerate()
            .map(|(i, e)| self.plugin(&format!("{key}.processors[{i}]"), PluginKind::Processor, e))
            .collect::<Result<_, _>>()?;
        let flushers = p
            .flushers
            .into_iter()
            .enumerate()
            .map(|(i, e)| self.plugin(&format!("{key}.flushers[{i}]"), PluginKind::Flusher, e))
            .collect::<Result<_, _>>()?;
        Ok(PipelineConfig {
            name: p.name,
            key: key.to_owned(),
            inputs,
            processors,
            flushers,
            batch: BatchLimits {
                max_events: b.max_events,
                max_bytes: b.max_bytes,
                linger: b.linger,
            },
            queue_batches: p.queue_batches,
            workers,
            rollback,
        })
    }
}

#[cfg(test)]
mod tests;
