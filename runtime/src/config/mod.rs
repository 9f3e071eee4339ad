//! Configuration: read the YAML file (`raw`), then resolve it into a checked
//! [`Config`] before anything starts. Every error names the file, the key
//! path (`pipelines[0].processors[1].config`) and what is wrong.
//!
//! This module only reads files; it starts nothing and names no wasmtime
//! type. Plugin configs are checked by their plugin's `init` later, in
//! `pipeline::prepare`, before any pipeline starts.

pub mod raw;

use std::path::{Path, PathBuf};

use gleaner_sdk::normalize_path as normalize;
use regex::bytes::Regex;

use crate::data::batch::BatchLimits;
pub use crate::data::discovery::DiscoveryConfig;
use crate::data::discovery::docker::{self, ContainerFilter, DockerOptions};
use crate::data::discovery::kubernetes::{KubernetesOptions, PodFilter};
pub use crate::data::flush::policy::{GiveUp, OnError, Spill};
pub use crate::data::pipeline::{InputConfig, Rollback};
use crate::data::tail::{FileInputOptions, Format, MultilineRules, PathMatcher, StartAt};
use crate::plugin::{Grants, Limits, PluginKind, PluginSource, PluginSpec};

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
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let raw: raw::RawConfig =
        serde_path_to_error::deserialize(de).map_err(|e| path_error(path, e))?;
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

/// The first `http://` or `https://` URL in a flusher's config whose
/// `host:port` is not granted: (key path below `config`, URL, host:port).
/// `validate` refuses what every request would then be denied.
fn ungranted_url(value: &serde_json::Value, hosts: &[String]) -> Option<(String, String, String)> {
    match value {
        serde_json::Value::String(s) => {
            let uri: http::Uri = s.parse().ok()?;
            let scheme = uri.scheme_str()?;
            if scheme != "http" && scheme != "https" {
                return None;
            }
            let auth = uri.authority()?;
            let port = auth
                .port_u16()
                .unwrap_or(if scheme == "https" { 443 } else { 80 });
            let authority = format!("{}:{port}", auth.host());
            (!hosts.contains(&authority)).then(|| (String::new(), s.clone(), authority))
        }
        serde_json::Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| {
            ungranted_url(v, hosts).map(|(at, u, a)| (format!("[{i}]{at}"), u, a))
        }),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            ungranted_url(v, hosts).map(|(at, u, a)| (format!(".{k}{at}"), u, a))
        }),
        _ => None,
    }
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
            base: self.base.to_path_buf(),
            plugins_dir,
        })
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
            .map(|(i, input)| self.input(&format!("{key}.inputs[{i}]"), input))
            .collect::<Result<_, _>>()?;
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
            rollback,
        })
    }

    fn input(&self, key: &str, input: raw::RawInput) -> Result<InputConfig, ConfigError> {
        match input {
            raw::RawInput::File(f) => self.file_input(key, *f),
            raw::RawInput::Docker(d) => self.docker_input(key, *d),
            raw::RawInput::Kubernetes(k) => self.kubernetes_input(key, *k),
        }
    }

    fn file_input(&self, key: &str, f: raw::RawFileInput) -> Result<InputConfig, ConfigError> {
        if f.paths.is_empty() {
            return self.err(
                format!("{key}.paths"),
                "at least one path pattern is needed",
            );
        }
        let abs = |pats: &[String]| -> Vec<String> {
            pats.iter()
                .map(|p| self.absolute(Path::new(p)).to_string_lossy().into_owned())
                .collect()
        };
        let include = abs(&f.paths);
        let exclude = abs(&f.exclude);
        if let Err(e) = PathMatcher::new(&include, &exclude) {
            return self.err(format!("{key}.paths"), e.to_string());
        }
        let mut read = self.read_options(key, f.read_options())?;
        read.include = include;
        read.exclude = exclude;
        read.format = match f.format {
            raw::LineFormat::Raw => Format::Raw,
            raw::LineFormat::DockerJson => Format::DockerJson,
            raw::LineFormat::Cri => Format::Cri,
        };
        Ok(InputConfig {
            read,
            discovery: None,
        })
    }

    fn docker_input(&self, key: &str, d: raw::RawDockerInput) -> Result<InputConfig, ConfigError> {
        let read = self.read_options(key, d.read_options())?;
        let endpoint = match d.endpoint {
            Some(e) => e,
            None => std::env::var("DOCKER_HOST")
                .ok()
                .filter(|h| h.starts_with("unix://"))
                .unwrap_or_else(|| docker::DEFAULT_ENDPOINT.to_owned()),
        };
        if !endpoint.starts_with("unix://") {
            return self.err(
                format!("{key}.endpoint"),
                format!("`{endpoint}` is not supported: use a unix:// socket address"),
            );
        }
        for (i, p) in d.paths.iter().enumerate() {
            if !p.starts_with('/') {
                return self.err(
                    format!("{key}.paths[{i}]"),
                    format!("`{p}` must be an absolute path as seen inside the container"),
                );
            }
            if let Err(e) = PathMatcher::new(std::slice::from_ref(p), &[]) {
                return self.err(format!("{key}.paths[{i}]"), e.to_string());
            }
        }
        if !d.stdout && d.paths.is_empty() {
            return self.err(
                key,
                "nothing to collect: set `stdout: true` or name `paths` inside the containers",
            );
        }
        let host_root = PathBuf::from(&d.host_root);
        if !host_root.is_absolute() {
            return self.err(format!("{key}.host_root"), "must be an absolute path");
        }
        if d.resync_interval.is_zero() {
            return self.err(format!("{key}.resync_interval"), "must be above zero");
        }
        let docker = DockerOptions {
            endpoint,
            stdout: d.stdout,
            paths: d.paths,
            include: self.container_filter(&format!("{key}.include"), d.include)?,
            exclude: self.container_filter(&format!("{key}.exclude"), d.exclude)?,
            env_tags: d.env_tags,
            label_tags: d.label_tags,
            host_root,
            resync_interval: d.resync_interval,
        };
        Ok(InputConfig {
            read,
            discovery: Some(DiscoveryConfig::Docker(docker)),
        })
    }

    fn kubernetes_input(
        &self,
        key: &str,
        k: raw::RawKubernetesInput,
    ) -> Result<InputConfig, ConfigError> {
        let read = self.read_options(key, k.read_options())?;
        let node_name = self.node_name(&format!("{key}.node_name"), k.node_name)?;
        self.api_server(&format!("{key}.api_server"), k.api_server.as_deref())?;
        let host_root = PathBuf::from(&k.host_root);
        if !host_root.is_absolute() || !k.pods_dir.starts_with('/') {
            return self.err(
                format!("{key}.pods_dir"),
                "pods_dir and host_root must be absolute paths",
            );
        }
        let pods_dir = PathBuf::from(format!(
            "{}{}",
            k.host_root.trim_end_matches('/'),
            k.pods_dir
        ));
        if !k.kubelet_dir.starts_with('/') {
            return self.err(format!("{key}.kubelet_dir"), "must be an absolute path");
        }
        for (i, p) in k.paths.iter().enumerate() {
            if !p.starts_with('/') {
                return self.err(
                    format!("{key}.paths[{i}]"),
                    format!("`{p}` must be an absolute path inside the container"),
                );
            }
        }
        if !k.stdout && k.paths.is_empty() {
            return self.err(
                format!("{key}.stdout"),
                "nothing to read: stdout is false and no paths are given",
            );
        }
        if let Some(sel) = &k.selector
            && let Err(e) = crate::data::discovery::kubernetes::check_selector(sel)
        {
            return self.err(format!("{key}.selector"), e);
        }
        let kubelet_dir = PathBuf::from(format!(
            "{}{}",
            k.host_root.trim_end_matches('/'),
            k.kubelet_dir
        ));
        let kubernetes = KubernetesOptions {
            api_server: k.api_server,
            node_name,
            pods_dir,
            kubelet_dir,
            host_root,
            stdout: k.stdout,
            paths: k.paths,
            selector: k.selector,
            include: self.pod_filter(&format!("{key}.include"), k.include)?,
            exclude: self.pod_filter(&format!("{key}.exclude"), k.exclude)?,
            label_tags: k.label_tags,
            annotation_tags: k.annotation_tags,
            namespace_label_tags: k.namespace_label_tags,
        };
        Ok(InputConfig {
            read,
            discovery: Some(DiscoveryConfig::Kubernetes(kubernetes)),
        })
    }

    fn pod_filter(&self, key: &str, f: raw::RawPodFilter) -> Result<PodFilter, ConfigError> {
        let re = |k: String, p: &str| {
            docker::whole(p).map_err(|e| ConfigError {
                file: self.file.to_path_buf(),
                key: format!("{key}.{k}"),
                message: format!("invalid regex: {e}"),
            })
        };
        Ok(PodFilter {
            namespaces: f
                .namespaces
                .iter()
                .enumerate()
                .map(|(i, n)| re(format!("namespaces[{i}]"), n))
                .collect::<Result<_, _>>()?,
            labels: f
                .labels
                .into_iter()
                .map(|(k, v)| Ok((k.clone(), re(format!("labels.{k}"), &v)?)))
                .collect::<Result<_, ConfigError>>()?,
            container: f
                .container
                .map(|c| re("container".into(), &c))
                .transpose()?,
        })
    }

    fn container_filter(
        &self,
        key: &str,
        f: raw::RawContainerFilter,
    ) -> Result<ContainerFilter, ConfigError> {
        let re = |k: String, p: &str| {
            docker::whole(p).map_err(|e| ConfigError {
                file: self.file.to_path_buf(),
                key: format!("{key}.{k}"),
                message: format!("invalid regex: {e}"),
            })
        };
        let pairs = |what: &str, m: std::collections::BTreeMap<String, String>| {
            m.into_iter()
                .map(|(k, v)| Ok((k.clone(), re(format!("{what}.{k}"), &v)?)))
                .collect::<Result<Vec<_>, ConfigError>>()
        };
        Ok(ContainerFilter {
            labels: pairs("labels", f.labels)?,
            env: pairs("env", f.env)?,
            name: f.name.map(|n| re("name".into(), &n)).transpose()?,
            image: f.image.map(|i| re("image".into(), &i)).transpose()?,
        })
    }

    fn read_options(
        &self,
        key: &str,
        f: raw::RawReadOptions,
    ) -> Result<FileInputOptions, ConfigError> {
        if f.max_line_bytes == 0 {
            return self.err(format!("{key}.max_line_bytes"), "must be at least 1");
        }
        if f.poll_interval.is_zero() || f.rescan_interval.is_zero() {
            return self.err(
                format!("{key}.poll_interval"),
                "poll_interval and rescan_interval must be above zero",
            );
        }
        let multiline = match f.multiline {
            None => None,
            Some(m) => Some(self.multiline(&format!("{key}.multiline"), m)?),
        };
        Ok(FileInputOptions {
            include: Vec::new(),
            exclude: Vec::new(),
            start_at: match f.start_at {
                raw::StartAt::Beginning => StartAt::Beginning,
                raw::StartAt::End => StartAt::End,
            },
            format: Format::Raw,
            max_line_bytes: f.max_line_bytes,
            partial_line_timeout: f.partial_line_timeout,
            rescan_interval: f.rescan_interval,
            poll_interval: f.poll_interval,
            multiline,
            release_deleted_after: f.release_deleted_after,
        })
    }

    fn multiline(&self, key: &str, m: raw::RawMultiline) -> Result<MultilineRules, ConfigError> {
        let re = |name: &str, p: Option<String>| -> Result<Option<Regex>, ConfigError> {
            match p {
                None => Ok(None),
                Some(p) => Regex::new(&p).map(Some).map_err(|e| ConfigError {
                    file: self.file.to_path_buf(),
                    key: format!("{key}.{name}"),
                    message: format!("invalid regex: {e}"),
                }),
            }
        };
        let rules = MultilineRules {
            start: re("start", m.start)?,
            continue_pattern: re("continue", m.continue_pattern)?,
            end: re("end", m.end)?,
            max_lines: m.max_lines,
            flush_timeout: m.flush_timeout,
        };
        if rules.start.is_none() && rules.continue_pattern.is_none() && rules.end.is_none() {
            return self.err(key, "set at least one of start, continue or end");
        }
        if rules.max_lines == 0 {
            return self.err(format!("{key}.max_lines"), "must be at least 1");
        }
        Ok(rules)
    }

    fn plugin(
        &self,
        key: &str,
        kind: PluginKind,
        e: raw::RawPlugin,
    ) -> Result<PluginEntry, ConfigError> {
        let mut bundle = None;
        let source = match e.plugin.strip_prefix("builtin:") {
            Some(name) => {
                if crate::plugin::builtin::get(name).is_none() {
                    let names: Vec<_> = crate::plugin::builtin::names().collect();
                    return self.err(
                        format!("{key}.plugin"),
                        format!(
                            "there is no builtin plugin `{name}` (builtins: {})",
                            names.join(", ")
                        ),
                    );
                }
                PluginSource::Builtin(name.to_owned())
            }
            None if !e.plugin.contains('/') && !e.plugin.ends_with(".wasm") => {
                let Some(reg) = self.bundles else {
                    return self.err(
                        format!("{key}.plugin"),
                        format!(
                            "`{}` is not builtin:NAME or a .wasm path, and no plugins_dir is set to look for a bundle of that name",
                            e.plugin
                        ),
                    );
                };
                let b = match reg.resolve(&e.plugin) {
                    Ok(b) => b,
                    Err(err) => return self.err(format!("{key}.plugin"), err.to_string()),
                };
                if b.kind != kind {
                    return self.err(
                        format!("{key}.plugin"),
                        format!("bundle {} is a {}, not a {kind}", b.id(), b.kind),
                    );
                }
                bundle = Some(b);
                PluginSource::Bundle {
                    id: b.id(),
                    path: b.component.clone(),
                    sha256: b.sha256.clone(),
                }
            }
            None => {
                let path = self.absolute(Path::new(&e.plugin));
                if !path.is_file() {
                    return self.err(
                        format!("{key}.plugin"),
                        format!(
                            "`{}` is neither builtin:NAME nor an existing .wasm file ({})",
                            e.plugin,
                            path.display()
                        ),
                    );
                }
                PluginSource::File(path)
            }
        };
        let config_json = match (bundle, &e.config) {
            (Some(b), c) => b.merged_config(c.as_ref()).to_string(),
            (None, None) => "{}".to_owned(),
            (None, Some(v)) if v.is_null() => "{}".to_owned(),
            (None, Some(v)) => v.to_string(),
        };
        if let Some(b) = bundle {
            self.bundle_grants(key, b, &e.grants)?;
        }
        if e.limits.memory_mib == 0 {
            return self.err(format!("{key}.limits.memory_mib"), "must be at least 1");
        }
        if e.limits.call_timeout.is_zero() {
            return self.err(format!("{key}.limits.call_timeout"), "must be above zero");
        }
        let mut dirs = Vec::new();
        for (i, d) in e.grants.dirs.iter().enumerate() {
            let abs = self.absolute(d);
            if abs.parent().is_none() {
                return self.err(
                    format!("{key}.grants.dirs[{i}]"),
                    "granting `/` gives the plugin the whole host; grant the directory it writes to",
                );
            }
            if abs.exists() && !abs.is_dir() {
                return self.err(
                    format!("{key}.grants.dirs[{i}]"),
                    format!("{} is not a directory", abs.display()),
                );
            }
            dirs.push(abs);
        }
        for (i, h) in e.grants.hosts.iter().enumerate() {
            let ok = h
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !ok {
                return self.err(
                    format!("{key}.grants.hosts[{i}]"),
                    format!("`{h}` is not host:port"),
                );
            }
        }
        if kind == PluginKind::Flusher
            && let Ok(value) = serde_json::from_str::<serde_json::Value>(&config_json)
            && let Some((at, url, authority)) = ungranted_url(&value, &e.grants.hosts)
        {
            return self.err(
                format!("{key}.config{at}"),
                format!(
                    "`{url}` reaches {authority}, which is not in grants.hosts (add `{authority}` to grants.hosts)"
                ),
            );
        }
        if kind == PluginKind::Processor
            && (!e.grants.hosts.is_empty() || !e.grants.dirs.is_empty() || e.grants.stdout)
        {
            return self.err(
                format!("{key}.grants"),
                "processors get no grants: only flushers reach files or the network",
            );
        }
        if kind == PluginKind::Processor && e.spill.is_some() {
            return self.err(
                format!("{key}.spill"),
                "only flushers spill to the disk buffer",
            );
        }
        if e.spill.as_ref().is_some_and(|s| s.max_mib == 0) {
            return self.err(format!("{key}.spill.max_mib"), "must be at least 1");
        }
        if kind == PluginKind::Flusher && e.on_error.then == GiveUp::Skip {
            return self.err(
                format!("{key}.on_error.then"),
                "`skip` is for processors; use dead_letter or drop",
            );
        }
        Ok(PluginEntry {
            key: key.to_owned(),
            reference: match bundle {
                Some(b) => b.id(),
                None => e.plugin.clone(),
            },
            kind,
            spec: PluginSpec {
                source,
                config_json,
                config_dir: self.base.to_path_buf(),
                limits: Limits {
                    memory_bytes: (e.limits.memory_mib as usize).saturating_mul(1 << 20),
                    call_timeout: e.limits.call_timeout,
                    epoch_deadline: e.limits.epoch_deadline,
                },
                grants: Grants {
                    dirs,
                    hosts: e.grants.hosts.clone(),
                    stdout: e.grants.stdout,
                },
            },
            on_error: OnError {
                retries: e.on_error.retries,
                backoff: e.on_error.backoff,
                max_backoff: e.on_error.max_backoff.max(e.on_error.backoff),
                then: e.on_error.then,
            },
            spill: e.spill.as_ref().map(|s| Spill {
                max_bytes: s.max_mib.saturating_mul(1 << 20),
                drop_oldest: s.when_full == raw::WhenFull::DropOldest,
            }),
        })
    }
}

impl Resolver<'_> {
    /// Every grant bundle `b` needs must be given by the pipeline.
    fn bundle_grants(
        &self,
        key: &str,
        b: &crate::plugin::bundle::Bundle,
        given: &raw::RawGrants,
    ) -> Result<(), ConfigError> {
        let missing: Vec<String> = b
            .needs
            .hosts
            .iter()
            .filter(|h| !given.hosts.contains(h))
            .map(|h| format!("hosts: {h}"))
            .chain(
                b.needs
                    .dirs
                    .iter()
                    .filter(|d| {
                        let want = self.absolute(d);
                        !given.dirs.iter().any(|g| self.absolute(g) == want)
                    })
                    .map(|d| format!("dirs: {}", d.display())),
            )
            .chain((b.needs.stdout && !given.stdout).then(|| "stdout: true".to_owned()))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        self.err(
            format!("{key}.grants"),
            format!(
                "bundle {} needs grants the pipeline does not give: {}",
                b.id(),
                missing.join(", ")
            ),
        )
    }
}

#[cfg(test)]
mod tests;
