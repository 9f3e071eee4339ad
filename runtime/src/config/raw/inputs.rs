//! Inputs as the user wrote them: `file`, `docker` and `kubernetes`, the
//! reading options they share, their filters and multiline rules.

use std::time::Duration;

use serde::Deserialize;

use super::default_true;

/// An input, chosen by its `type` key.
#[derive(Debug, Clone)]
pub enum RawInput {
    /// Tail files matching glob patterns.
    File(Box<RawFileInput>),
    /// Containers of a Docker engine: their stdout/stderr and files inside them.
    Docker(Box<RawDockerInput>),
    /// The pods of this Kubernetes node: their CRI log files.
    Kubernetes(Box<RawKubernetesInput>),
    /// A Kafka consumer group over topics (an aggregator's input).
    Kafka(Box<RawKafkaInput>),
    /// The cluster's Kubernetes Events, shipped by one agent at a time.
    KubernetesEvents(Box<RawKubernetesEventsInput>),
}

/// Marks the path inside an input in an error message, so `config::parse`
/// can add it to the key (serde's tagged enums lose it otherwise).
pub const INNER_PATH_MARK: char = '\u{1}';

impl<'de> Deserialize<'de> for RawInput {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut map = serde_yaml_ng::Mapping::deserialize(d)?;
        let inner = |path: &str, message: String| {
            D::Error::custom(format!("{INNER_PATH_MARK}{path}: {message}"))
        };
        let kind = match map.remove("type") {
            Some(serde_yaml_ng::Value::String(t)) => t,
            Some(_) => return Err(inner("type", "must be a string".into())),
            None => {
                return Err(inner(
                    "type",
                    "missing: `file`, `docker`, `kubernetes`, `kubernetes_events` or `kafka`"
                        .into(),
                ));
            }
        };
        fn typed<'de, T: Deserialize<'de>, E: serde::de::Error>(
            map: serde_yaml_ng::Mapping,
        ) -> Result<T, E> {
            serde_path_to_error::deserialize(serde_yaml_ng::Value::Mapping(map)).map_err(|e| {
                let path = e.path().to_string();
                E::custom(format!("{INNER_PATH_MARK}{path}: {}", e.into_inner()))
            })
        }
        match kind.as_str() {
            "file" => typed(map).map(|f| RawInput::File(Box::new(f))),
            "docker" => typed(map).map(|d| RawInput::Docker(Box::new(d))),
            "kubernetes" => typed(map).map(|k| RawInput::Kubernetes(Box::new(k))),
            "kafka" => typed(map).map(|k| RawInput::Kafka(Box::new(k))),
            "kubernetes_events" => typed(map).map(|k| RawInput::KubernetesEvents(Box::new(k))),
            other => Err(inner(
                "type",
                format!(
                    "unknown input type `{other}`, expected `file`, `docker`, `kubernetes`, `kubernetes_events` or `kafka`"
                ),
            )),
        }
    }
}

/// `type: kafka`: records of a consumer group's partitions as events; each
/// partition's offset is committed once what was read before it is
/// delivered.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKafkaInput {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// The consumer group id: agents sharing it share the partitions.
    pub group: String,
    /// Where a partition the group has no committed offset for starts:
    /// `earliest` (default: nothing already in Kafka is skipped) or
    /// `latest`.
    #[serde(default)]
    pub start_at: KafkaStartAt,
    /// Client id sent to the brokers. Default `gleaner`.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// SASL credentials: `{mechanism: PLAIN | SCRAM-SHA-256 |
    /// SCRAM-SHA-512, username, password}`.
    #[serde(default)]
    pub sasl: Option<RawSasl>,
    /// TLS to the brokers (Kafka's `SSL` and `SASL_SSL` listeners):
    /// `{ca_file, cert_file, key_file, verify}`, `{}` for the system's
    /// roots. Absent: plain TCP.
    #[serde(default)]
    pub tls: Option<super::RawTls>,
    /// Without a heartbeat for this long the group moves the partitions
    /// to other members. Default `10s`.
    #[serde(default = "default_session_timeout", with = "humantime_serde")]
    pub session_timeout: Duration,
    /// Time between heartbeats. Default `3s`.
    #[serde(default = "default_heartbeat_interval", with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Longest a fetch waits at the broker for new records. Default `500ms`.
    #[serde(default = "default_fetch_max_wait", with = "humantime_serde")]
    pub fetch_max_wait: Duration,
    /// Bytes one fetch may return. Default 16 MiB.
    #[serde(default = "default_fetch_max_bytes")]
    pub fetch_max_bytes: usize,
    /// How often delivered offsets are committed. Default `1s`.
    #[serde(default = "default_commit_interval", with = "humantime_serde")]
    pub commit_interval: Duration,
}

/// `type: kubernetes_events`: the cluster's Events (`v1/events`), each
/// delivered once, by whichever agent holds the input's Lease; its resume
/// point is kept in that Lease.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKubernetesEventsInput {
    /// The API server URL. Default: the in-cluster service account, else
    /// the kubeconfig.
    #[serde(default)]
    pub api_server: Option<String>,
    /// Only Events in these namespaces. Default: all.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// A field selector the API server applies (e.g. `type=Warning` or
    /// `involvedObject.kind=Pod`).
    #[serde(default)]
    pub field_selector: Option<String>,
    /// The Lease electing the one agent that ships Events and holding its
    /// resume point. Default `gleaner-events-<pipeline>`.
    #[serde(default)]
    pub lease: Option<String>,
    /// The Lease's namespace. Default: `$POD_NAMESPACE`, else `gleaner`.
    #[serde(default)]
    pub lease_namespace: Option<String>,
    /// This agent's name in the Lease. Default: `$NODE_NAME`, else the
    /// host name.
    #[serde(default)]
    pub identity: Option<String>,
    /// Where the first agent ever starts (later ones resume where the last
    /// one stopped): `existing` (default: every Event the API server still
    /// holds) or `now`.
    #[serde(default)]
    pub start_at: EventsStartAt,
}

/// Where a `kubernetes_events` input with no resume point starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EventsStartAt {
    /// Every Event the API server still holds (about an hour of them).
    #[default]
    Existing,
    /// Events from now on.
    Now,
}

/// SASL credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSasl {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// User name.
    pub username: String,
    /// Password (use `${...}`).
    pub password: String,
}

/// Where a Kafka partition without a committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum KafkaStartAt {
    /// The oldest record kept.
    #[default]
    Earliest,
    /// Records produced from now on.
    Latest,
}

fn default_client_id() -> String {
    "gleaner".into()
}

fn default_session_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_heartbeat_interval() -> Duration {
    Duration::from_secs(3)
}

fn default_fetch_max_wait() -> Duration {
    Duration::from_millis(500)
}

fn default_fetch_max_bytes() -> usize {
    16 << 20
}

fn default_commit_interval() -> Duration {
    Duration::from_secs(1)
}

/// Where to start reading a file found when Gleaner starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    /// From the first byte.
    Beginning,
    /// From the current end: only lines written from now on. Files that
    /// appear later are always read from their beginning.
    #[default]
    End,
}

/// How the lines of a file are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LineFormat {
    /// Each line is an event as it is.
    #[default]
    Raw,
    /// Docker's json-file log driver: `{"log":…,"stream":…,"time":…}`.
    DockerJson,
    /// The CRI log format: `<time> <stdout|stderr> <P|F> <text>`.
    Cri,
}

/// The reading options every input that tails files has.
#[derive(Debug, Clone)]
pub struct RawReadOptions {
    /// See the `file` input.
    pub start_at: StartAt,
    /// See the `file` input.
    pub max_line_bytes: usize,
    /// See the `file` input.
    pub partial_line_timeout: Duration,
    /// See the `file` input.
    pub rescan_interval: Duration,
    /// See the `file` input.
    pub poll_interval: Duration,
    /// See the `file` input.
    pub multiline: Option<RawMultiline>,
    /// See the `file` input.
    pub release_deleted_after: Duration,
}

/// Declares an input struct with its own fields followed by the reading
/// options shared by every input that tails files (serde's `flatten` does
/// not work with `deny_unknown_fields`).
macro_rules! input_with_read_options {
    ($(#[$meta:meta])* pub struct $name:ident { $($fields:tt)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($fields)*
            /// Where to start in files present at startup. Default `end`.
            #[serde(default)]
            pub start_at: StartAt,
            /// Longest line kept, in bytes; longer lines are cut to this length,
            /// the rest of the line is skipped, and both are counted. Default 1 MiB.
            #[serde(default = "default_max_line_bytes")]
            pub max_line_bytes: usize,
            /// How long a last line without a newline is held before it is sent as
            /// it is. Default `5s`.
            #[serde(default = "default_partial_line_timeout", with = "humantime_serde")]
            pub partial_line_timeout: Duration,
            /// How often the patterns are re-evaluated in full, as a safety net for
            /// missed file-system notifications. Default `10s`.
            #[serde(default = "default_rescan_interval", with = "humantime_serde")]
            pub rescan_interval: Duration,
            /// How often open files are checked for new data even without a
            /// notification. Default `250ms`.
            #[serde(default = "default_poll_interval", with = "humantime_serde")]
            pub poll_interval: Duration,
            /// Group several lines into one event (stack traces).
            #[serde(default)]
            pub multiline: Option<RawMultiline>,
            /// A deleted file is read to its end, but released after this long even
            /// if its output is too slow to drain it (the bytes given up are counted
            /// and logged). Default `5m`.
            #[serde(default = "default_release_deleted_after", with = "humantime_serde")]
            pub release_deleted_after: Duration,
        }

        impl $name {
            /// The shared reading options.
            pub fn read_options(&self) -> RawReadOptions {
                RawReadOptions {
                    start_at: self.start_at,
                    max_line_bytes: self.max_line_bytes,
                    partial_line_timeout: self.partial_line_timeout,
                    rescan_interval: self.rescan_interval,
                    poll_interval: self.poll_interval,
                    multiline: self.multiline.clone(),
                    release_deleted_after: self.release_deleted_after,
                }
            }
        }
    };
}

input_with_read_options! {
    /// The `file` input.
    pub struct RawFileInput {
        /// Glob patterns of files to read: `*`, `?`, `[abc]`, `{a,b}` and `**`
        /// (any number of directories). Relative patterns are resolved against
        /// the config file's directory.
        pub paths: Vec<String>,
        /// Glob patterns of files to skip even though `paths` matches them.
        #[serde(default)]
        pub exclude: Vec<String>,
        /// How lines are decoded. Default `raw`.
        #[serde(default)]
        pub format: LineFormat,
    }
}

input_with_read_options! {
    /// The `docker` input.
    pub struct RawDockerInput {
        /// The engine's API: `unix:///path/to/docker.sock`. Default:
        /// `$DOCKER_HOST` if it is a `unix://` address, else
        /// `unix:///var/run/docker.sock`.
        #[serde(default)]
        pub endpoint: Option<String>,
        /// Collect the containers' output (stdout and stderr, from the
        /// json-file log driver; each event's `stream` field says which).
        /// Default `true`.
        #[serde(default = "default_true")]
        pub stdout: bool,
        /// Files inside containers, as paths seen inside the container
        /// (absolute glob patterns), e.g. `/var/log/app/*.log`.
        #[serde(default)]
        pub paths: Vec<String>,
        /// Only containers that match every condition given here.
        #[serde(default)]
        pub include: RawContainerFilter,
        /// Never containers that match any condition given here.
        #[serde(default)]
        pub exclude: RawContainerFilter,
        /// Environment variables of the container copied into the
        /// `container.env.<NAME>` tags.
        #[serde(default)]
        pub env_tags: Vec<String>,
        /// Copy every container label into `container.label.<key>` tags.
        /// Default `true`.
        #[serde(default = "default_true")]
        pub label_tags: bool,
        /// Where the host's root file system is seen by Gleaner: `/` when
        /// it runs on the host, e.g. `/host` in a container started with
        /// `-v /:/host:ro`. Host paths from the engine are read below it.
        #[serde(default = "default_host_root")]
        pub host_root: String,
        /// Full re-list of the containers, a safety net for missed
        /// engine events. Default `60s`.
        #[serde(default = "default_resync_interval", with = "humantime_serde")]
        pub resync_interval: Duration,
    }
}

input_with_read_options! {
    /// The `kubernetes` input.
    pub struct RawKubernetesInput {
        /// The API server URL. Default: the in-cluster service account
        /// (`KUBERNETES_SERVICE_HOST`), else the kubeconfig.
        #[serde(default)]
        pub api_server: Option<String>,
        /// This node's name. Default: `$NODE_NAME` (set it from the
        /// downward API: `spec.nodeName`).
        #[serde(default)]
        pub node_name: Option<String>,
        /// Where kubelet writes pod logs on the host. Default `/var/log/pods`.
        #[serde(default = "default_pods_dir")]
        pub pods_dir: String,
        /// Where the host's root file system is seen by Gleaner (see `docker`).
        #[serde(default = "default_host_root")]
        pub host_root: String,
        /// kubelet's root directory on the host (pod volumes live below it).
        /// Default `/var/lib/kubelet`.
        #[serde(default = "default_kubelet_dir")]
        pub kubelet_dir: String,
        /// Collect the containers' output (their CRI log files; each
        /// event's `stream` field says stdout or stderr). Default `true`.
        #[serde(default = "default_true")]
        pub stdout: bool,
        /// Files inside containers, as paths seen inside the container
        /// (absolute glob patterns), read where an `emptyDir` or
        /// `hostPath` volume of the container holds them.
        #[serde(default)]
        pub paths: Vec<String>,
        /// A Kubernetes label selector (`matchLabels`, `matchExpressions`)
        /// the pod must match, as in a Deployment's `selector`.
        #[serde(default)]
        pub selector: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
        /// Only pods and containers that match every condition given here.
        #[serde(default)]
        pub include: RawPodFilter,
        /// Never pods or containers that match any condition given here.
        #[serde(default)]
        pub exclude: RawPodFilter,
        /// Copy pod labels into `k8s.pod.label.<key>` tags. Default `true`.
        #[serde(default = "default_true")]
        pub label_tags: bool,
        /// Copy pod annotations into `k8s.pod.annotation.<key>` tags.
        /// Default `false`.
        #[serde(default)]
        pub annotation_tags: bool,
        /// Copy the labels of each pod's namespace into
        /// `k8s.namespace.label.<key>` tags (one more watch, of
        /// namespaces). Default `false`.
        #[serde(default)]
        pub namespace_label_tags: bool,
    }
}

/// Conditions on a pod and its containers. Every value is a regular
/// expression that must match the whole value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPodFilter {
    /// Namespace patterns: the pod's namespace matches one of them.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Pod label key → value pattern.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Container name pattern.
    #[serde(default)]
    pub container: Option<String>,
}

pub(super) fn default_kubelet_dir() -> String {
    "/var/lib/kubelet".into()
}
pub(super) fn default_pods_dir() -> String {
    "/var/log/pods".to_owned()
}

/// Conditions on a container. Every value is a regular expression that
/// must match the whole value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawContainerFilter {
    /// Label key → value pattern (`.*`: the label is set, any value).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Environment variable → value pattern.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// Container name pattern (without the leading `/`).
    #[serde(default)]
    pub name: Option<String>,
    /// Image pattern, as the container was created with (e.g. `nginx:1.25`).
    #[serde(default)]
    pub image: Option<String>,
}

pub(super) fn default_host_root() -> String {
    "/".to_owned()
}
fn default_resync_interval() -> Duration {
    Duration::from_secs(60)
}

fn default_release_deleted_after() -> Duration {
    Duration::from_secs(300)
}

fn default_max_line_bytes() -> usize {
    1024 * 1024
}
fn default_partial_line_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_rescan_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_poll_interval() -> Duration {
    Duration::from_millis(250)
}

/// Multiline grouping. At least one of `start`, `continue_pattern` or `end`
/// must be set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMultiline {
    /// Regex: a line matching it starts a new event.
    #[serde(default)]
    pub start: Option<String>,
    /// Regex: a line matching it belongs to the event before it.
    #[serde(default, rename = "continue")]
    pub continue_pattern: Option<String>,
    /// Regex: a line matching it ends the current event (and is part of it).
    #[serde(default)]
    pub end: Option<String>,
    /// Most lines in one event; the event is sent when reached. Default 500.
    #[serde(default = "default_max_lines")]
    pub max_lines: usize,
    /// An incomplete event is sent after this long without a new line. Default `3s`.
    #[serde(default = "default_flush_timeout", with = "humantime_serde")]
    pub flush_timeout: Duration,
}

fn default_max_lines() -> usize {
    500
}
fn default_flush_timeout() -> Duration {
    Duration::from_secs(3)
}
