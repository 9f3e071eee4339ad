//! What a pod is to discovery ([`PodInfo`], from the API's `Pod`) and the
//! targets it becomes: one per selected container for its CRI log files,
//! one for files on its volumes, with the pod's tags. Plain functions of
//! the pod and the options: no API calls.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use tracing::warn;

use super::{EXCLUDE_ANNOTATION, KubernetesOptions, tags};
use crate::data::discovery::{glob_escape, map_path, on_host};
use crate::data::tail::{Format, Tags, Target};

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
                // A pod is seen before its containers start and write.
                lost_if_absent: false,
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
                lost_if_absent: false,
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
