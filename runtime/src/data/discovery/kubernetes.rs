//! Kubernetes discovery through the API server (`kube`): one watch of the
//! pods on this node (field selector `spec.nodeName`), never a request per
//! pod, file or line. Every selected container of every pod becomes a
//! target: its CRI log files under `/var/log/pods/<ns>_<pod>_<uid>/<container>/`
//! (including kubelet's rotated files), tagged with namespace, pod name and
//! uid, container name and image, node, pod labels and annotations, and the
//! owning workload.
//!
//! `kube`'s watcher lists, then watches from the list's resourceVersion,
//! and on `410 Gone`, errors and disconnects lists again (with backoff):
//! after every list the complete set goes to the tailer as a `Sync`, so a
//! pod added or deleted meanwhile is picked up or drained. A deleted pod's
//! files keep their tags until they are read to their end: metadata is bound
//! to the target, not looked up per line.
//!
//! Owns the API connection only: never opens a log file.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use regex::Regex;
use tracing::{debug, info, warn};

use super::{DiscoveryStats, glob_escape, map_path, on_host};
use crate::data::tail::{Format, Tags, Target, TargetUpdate};

/// The pod annotation that excludes a pod from collection when `"true"`.
pub const EXCLUDE_ANNOTATION: &str = "gleaner.io/exclude";

/// Tag names.
pub mod tags {
    /// Namespace.
    pub const NAMESPACE: &str = "k8s.namespace";
    /// Pod name.
    pub const POD: &str = "k8s.pod.name";
    /// Pod uid.
    pub const POD_UID: &str = "k8s.pod.uid";
    /// Container name.
    pub const CONTAINER: &str = "k8s.container.name";
    /// Container image.
    pub const IMAGE: &str = "k8s.container.image";
    /// Node name.
    pub const NODE: &str = "k8s.node.name";
    /// Owning workload kind (Deployment, StatefulSet, DaemonSet, Job, …).
    pub const OWNER_KIND: &str = "k8s.owner.kind";
    /// Owning workload name.
    pub const OWNER_NAME: &str = "k8s.owner.name";
    /// Prefix of pod label tags.
    pub const LABEL: &str = "k8s.pod.label.";
    /// Prefix of pod annotation tags.
    pub const ANNOTATION: &str = "k8s.pod.annotation.";
    /// Prefix of namespace label tags.
    pub const NAMESPACE_LABEL: &str = "k8s.namespace.label.";
}

/// Checked options of a `kubernetes` input.
#[derive(Debug, Clone)]
pub struct KubernetesOptions {
    /// API server URL; `None`: in-cluster service account, else kubeconfig.
    pub api_server: Option<String>,
    /// This node's name (pods are watched with `spec.nodeName=<node>`).
    pub node_name: String,
    /// Where kubelet writes pod logs, as Gleaner sees it.
    pub pods_dir: PathBuf,
    /// kubelet's root directory (pod volumes), as Gleaner sees it.
    pub kubelet_dir: PathBuf,
    /// Where the host's root is seen (for `hostPath` volumes).
    pub host_root: PathBuf,
    /// Read the containers' output (their CRI log files).
    pub stdout: bool,
    /// Files inside containers (paths seen in the container), read where
    /// an `emptyDir` or `hostPath` volume holds them.
    pub paths: Vec<String>,
    /// A Kubernetes label selector the pod must match.
    pub selector: Option<LabelSelector>,
    /// A pod must match all of these.
    pub include: PodFilter,
    /// A pod (or container) must match none of these.
    pub exclude: PodFilter,
    /// Copy pod labels into tags.
    pub label_tags: bool,
    /// Copy pod annotations into tags.
    pub annotation_tags: bool,
    /// Watch namespaces and copy their labels into tags.
    pub namespace_label_tags: bool,
}

/// Conditions on a pod and container; every pattern matches a whole value.
#[derive(Debug, Clone, Default)]
pub struct PodFilter {
    /// Namespace patterns (any of them).
    pub namespaces: Vec<Regex>,
    /// Pod label key and value pattern.
    pub labels: Vec<(String, Regex)>,
    /// Container name pattern.
    pub container: Option<Regex>,
}

impl PodFilter {
    /// Pod-level conditions: whether any namespace pattern matches (if
    /// there are any), then each label condition.
    fn pod_conditions<'a>(
        &'a self,
        namespace: &'a str,
        labels: &'a BTreeMap<String, String>,
    ) -> impl Iterator<Item = bool> + 'a {
        let ns = (!self.namespaces.is_empty())
            .then(|| self.namespaces.iter().any(|re| re.is_match(namespace)));
        ns.into_iter().chain(
            self.labels
                .iter()
                .map(move |(k, re)| labels.get(k).is_some_and(|v| re.is_match(v))),
        )
    }
}

/// What a target needs from a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Uid.
    pub uid: String,
    /// Node.
    pub node: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Owning workload (kind, name), following a ReplicaSet to its Deployment.
    pub owner: Option<(String, String)>,
    /// Containers (init, regular, ephemeral).
    pub containers: Vec<ContainerInfo>,
    /// Labels of the pod's namespace (filled in by discovery when they
    /// are tags).
    pub namespace_labels: BTreeMap<String, String>,
}

/// What a target needs from a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Name.
    pub name: String,
    /// Image.
    pub image: String,
    /// Volume mounts Gleaner can read on the node: mount path in the
    /// container, and where the data lives.
    pub mounts: Vec<(String, MountSource)>,
}

/// Where a mounted volume's files are on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    /// `<kubelet>/pods/<uid>/volumes/kubernetes.io~empty-dir/<volume>/<sub_path>`.
    EmptyDir {
        /// Volume name.
        volume: String,
        /// `subPath` of the mount ("" for none).
        sub_path: String,
    },
    /// A host directory (`hostPath` volume plus `subPath`).
    HostPath(String),
}

impl ContainerInfo {
    fn from_parts(
        name: &str,
        image: Option<&String>,
        mounts: Option<&Vec<VolumeMount>>,
        volumes: &[Volume],
    ) -> ContainerInfo {
        let mounts = mounts
            .into_iter()
            .flatten()
            .filter_map(|m| {
                let v = volumes.iter().find(|v| v.name == m.name)?;
                let sub = m.sub_path.clone().unwrap_or_default();
                let source = if v.empty_dir.is_some() {
                    MountSource::EmptyDir {
                        volume: v.name.clone(),
                        sub_path: sub,
                    }
                } else {
                    let host = v.host_path.as_ref()?.path.trim_end_matches('/').to_owned();
                    MountSource::HostPath(if sub.is_empty() {
                        host
                    } else {
                        format!("{host}/{sub}")
                    })
                };
                Some((m.mount_path.clone(), source))
            })
            .collect();
        ContainerInfo {
            name: name.to_owned(),
            image: image.cloned().unwrap_or_default(),
            mounts,
        }
    }
}

/// Whether `labels` match a Kubernetes label selector (`matchLabels` and
/// `matchExpressions` with `In`, `NotIn`, `Exists`, `DoesNotExist`).
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    by_labels
        && sel.match_expressions.iter().flatten().all(|e| {
            let value = labels.get(&e.key);
            let listed = || value.is_some_and(|v| e.values.iter().flatten().any(|x| x == v));
            match e.operator.as_str() {
                "In" => listed(),
                "NotIn" => !listed(),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// Why a label selector cannot be used, if it cannot.
pub fn check_selector(sel: &LabelSelector) -> Result<(), String> {
    for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
        let n = e.values.as_ref().map_or(0, Vec::len);
        match e.operator.as_str() {
            "In" | "NotIn" if n == 0 => {
                return Err(format!(
                    "matchExpressions[{i}]: `{}` needs values",
                    e.operator
                ));
            }
            "Exists" | "DoesNotExist" if n > 0 => {
                return Err(format!(
                    "matchExpressions[{i}]: `{}` takes no values",
                    e.operator
                ));
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => {
                return Err(format!(
                    "matchExpressions[{i}]: unknown operator `{other}` (In, NotIn, Exists, DoesNotExist)"
                ));
            }
        }
    }
    Ok(())
}

impl PodInfo {
    /// Reads the parts Gleaner uses from a pod; `None` without name or uid.
    pub fn from_pod(pod: &Pod) -> Option<PodInfo> {
        let m = &pod.metadata;
        let labels: BTreeMap<String, String> = m.labels.clone().unwrap_or_default();
        let owner = m
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| {
                // A ReplicaSet named `<deployment>-<pod-template-hash>` belongs
                // to that Deployment (no API request needed to know it).
                let hash = labels.get("pod-template-hash");
                match (o.kind.as_str(), hash) {
                    ("ReplicaSet", Some(h)) => match o.name.strip_suffix(&format!("-{h}")) {
                        Some(d) => ("Deployment".to_owned(), d.to_owned()),
                        None => (o.kind.clone(), o.name.clone()),
                    },
                    _ => (o.kind.clone(), o.name.clone()),
                }
            });
        let mut containers = Vec::new();
        if let Some(spec) = &pod.spec {
            let volumes = spec.volumes.as_deref().unwrap_or_default();
            for c in spec.init_containers.iter().flatten() {
                containers.push(ContainerInfo::from_parts(
                    &c.name,
                    c.image.as_ref(),
                    c.volume_mounts.as_ref(),
                    volumes,
                ));
            }
            for c in &spec.containers {
                containers.push(ContainerInfo::from_parts(
                    &c.name,
                    c.image.as_ref(),
                    c.volume_mounts.as_ref(),
                    volumes,
                ));
            }
            for c in spec.ephemeral_containers.iter().flatten() {
                containers.push(ContainerInfo::from_parts(
                    &c.name,
                    c.image.as_ref(),
                    c.volume_mounts.as_ref(),
                    volumes,
                ));
            }
        }
        Some(PodInfo {
            namespace: m.namespace.clone().unwrap_or_else(|| "default".to_owned()),
            name: m.name.clone()?,
            uid: m.uid.clone()?,
            node: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default(),
            labels,
            annotations: m.annotations.clone().unwrap_or_default(),
            owner,
            containers,
            namespace_labels: BTreeMap::new(),
        })
    }
}

/// The id of a container's target.
pub fn target_id(uid: &str, container: &str) -> String {
    format!("k8s/{uid}/{container}")
}

/// The id of a container's files target.
pub fn files_target_id(uid: &str, container: &str) -> String {
    format!("k8s/{uid}/{container}/files")
}

/// The targets of a pod: per selected container, its output and its files.
pub fn pod_targets(p: &PodInfo, opts: &KubernetesOptions) -> Vec<Target> {
    if p.annotations
        .get(EXCLUDE_ANNOTATION)
        .is_some_and(|v| v == "true")
    {
        return Vec::new();
    }
    let included = opts
        .include
        .pod_conditions(&p.namespace, &p.labels)
        .all(|m| m);
    let excluded = opts
        .exclude
        .pod_conditions(&p.namespace, &p.labels)
        .any(|m| m);
    let selected = opts
        .selector
        .as_ref()
        .is_none_or(|s| selector_matches(s, &p.labels));
    if !included || excluded || !selected {
        return Vec::new();
    }
    let dir = opts
        .pods_dir
        .join(format!("{}_{}_{}", p.namespace, p.name, p.uid));
    let mut base: Vec<(String, String)> = vec![
        (tags::NAMESPACE.to_owned(), p.namespace.clone()),
        (tags::POD.to_owned(), p.name.clone()),
        (tags::POD_UID.to_owned(), p.uid.clone()),
        (tags::NODE.to_owned(), p.node.clone()),
    ];
    if let Some((kind, name)) = &p.owner {
        base.push((tags::OWNER_KIND.to_owned(), kind.clone()));
        base.push((tags::OWNER_NAME.to_owned(), name.clone()));
    }
    if opts.label_tags {
        for (k, v) in &p.labels {
            base.push((format!("{}{k}", tags::LABEL), v.clone()));
        }
    }
    if opts.annotation_tags {
        for (k, v) in &p.annotations {
            base.push((format!("{}{k}", tags::ANNOTATION), v.clone()));
        }
    }
    if opts.namespace_label_tags {
        for (k, v) in &p.namespace_labels {
            base.push((format!("{}{k}", tags::NAMESPACE_LABEL), v.clone()));
        }
    }
    let mut out = Vec::new();
    for ContainerInfo {
        name,
        image,
        mounts,
    } in &p.containers
    {
        if opts
            .include
            .container
            .as_ref()
            .is_some_and(|re| !re.is_match(name))
            || opts
                .exclude
                .container
                .as_ref()
                .is_some_and(|re| re.is_match(name))
        {
            continue;
        }
        let mut t = base.clone();
        t.insert(4, (tags::CONTAINER.to_owned(), name.clone()));
        t.insert(5, (tags::IMAGE.to_owned(), image.clone()));
        let tags = Tags::from(t);
        if opts.stdout {
            let logs = glob_escape(&dir.join(name).to_string_lossy());
            out.push(Target {
                id: Arc::from(target_id(&p.uid, name)),
                // `<restart>.log`, and kubelet's rotated `<restart>.log.<time>`.
                include: vec![format!("{logs}/*.log"), format!("{logs}/*.log.[0-9]*")],
                exclude: vec![format!("{logs}/*.gz")],
                tags: tags.clone(),
                format: Format::Cri,
            });
        }
        let include = container_files(p, name, mounts, opts);
        if !include.is_empty() {
            out.push(Target {
                id: Arc::from(files_target_id(&p.uid, name)),
                include,
                exclude: Vec::new(),
                tags,
                format: Format::Raw,
            });
        }
    }
    out
}

/// Host patterns of `opts.paths` in one container: through the volume
/// mounted at the longest prefix, where that volume is an `emptyDir` or a
/// `hostPath` (other volumes and the container's own layer are not
/// reachable from the node through a stable path).
fn container_files(
    p: &PodInfo,
    container: &str,
    mounts: &[(String, MountSource)],
    opts: &KubernetesOptions,
) -> Vec<String> {
    if opts.paths.is_empty() {
        return Vec::new();
    }
    let uid_dir = glob_escape(&opts.kubelet_dir.join("pods").join(&p.uid).to_string_lossy());
    let on_node: Vec<(String, String)> = mounts
        .iter()
        .map(|(dest, source)| {
            let host = match source {
                MountSource::EmptyDir { volume, sub_path } => {
                    let dir = format!(
                        "{uid_dir}/volumes/kubernetes.io~empty-dir/{}",
                        glob_escape(volume)
                    );
                    if sub_path.is_empty() {
                        dir
                    } else {
                        format!("{dir}/{}", glob_escape(sub_path))
                    }
                }
                MountSource::HostPath(path) => glob_escape(&on_host(&opts.host_root, path)),
            };
            (dest.clone(), host)
        })
        .collect();
    let mut include = Vec::new();
    for pattern in &opts.paths {
        match map_path(pattern, &on_node, None) {
            Some(host) => include.push(host),
            None => warn!(
                namespace = %p.namespace,
                pod = %p.name,
                container,
                path = %pattern,
                "No emptyDir or hostPath volume of this container holds the path; skipped."
            ),
        }
    }
    include
}

/// Why discovery could not start.
#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    /// No usable API configuration.
    #[error("Kubernetes API: {0}")]
    Config(String),
}

async fn client(opts: &KubernetesOptions) -> Result<Client, KubernetesError> {
    let config = match &opts.api_server {
        Some(url) => {
            let uri = url
                .parse::<http::Uri>()
                .map_err(|e| KubernetesError::Config(format!("api_server `{url}`: {e}")))?;
            kube::Config::new(uri)
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| KubernetesError::Config(e.to_string()))?,
    };
    Client::try_from(config).map_err(|e| KubernetesError::Config(e.to_string()))
}

/// Runs discovery on its own thread until `stop` is set.
pub fn spawn(
    name: String,
    opts: KubernetesOptions,
    tx: Sender<TargetUpdate>,
    stop: Arc<AtomicBool>,
    stats: Arc<DiscoveryStats>,
) -> std::io::Result<JoinHandle<()>> {
    super::spawn_on_runtime(name, run(opts, tx, stop, stats))
}

async fn run(
    opts: KubernetesOptions,
    tx: Sender<TargetUpdate>,
    stop: Arc<AtomicBool>,
    stats: Arc<DiscoveryStats>,
) {
    let stopped = || stop.load(Ordering::Relaxed);
    let mut backoff = super::FIRST_BACKOFF;
    let client = loop {
        match client(&opts).await {
            Ok(c) => break c,
            Err(e) => {
                stats.errors.inc();
                warn!(error = %e, retry_in = ?backoff, "Kubernetes discovery cannot start; retrying.");
            }
        }
        if !super::back_off(&mut backoff, &stop).await {
            return;
        }
    };
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", opts.node_name));
    let mut events = watcher::watcher(pods, config).default_backoff().boxed();
    // Namespace labels, when they become tags: one more watch, listed
    // before the pods are taken, so no pod is read without them.
    let mut ns_events = opts.namespace_label_tags.then(|| {
        watcher::watcher(namespaces, watcher::Config::default())
            .default_backoff()
            .boxed()
    });
    let mut ns_ready = ns_events.is_none();
    let mut ns_listing: Vec<Namespace> = Vec::new();
    let mut node = Node {
        opts: &opts,
        tx: &tx,
        stats: &stats,
        pods: HashMap::new(),
        ns_labels: HashMap::new(),
    };
    // Pods listed since the last `Init`.
    let mut listing: Vec<Pod> = Vec::new();
    let mut check_stop = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            ev = events.next(), if ns_ready => match ev {
                Some(Ok(Event::Init)) => listing.clear(),
                Some(Ok(Event::InitApply(pod))) => listing.push(pod),
                Some(Ok(Event::InitDone)) => node.listed(listing.drain(..)),
                Some(Ok(Event::Apply(pod))) => node.apply(&pod),
                Some(Ok(Event::Delete(pod))) => node.delete(&pod),
                Some(Err(e)) => {
                    stats.errors.inc();
                    warn!(error = %e, "Kubernetes pod watch failed; listing again (known pods are still read).");
                }
                None => return,
            },
            Some(ev) = super::next_of(&mut ns_events) => match ev {
                Ok(Event::Init) => ns_listing.clear(),
                Ok(Event::InitApply(ns)) => ns_listing.push(ns),
                Ok(Event::InitDone) => {
                    let all = ns_listing.drain(..).filter_map(|n| {
                        Some((n.metadata.name?, n.metadata.labels.unwrap_or_default()))
                    });
                    node.namespaces(all.collect(), true);
                    ns_ready = true;
                }
                Ok(Event::Apply(ns)) => {
                    if let Some(name) = ns.metadata.name {
                        let labels = ns.metadata.labels.unwrap_or_default();
                        node.namespaces([(name, labels)].into_iter().collect(), false);
                    }
                }
                // A deleted namespace has no pods left to tag.
                Ok(Event::Delete(_)) => {}
                Err(e) => {
                    stats.errors.inc();
                    warn!(error = %e, "Kubernetes namespace watch failed; listing again.");
                }
            },
            _ = check_stop.tick() => if stopped() { return },
        }
    }
}

/// This node's pods as known from the watch, and the targets sent for them.
struct Node<'a> {
    opts: &'a KubernetesOptions,
    tx: &'a Sender<TargetUpdate>,
    stats: &'a DiscoveryStats,
    /// Pods by uid, with the ids of the targets sent for each.
    pods: HashMap<String, (PodInfo, Vec<Arc<str>>)>,
    /// Namespace labels (when they are tags).
    ns_labels: HashMap<String, BTreeMap<String, String>>,
}

impl Node<'_> {
    fn info(&self, pod: &Pod) -> Option<PodInfo> {
        let mut info = PodInfo::from_pod(pod)?;
        if let Some(labels) = self.ns_labels.get(&info.namespace) {
            info.namespace_labels = labels.clone();
        }
        Some(info)
    }

    /// A complete list: the targets of every pod, as one `Sync`.
    fn listed(&mut self, pods: impl Iterator<Item = Pod>) {
        let mut all = Vec::new();
        self.pods.clear();
        for pod in pods {
            let Some(info) = self.info(&pod) else {
                continue;
            };
            let targets = pod_targets(&info, self.opts);
            let ids = targets.iter().map(|t| t.id.clone()).collect();
            self.pods.insert(info.uid.clone(), (info, ids));
            all.extend(targets);
        }
        self.stats.resyncs.inc();
        info!(node = %self.opts.node_name, pods = self.pods.len(), targets = all.len(), "Listed this node's pods.");
        let _ = self.tx.send(TargetUpdate::Sync(all));
    }

    fn apply(&mut self, pod: &Pod) {
        if let Some(info) = self.info(pod) {
            self.send(info);
        }
    }

    /// Sends a pod's targets (new tags replace the old ones from the next
    /// batch on) and removes those it no longer has.
    fn send(&mut self, info: PodInfo) {
        let targets = pod_targets(&info, self.opts);
        let ids: Vec<Arc<str>> = targets.iter().map(|t| t.id.clone()).collect();
        let before = self
            .pods
            .insert(info.uid.clone(), (info.clone(), ids.clone()))
            .map(|(_, ids)| ids)
            .unwrap_or_default();
        if before.is_empty() && !ids.is_empty() {
            self.stats.containers_added.add(ids.len() as u64);
            debug!(namespace = %info.namespace, pod = %info.name, "Pod on this node; reading it.");
        }
        for gone in before.iter().filter(|id| !ids.contains(id)) {
            let _ = self.tx.send(TargetUpdate::Removed(gone.clone()));
        }
        for t in targets {
            let _ = self.tx.send(TargetUpdate::Added(t));
        }
    }

    fn delete(&mut self, pod: &Pod) {
        let Some(uid) = &pod.metadata.uid else { return };
        for id in self
            .pods
            .remove(uid)
            .map(|(_, ids)| ids)
            .unwrap_or_default()
        {
            let _ = self.tx.send(TargetUpdate::Removed(id));
        }
    }

    /// New namespace labels (`complete`: the whole set, from a list): the
    /// pods of every namespace whose labels changed get their new tags.
    fn namespaces(&mut self, labels: HashMap<String, BTreeMap<String, String>>, complete: bool) {
        let changed: Vec<String> = if complete {
            let mut names: Vec<String> = labels
                .keys()
                .chain(self.ns_labels.keys())
                .cloned()
                .collect();
            names.sort();
            names.dedup();
            names.retain(|n| labels.get(n) != self.ns_labels.get(n));
            self.ns_labels = labels;
            names
        } else {
            let mut names = Vec::new();
            for (n, l) in labels {
                if self.ns_labels.get(&n) != Some(&l) {
                    names.push(n.clone());
                    self.ns_labels.insert(n, l);
                }
            }
            names
        };
        let retag: Vec<PodInfo> = self
            .pods
            .values()
            .filter(|(p, _)| changed.contains(&p.namespace))
            .map(|(p, _)| {
                let mut p = p.clone();
                p.namespace_labels = self
                    .ns_labels
                    .get(&p.namespace)
                    .cloned()
                    .unwrap_or_default();
                p
            })
            .collect();
        for info in retag {
            self.send(info);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "namespace": "shop", "name": "web-7d9f8-abcde", "uid": "u-1",
                "labels": {"app": "web", "pod-template-hash": "7d9f8"},
                "annotations": {"team": "core"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web-7d9f8", "uid": "rs-1", "controller": true}]
            },
            "spec": {
                "nodeName": "node-1",
                "initContainers": [{"name": "init", "image": "busybox:1"}],
                "containers": [{"name": "app", "image": "nginx:1.25"}, {"name": "sidecar", "image": "envoy:1"}]
            }
        }))
        .unwrap()
    }

    fn opts() -> KubernetesOptions {
        KubernetesOptions {
            api_server: None,
            node_name: "node-1".into(),
            pods_dir: PathBuf::from("/var/log/pods"),
            kubelet_dir: PathBuf::from("/var/lib/kubelet"),
            host_root: PathBuf::from("/"),
            stdout: true,
            paths: Vec::new(),
            selector: None,
            include: PodFilter::default(),
            exclude: PodFilter::default(),
            label_tags: true,
            annotation_tags: false,
            namespace_label_tags: false,
        }
    }

    #[test]
    fn a_pod_becomes_one_target_per_container_with_its_metadata() {
        let info = PodInfo::from_pod(&pod()).unwrap();
        assert_eq!(info.owner, Some(("Deployment".into(), "web".into())));
        let t = pod_targets(&info, &opts());
        let ids: Vec<&str> = t.iter().map(|t| &*t.id).collect();
        assert_eq!(ids, vec!["k8s/u-1/init", "k8s/u-1/app", "k8s/u-1/sidecar"]);
        assert_eq!(
            t[1].include,
            vec![
                "/var/log/pods/shop_web-7d9f8-abcde_u-1/app/*.log",
                "/var/log/pods/shop_web-7d9f8-abcde_u-1/app/*.log.[0-9]*"
            ]
        );
        assert_eq!(t[1].format, Format::Cri);
        let tags: Vec<(&str, &str)> = t[1]
            .tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            tags,
            vec![
                ("k8s.namespace", "shop"),
                ("k8s.pod.name", "web-7d9f8-abcde"),
                ("k8s.pod.uid", "u-1"),
                ("k8s.node.name", "node-1"),
                ("k8s.container.name", "app"),
                ("k8s.container.image", "nginx:1.25"),
                ("k8s.owner.kind", "Deployment"),
                ("k8s.owner.name", "web"),
                ("k8s.pod.label.app", "web"),
                ("k8s.pod.label.pod-template-hash", "7d9f8"),
            ]
        );
    }

    #[test]
    fn selection_by_namespace_labels_container_and_annotation() {
        let info = PodInfo::from_pod(&pod()).unwrap();
        let re = |s: &str| super::super::whole(s).unwrap();
        let mut o = opts();
        o.include.namespaces = vec![re("kube-.*"), re("shop")];
        o.include.labels = vec![("app".into(), re("web"))];
        o.exclude.container = Some(re("side.*"));
        let ids: Vec<String> = pod_targets(&info, &o)
            .iter()
            .map(|t| t.id.to_string())
            .collect();
        assert_eq!(ids, vec!["k8s/u-1/init", "k8s/u-1/app"]);
        o.include.container = Some(re("app"));
        assert_eq!(pod_targets(&info, &o).len(), 1);
        o.include.namespaces = vec![re("kube-system")];
        assert!(pod_targets(&info, &o).is_empty());

        let mut o = opts();
        o.exclude.namespaces = vec![re("shop")];
        assert!(pod_targets(&info, &o).is_empty());

        let mut excluded = info.clone();
        excluded
            .annotations
            .insert(EXCLUDE_ANNOTATION.into(), "true".into());
        assert!(pod_targets(&excluded, &opts()).is_empty());
    }

    #[test]
    fn files_inside_containers_are_read_through_empty_dir_and_host_path_volumes() {
        let p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "shop", "name": "api-0", "uid": "u-2", "labels": {"tier": "back"}},
            "spec": {
                "nodeName": "node-1",
                "volumes": [
                    {"name": "logs", "emptyDir": {}},
                    {"name": "audit", "hostPath": {"path": "/srv/audit/"}},
                    {"name": "cfg", "configMap": {"name": "api"}}
                ],
                "containers": [{"name": "api", "image": "api:2", "volumeMounts": [
                    {"name": "logs", "mountPath": "/var/log/api"},
                    {"name": "logs", "mountPath": "/var/log/api/old", "subPath": "archive"},
                    {"name": "audit", "mountPath": "/audit", "subPath": "api-0"},
                    {"name": "cfg", "mountPath": "/etc/api"}
                ]}]
            }
        }))
        .unwrap();
        let info = PodInfo::from_pod(&p).unwrap();
        let mut o = opts();
        o.stdout = false;
        o.paths = vec![
            "/var/log/api/*.log".into(),
            "/var/log/api/old/*.log".into(),
            "/audit/**/*.json".into(),
            "/etc/api/*.conf".into(),
        ];
        let t = pod_targets(&info, &o);
        assert_eq!(t.len(), 1);
        assert_eq!(&*t[0].id, "k8s/u-2/api/files");
        assert_eq!(t[0].format, Format::Raw);
        let dir = "/var/lib/kubelet/pods/u-2/volumes/kubernetes.io~empty-dir/logs";
        assert_eq!(
            t[0].include,
            vec![
                format!("{dir}/*.log"),
                format!("{dir}/archive/*.log"),
                "/srv/audit/api-0/**/*.json".to_owned(),
            ]
        );
        o.selector = Some(
            serde_json::from_value(serde_json::json!({
                "matchLabels": {"tier": "back"},
                "matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}]
            }))
            .unwrap(),
        );
        assert_eq!(pod_targets(&info, &o).len(), 1);
        o.selector = Some(
            serde_json::from_value(serde_json::json!({
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]
            }))
            .unwrap(),
        );
        assert!(pod_targets(&info, &o).is_empty());
    }

    #[test]
    fn selectors_are_checked_and_matched_as_kubernetes_does() {
        let sel = |v: serde_json::Value| -> LabelSelector { serde_json::from_value(v).unwrap() };
        let labels: BTreeMap<String, String> =
            [("app".to_owned(), "web".to_owned())].into_iter().collect();
        let m = |v| selector_matches(&sel(v), &labels);
        assert!(m(serde_json::json!({})));
        assert!(m(
            serde_json::json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["db"]}]})
        ));
        assert!(!m(
            serde_json::json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]})
        ));
        assert!(m(
            serde_json::json!({"matchExpressions": [{"key": "x", "operator": "NotIn", "values": ["web"]}]})
        ));
        assert!(m(
            serde_json::json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]})
        ));
        assert!(!m(
            serde_json::json!({"matchLabels": {"app": "web", "x": "y"}})
        ));
        assert_eq!(
            check_selector(&sel(
                serde_json::json!({"matchExpressions": [{"key": "a", "operator": "Has"}]})
            )),
            Err(
                "matchExpressions[0]: unknown operator `Has` (In, NotIn, Exists, DoesNotExist)"
                    .into()
            )
        );
        assert_eq!(
            check_selector(&sel(
                serde_json::json!({"matchExpressions": [{"key": "a", "operator": "In"}]})
            )),
            Err("matchExpressions[0]: `In` needs values".into())
        );
    }

    #[test]
    fn other_owners_are_kept_as_they_are() {
        let mut p = pod();
        p.metadata = ObjectMeta {
            owner_references: Some(vec![OwnerReference {
                kind: "Job".into(),
                name: "backup-29000".into(),
                controller: Some(true),
                ..OwnerReference::default()
            }]),
            ..p.metadata
        };
        let info = PodInfo::from_pod(&p).unwrap();
        assert_eq!(info.owner, Some(("Job".into(), "backup-29000".into())));
    }
}
