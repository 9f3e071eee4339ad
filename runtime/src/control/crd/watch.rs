//! Follows `GleanerPipeline` and `ClusterGleanerPipeline` resources (one
//! watch each, all namespaces), hands the supervisor the complete set of
//! pipelines they define after every change, and writes each resource's
//! `Accepted` condition to its status subresource when it differs from
//! what the resource already shows. So that a thousand nodes cost one
//! write per generation, a Lease elects the agent that writes verdicts
//! every node shares (accepted, invalid spec, name taken); the others
//! write only a failure of their own node (`PluginFailed`), and only where
//! the resource shows no failure for its generation yet, so disagreeing
//! nodes do not overwrite each other. Without the Lease (no RBAC for it)
//! every agent writes, as before it existed.
//!
//! A resource that does not check, or whose plugins fail to start, changes
//! nothing that runs: its previous version (if any) keeps running and the
//! condition says why. Until both kinds have been listed once nothing is
//! applied, so a restart never stops pipelines only because one list came
//! first.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use futures_util::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::types::{ClusterGleanerPipeline, GleanerPipeline, GleanerPipelineSpec, PipelineStatus};
use super::{ResourceId, to_pipeline};
use crate::config::PipelineResources;
use crate::control::api::Health;
use crate::control::supervisor::{ApplyError, Change, Desired, Supervisor};
use crate::data::discovery::kubernetes::api_client;
use crate::data::discovery::kubernetes::pace::paced;
use crate::state::lease::{self, Elector};

/// The supervisor owner name of resource pipelines.
pub const OWNER: &str = "kubernetes resources";

/// One resource as last seen.
#[derive(Debug, Clone)]
struct Seen {
    generation: Option<i64>,
    spec: GleanerPipelineSpec,
    namespaces: Vec<String>,
    status: Option<PipelineStatus>,
}

/// The condition a resource should show.
#[derive(Debug, Clone, PartialEq)]
struct Verdict {
    accepted: bool,
    reason: &'static str,
    message: String,
}

/// Runs the watches on their own thread until `stop` is set.
pub fn spawn(
    opts: PipelineResources,
    supervisor: Arc<Supervisor>,
    stop: Arc<AtomicBool>,
    health: Arc<Health>,
) -> std::io::Result<JoinHandle<()>> {
    crate::background::spawn_on_runtime(
        "gleaner-resources".into(),
        run(opts, supervisor, stop, health),
    )
}

async fn run(
    opts: PipelineResources,
    supervisor: Arc<Supervisor>,
    stop: Arc<AtomicBool>,
    health: Arc<Health>,
) {
    let mut backoff = crate::background::FIRST_BACKOFF;
    let client = loop {
        match api_client(opts.api_server.as_deref()).await {
            Ok(c) => break c,
            Err(e) => {
                warn!(error = %e, retry_in = ?backoff, "Cannot reach the Kubernetes API for pipeline resources; retrying.")
            }
        }
        if !crate::background::back_off(&mut backoff, &stop).await {
            return;
        }
    };
    let namespaced: Api<GleanerPipeline> = Api::all(client.clone());
    let cluster: Api<ClusterGleanerPipeline> = Api::all(client.clone());
    let mut ns_events = opts
        .namespaced
        .then(|| paced(watcher::watcher(namespaced, watcher::Config::default()).boxed()));
    let mut cl_events = opts
        .cluster
        .then(|| paced(watcher::watcher(cluster, watcher::Config::default()).boxed()));
    let mut state = Resources {
        opts,
        supervisor,
        client,
        live: BTreeMap::new(),
        listing: [Vec::new(), Vec::new()],
        listed: [ns_events.is_none(), cl_events.is_none()],
        shown: BTreeMap::new(),
        writer: false,
    };
    let mut elector = Elector::new(
        Api::namespaced(state.client.clone(), &state.opts.lease_namespace),
        lease::STATUS_LEASE,
        &state.opts.node_name,
    );
    let mut renew = tokio::time::interval(lease::RENEW_EVERY);
    let mut check_stop = tokio::time::interval(Duration::from_millis(100));
    loop {
        let changed = tokio::select! {
            Some(ev) = crate::background::next_of(&mut ns_events) => match ev {
                Ok(ev) => state.event(0, map_event(ev, |r: GleanerPipeline| {
                    let id = ResourceId { namespace: r.namespace(), name: r.name_any() };
                    (id, Seen {
                        generation: r.metadata.generation,
                        spec: r.spec,
                        namespaces: Vec::new(),
                        status: r.status,
                    })
                })),
                Err(e) => { warn!(error = %e, "GleanerPipeline watch failed; listing again."); false }
            },
            Some(ev) = crate::background::next_of(&mut cl_events) => match ev {
                Ok(ev) => state.event(1, map_event(ev, |r: ClusterGleanerPipeline| {
                    let id = ResourceId { namespace: None, name: r.name_any() };
                    (id, Seen {
                        generation: r.metadata.generation,
                        spec: r.spec.pipeline,
                        namespaces: r.spec.namespaces,
                        status: r.status,
                    })
                })),
                Err(e) => { warn!(error = %e, "ClusterGleanerPipeline watch failed; listing again."); false }
            },
            _ = renew.tick() => {
                let was = state.writer;
                state.writer = elector.tick().await || elector.unusable();
                // A new writer writes what is due.
                if state.writer && !was && state.listed.iter().all(|l| *l) {
                    state.write_statuses().await;
                }
                false
            }
            _ = check_stop.tick() => false,
        };
        if stop.load(Ordering::Relaxed) || state.supervisor.stopping() {
            return;
        }
        if changed && state.listed.iter().all(|l| *l) {
            state.apply().await;
            health.ready.store(true, Ordering::Relaxed);
        }
    }
}

fn map_event<K, T>(ev: Event<K>, mut f: impl FnMut(K) -> T) -> Event<T> {
    match ev {
        Event::Apply(k) => Event::Apply(f(k)),
        Event::Delete(k) => Event::Delete(f(k)),
        Event::Init => Event::Init,
        Event::InitApply(k) => Event::InitApply(f(k)),
        Event::InitDone => Event::InitDone,
    }
}

struct Resources {
    opts: PipelineResources,
    supervisor: Arc<Supervisor>,
    client: Client,
    /// Resources by id, with which watch (0 namespaced, 1 cluster) saw them.
    live: BTreeMap<ResourceId, (usize, Seen)>,
    /// Objects of a list in progress, per watch.
    listing: [Vec<(ResourceId, Seen)>; 2],
    /// Whether each watch has completed a list.
    listed: [bool; 2],
    /// This node's verdict per resource (logged when it changes).
    shown: BTreeMap<ResourceId, Verdict>,
    /// This agent holds the status Lease (or there is none to hold).
    writer: bool,
}

impl Resources {
    /// Takes one watch event; true if the set of resources changed.
    fn event(&mut self, kind: usize, ev: Event<(ResourceId, Seen)>) -> bool {
        match ev {
            Event::Init => {
                self.listing[kind].clear();
                false
            }
            Event::InitApply(r) => {
                self.listing[kind].push(r);
                false
            }
            Event::InitDone => {
                self.live.retain(|_, (k, _)| *k != kind);
                for (id, seen) in self.listing[kind].drain(..) {
                    self.live.insert(id, (kind, seen));
                }
                self.listed[kind] = true;
                true
            }
            Event::Apply((id, seen)) => {
                self.live.insert(id, (kind, seen));
                true
            }
            Event::Delete((id, _)) => {
                self.live.remove(&id);
                self.shown.remove(&id);
                true
            }
        }
    }

    /// Checks every resource, applies the valid ones, writes conditions.
    async fn apply(&mut self) {
        let mut desired: Vec<Desired> = Vec::new();
        let mut verdicts: BTreeMap<ResourceId, Verdict> = BTreeMap::new();
        let mut by_name: BTreeMap<String, ResourceId> = BTreeMap::new();
        for (id, (_, seen)) in &self.live {
            match to_pipeline(id, &seen.spec, &seen.namespaces, &self.opts) {
                Ok(d) => {
                    by_name.insert(d.config.name.clone(), id.clone());
                    desired.push(d);
                }
                Err(e) => {
                    verdicts.insert(
                        id.clone(),
                        Verdict {
                            accepted: false,
                            reason: "InvalidSpec",
                            message: format!("{}: {}", e.key, e.message),
                        },
                    );
                }
            }
        }
        // Invalid resources change nothing: a version already running stays.
        let keep: Vec<String> = verdicts.keys().map(ResourceId::pipeline_name).collect();
        let supervisor = self.supervisor.clone();
        let results =
            tokio::task::spawn_blocking(move || supervisor.apply(OWNER, desired, &keep, false))
                .await
                .unwrap_or_default();
        for (name, result) in results {
            let Some(id) = by_name.get(&name) else {
                continue;
            };
            let verdict = match result {
                Ok(Change::Removed) => continue,
                Ok(_) => Verdict {
                    accepted: true,
                    reason: "Running",
                    message: format!("running as pipeline `{name}`"),
                },
                Err(e @ ApplyError::NameTaken { .. }) => Verdict {
                    accepted: false,
                    reason: "NameTaken",
                    message: e.to_string(),
                },
                Err(ApplyError::Stopping) => continue,
                Err(e) => Verdict {
                    accepted: false,
                    reason: "PluginFailed",
                    message: format!("on node {}: {e}", self.opts.node_name),
                },
            };
            verdicts.insert(id.clone(), verdict);
        }
        for (id, verdict) in verdicts {
            if !self.live.contains_key(&id) {
                continue;
            }
            if self.shown.get(&id) != Some(&verdict) {
                if verdict.accepted {
                    info!(resource = %id.describe(), "{}", verdict.message);
                } else {
                    warn!(resource = %id.describe(), reason = verdict.reason, "Pipeline resource not applied: {}", verdict.message);
                }
                self.shown.insert(id.clone(), verdict.clone());
            }
        }
        self.write_statuses().await;
    }

    /// Writes the conditions that are due from this agent.
    async fn write_statuses(&self) {
        for (id, verdict) in &self.shown {
            let Some((kind, seen)) = self.live.get(id) else {
                continue;
            };
            if !due(seen, verdict, self.writer) {
                continue;
            }
            if let Err(e) = self.write_status(*kind, id, seen.generation, verdict).await {
                warn!(resource = %id.describe(), error = %e, "Cannot write the resource's status.");
            }
        }
    }

    async fn write_status(
        &self,
        kind: usize,
        id: &ResourceId,
        generation: Option<i64>,
        v: &Verdict,
    ) -> Result<(), kube::Error> {
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let patch = json!({"status": {
            "observedGeneration": generation,
            "conditions": [{
                "type": "Accepted",
                "status": if v.accepted { "True" } else { "False" },
                "reason": v.reason,
                "message": v.message,
                "observedGeneration": generation,
                "lastTransitionTime": now,
            }]
        }});
        let params = PatchParams::default();
        match (kind, &id.namespace) {
            (0, Some(ns)) => {
                Api::<GleanerPipeline>::namespaced(self.client.clone(), ns)
                    .patch_status(&id.name, &params, &Patch::Merge(&patch))
                    .await?;
            }
            _ => {
                Api::<ClusterGleanerPipeline>::all(self.client.clone())
                    .patch_status(&id.name, &params, &Patch::Merge(&patch))
                    .await?;
            }
        }
        Ok(())
    }
}

/// Whether this agent writes verdict `v` on the resource it saw: never
/// when the resource shows it already; a failure of this node
/// (`PluginFailed`) where the resource shows no such failure for its
/// generation (the first node's stays until the next generation, and no
/// acceptance overwrites it); any other verdict, shared by every node, by
/// the elected `writer` alone.
fn due(seen: &Seen, v: &Verdict, writer: bool) -> bool {
    if shows(seen, v) {
        return false;
    }
    let failure_shown = seen.status.as_ref().is_some_and(|s| {
        s.observed_generation == seen.generation
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Accepted" && c.reason == "PluginFailed")
    });
    if v.reason == "PluginFailed" || (v.accepted && failure_shown) {
        return !failure_shown;
    }
    writer
}

/// Whether the resource already shows `v` for its current generation.
fn shows(seen: &Seen, v: &Verdict) -> bool {
    let Some(status) = &seen.status else {
        return false;
    };
    status.observed_generation == seen.generation
        && status.conditions.iter().any(|c| {
            c.type_ == "Accepted"
                && c.status == if v.accepted { "True" } else { "False" }
                && c.reason == v.reason
                && c.message == v.message
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(generation: i64, shown: Option<(i64, &str, &str)>) -> Seen {
        let status = shown.map(|(g, ok, reason)| {
            serde_json::from_value(json!({
                "observedGeneration": g,
                "conditions": [{"type": "Accepted", "status": ok, "reason": reason,
                    "message": "m", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
            }))
            .unwrap()
        });
        Seen {
            generation: Some(generation),
            spec: serde_json::from_value(json!({"flushers": []})).unwrap(),
            namespaces: Vec::new(),
            status,
        }
    }

    fn verdict(accepted: bool, reason: &'static str) -> Verdict {
        Verdict {
            accepted,
            reason,
            message: "m".into(),
        }
    }

    #[test]
    fn shared_verdicts_are_the_writers_and_a_node_failure_is_its_own() {
        let running = verdict(true, "Running");
        let failed = verdict(false, "PluginFailed");
        let invalid = verdict(false, "InvalidSpec");
        // Nothing shown yet: only the writer writes what every node shares.
        assert!(due(&seen(1, None), &running, true));
        assert!(!due(&seen(1, None), &running, false));
        assert!(!due(&seen(1, None), &invalid, false));
        // Shown already: nobody writes.
        assert!(!due(&seen(1, Some((1, "True", "Running"))), &running, true));
        // A node's own failure: written by it, writer or not, unless a
        // failure already shows for this generation.
        assert!(due(&seen(1, None), &failed, false));
        assert!(due(&seen(2, Some((2, "True", "Running"))), &failed, false));
        let other_node = seen(2, Some((2, "False", "PluginFailed")));
        assert!(!due(&other_node, &verdict(false, "PluginFailed"), false));
        // ... and no acceptance overwrites it until the next generation.
        assert!(!due(&other_node, &running, true));
        assert!(due(
            &seen(3, Some((2, "False", "PluginFailed"))),
            &running,
            true
        ));
    }
}
