//! Resolving inputs: `file`, `docker`, `kubernetes`, `kubernetes_events` and
//! `kafka` inputs into the data path's reading options and discovery
//! settings, with their filters, multiline rules and path patterns checked.

use std::path::{Path, PathBuf};

use regex::bytes::Regex;

use super::{ConfigError, InputConfig, Resolver, raw};
use crate::data::discovery::DiscoveryConfig;
use crate::data::discovery::docker::{self, ContainerFilter, DockerOptions};
use crate::data::discovery::kubernetes::{KubernetesOptions, PodFilter};
use crate::data::kafka::{KafkaOptions, Mechanism, Sasl, StartAt as KafkaStart};
use crate::data::kube_events::{EventsStart, KubeEventsOptions};
use crate::data::tail::{FileInputOptions, Format, MultilineRules, PathMatcher, StartAt};

impl Resolver<'_> {
    pub(super) fn input(
        &self,
        key: &str,
        pipeline: &str,
        input: raw::RawInput,
    ) -> Result<InputConfig, ConfigError> {
        match input {
            raw::RawInput::File(f) => self.file_input(key, *f),
            raw::RawInput::Docker(d) => self.docker_input(key, *d),
            raw::RawInput::Kubernetes(k) => self.kubernetes_input(key, *k),
            raw::RawInput::Kafka(k) => self.kafka_input(key, *k),
            raw::RawInput::KubernetesEvents(k) => self.events_input(key, pipeline, *k),
        }
    }

    fn events_input(
        &self,
        key: &str,
        pipeline: &str,
        k: raw::RawKubernetesEventsInput,
    ) -> Result<InputConfig, ConfigError> {
        self.api_server(&format!("{key}.api_server"), k.api_server.as_deref())?;
        let lease = match k.lease {
            Some(name) => {
                if name == crate::state::lease::STATUS_LEASE {
                    return self.err(
                        format!("{key}.lease"),
                        "that Lease elects the agent writing pipeline status; name another",
                    );
                }
                if !dns_subdomain(&name) {
                    return self.err(
                        format!("{key}.lease"),
                        format!("`{name}` is not a Kubernetes object name (lower-case letters, digits, - and .)"),
                    );
                }
                name
            }
            None => {
                let name = format!("gleaner-events-{pipeline}")
                    .to_ascii_lowercase()
                    .replace('_', "-");
                if !dns_subdomain(&name) {
                    return self.err(
                        format!("{key}.lease"),
                        format!("not set, and `{name}` (from the pipeline's name) is not a Kubernetes object name: set it"),
                    );
                }
                name
            }
        };
        for (i, ns) in k.namespaces.iter().enumerate() {
            if !dns_subdomain(ns) {
                return self.err(
                    format!("{key}.namespaces[{i}]"),
                    format!("`{ns}` is not a namespace name"),
                );
            }
        }
        let identity = k
            .identity
            .or_else(|| std::env::var("NODE_NAME").ok())
            .filter(|n| !n.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
            })
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "gleaner".into());
        Ok(InputConfig::KubernetesEvents(KubeEventsOptions {
            api_server: k.api_server,
            namespaces: k.namespaces,
            field_selector: k.field_selector.filter(|s| !s.is_empty()),
            lease,
            lease_namespace: self.lease_namespace(k.lease_namespace),
            identity,
            start_at: match k.start_at {
                raw::EventsStartAt::Existing => EventsStart::Existing,
                raw::EventsStartAt::Now => EventsStart::Now,
            },
        }))
    }

    fn kafka_input(&self, key: &str, k: raw::RawKafkaInput) -> Result<InputConfig, ConfigError> {
        if k.brokers.is_empty() {
            return self.err(
                format!("{key}.brokers"),
                "at least one `host:port` is needed",
            );
        }
        for (i, b) in k.brokers.iter().enumerate() {
            let ok = b
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return self.err(
                    format!("{key}.brokers[{i}]"),
                    format!("`{b}` is not `host:port`"),
                );
            }
        }
        if k.topics.is_empty() {
            return self.err(format!("{key}.topics"), "at least one topic is needed");
        }
        if k.group.is_empty() {
            return self.err(format!("{key}.group"), "must not be empty");
        }
        let sasl = match k.sasl {
            None => None,
            Some(s) => Some(Sasl {
                mechanism: match Mechanism::parse(&s.mechanism) {
                    Some(m) => m,
                    None => {
                        return self.err(
                            format!("{key}.sasl.mechanism"),
                            format!(
                                "`{}` is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                                s.mechanism
                            ),
                        );
                    }
                },
                username: s.username,
                password: s.password,
            }),
        };
        let tls = match &k.tls {
            None => None,
            Some(t) => Some(self.tls_spec(key, t)?),
        };
        if k.heartbeat_interval >= k.session_timeout {
            return self.err(
                format!("{key}.heartbeat_interval"),
                "must be shorter than session_timeout",
            );
        }
        Ok(InputConfig::Kafka(KafkaOptions {
            brokers: k.brokers,
            topics: k.topics,
            group: k.group,
            start_at: match k.start_at {
                raw::KafkaStartAt::Earliest => KafkaStart::Earliest,
                raw::KafkaStartAt::Latest => KafkaStart::Latest,
            },
            client_id: k.client_id,
            sasl,
            tls,
            session_timeout: k.session_timeout,
            heartbeat_interval: k.heartbeat_interval,
            fetch_max_wait: k.fetch_max_wait,
            fetch_max_bytes: k.fetch_max_bytes.clamp(1 << 10, i32::MAX as usize),
            commit_interval: k.commit_interval,
        }))
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
        Ok(InputConfig::Files {
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
        Ok(InputConfig::Files {
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
        Ok(InputConfig::Files {
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
}

/// Whether `name` may name a Kubernetes object (RFC 1123 subdomain).
fn dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}
