//! Kubernetes discovery through the API server (`kube`): one watch of the
//! pods on this node (field selector `spec.nodeName`), never a request per
//! pod, file or line. Every selected container of every pod becomes a
//! target: its CRI log files under `/var/log/pods/<ns>_<pod>_<uid>/<container>/`
//! (including kubelet's rotated files), tagged with namespace, pod name and
//! uid, container name and image, node, pod labels and annotations, and the
//! owning workload.
//!
//! `kube`'s watcher lists, then watches from the list's resourceVersion,
//! and on `410 Gone`, errors and disconnects lists again (at once after
//! 410, with backoff after errors: [`pace`]):
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
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use regex::Regex;
use tracing::warn;

pub mod pace;
mod targets;
mod watch;

pub use targets::*;
use watch::Node;

use super::DiscoveryStats;
use crate::data::tail::TargetUpdate;

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

/// Why discovery could not start.
#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    /// No usable API configuration.
    #[error("Kubernetes API: {0}")]
    Config(String),
}

/// A client of the API server at `api_server`, else of the in-cluster
/// service account, else of the kubeconfig (`$KUBECONFIG`, `~/.kube/config`).
pub async fn api_client(api_server: Option<&str>) -> Result<Client, KubernetesError> {
    let config = match api_server {
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
    crate::background::spawn_on_runtime(name, run(opts, tx, stop, stats))
}

async fn run(
    opts: KubernetesOptions,
    tx: Sender<TargetUpdate>,
    stop: Arc<AtomicBool>,
    stats: Arc<DiscoveryStats>,
) {
    let stopped = || stop.load(Ordering::Relaxed);
    let mut backoff = crate::background::FIRST_BACKOFF;
    let client = loop {
        match api_client(opts.api_server.as_deref()).await {
            Ok(c) => break c,
            Err(e) => {
                stats.engine_errors.inc();
                warn!(error = %e, retry_in = ?backoff, "Kubernetes discovery cannot start; retrying.");
            }
        }
        if !crate::background::back_off(&mut backoff, &stop).await {
            return;
        }
    };
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", opts.node_name));
    let mut events = pace::paced(watcher::watcher(pods, config).boxed());
    // Namespace labels, when they become tags: one more watch, listed
    // before the pods are taken, so no pod is read without them.
    let mut ns_events = opts
        .namespace_label_tags
        .then(|| pace::paced(watcher::watcher(namespaces, watcher::Config::default()).boxed()));
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
                    stats.engine_errors.inc();
                    warn!(error = %e, "Kubernetes pod watch failed; listing again (known pods are still read).");
                }
                None => return,
            },
            Some(ev) = crate::background::next_of(&mut ns_events) => match ev {
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
                    stats.engine_errors.inc();
                    warn!(error = %e, "Kubernetes namespace watch failed; listing again.");
                }
            },
            _ = check_stop.tick() => if stopped() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tail::Format;
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
