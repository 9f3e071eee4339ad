//! This node's pods as the watch reports them, and the target updates
//! sent for them (a `Sync` after every list, `Added` / `Removed` between).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crossbeam_channel::Sender;
use k8s_openapi::api::core::v1::Pod;
use tracing::{debug, info};

use super::{KubernetesOptions, PodInfo, pod_targets};
use crate::data::discovery::DiscoveryStats;
use crate::data::tail::TargetUpdate;

/// This node's pods as known from the watch, and the targets sent for them.
pub(super) struct Node<'a> {
    pub(super) opts: &'a KubernetesOptions,
    pub(super) tx: &'a Sender<TargetUpdate>,
    pub(super) stats: &'a DiscoveryStats,
    /// Pods by uid, with the ids of the targets sent for each.
    pub(super) pods: HashMap<String, (PodInfo, Vec<Arc<str>>)>,
    /// Namespace labels (when they are tags).
    pub(super) ns_labels: HashMap<String, BTreeMap<String, String>>,
}

impl Node<'_> {
    pub(super) fn info(&self, pod: &Pod) -> Option<PodInfo> {
        let mut info = PodInfo::from_pod(pod)?;
        if let Some(labels) = self.ns_labels.get(&info.namespace) {
            info.namespace_labels = labels.clone();
        }
        Some(info)
    }

    /// A complete list: the targets of every pod, as one `Sync`.
    pub(super) fn listed(&mut self, pods: impl Iterator<Item = Pod>) {
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

    pub(super) fn apply(&mut self, pod: &Pod) {
        if let Some(info) = self.info(pod) {
            self.send(info);
        }
    }

    /// Sends a pod's targets (new tags replace the old ones from the next
    /// batch on) and removes those it no longer has.
    pub(super) fn send(&mut self, info: PodInfo) {
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

    pub(super) fn delete(&mut self, pod: &Pod) {
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
    pub(super) fn namespaces(
        &mut self,
        labels: HashMap<String, BTreeMap<String, String>>,
        complete: bool,
    ) {
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
