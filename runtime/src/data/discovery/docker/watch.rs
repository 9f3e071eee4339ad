//! One session with the engine: list, then follow events from a time
//! taken before the list (nothing falls between), re-list on an interval
//! and after every reconnect, and send the tailer what changed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerSummaryStateEnum, EventMessage};
use bollard::query_parameters::{EventsOptions, InspectContainerOptions, ListContainersOptions};
use crossbeam_channel::Sender;
use futures_util::StreamExt;
use tracing::{debug, info, warn};

use super::{Container, DiscoveryError, Planner};
use crate::data::tail::TargetUpdate;

pub(super) struct Discovery {
    pub(super) planner: Planner,
    pub(super) tx: Sender<TargetUpdate>,
    pub(super) stop: Arc<AtomicBool>,
    /// Containers inspected, by id.
    pub(super) inspected: HashMap<String, Container>,
    /// Target ids sent per container.
    pub(super) sent: HashMap<String, Vec<Arc<str>>>,
    /// The engine's state is known up to this time (last event or list).
    pub(super) last_contact: Option<std::time::SystemTime>,
    /// The engine's root directory (`DockerRootDir`), where a created
    /// container's json-file log will be.
    pub(super) root: Option<String>,
}

/// Seconds.nanoseconds since the epoch, as the engine's `since` takes it.
pub(super) fn engine_time(t: std::time::SystemTime) -> String {
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

impl Discovery {
    pub(super) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub(super) fn endpoint(&self) -> &str {
        &self.planner.opts.endpoint
    }

    pub(super) fn err(&self, source: bollard::errors::Error) -> DiscoveryError {
        DiscoveryError::Engine {
            endpoint: self.endpoint().to_owned(),
            source,
        }
    }

    pub(super) async fn run(&mut self) {
        let mut backoff = crate::background::FIRST_BACKOFF;
        while !self.stopped() {
            match self.session(&mut backoff).await {
                Ok(()) => return,
                Err(e) => {
                    self.planner.stats.engine_errors.inc();
                    warn!(error = %e, retry_in = ?backoff, "Docker discovery failed; other inputs are unaffected, known containers are still read.");
                }
            }
            if !crate::background::back_off(&mut backoff, &self.stop).await {
                return;
            }
        }
    }

    /// One connection: list, then follow events until the stream breaks or
    /// `stop` is set (then `Ok`).
    async fn session(&mut self, backoff: &mut Duration) -> Result<(), DiscoveryError> {
        let docker = Docker::connect_with_unix(self.endpoint(), 30, bollard::API_DEFAULT_VERSION)
            .map_err(|e| self.err(e))?
            .negotiate_version()
            .await
            .map_err(|e| self.err(e))?;
        // Events from a moment before the list (or before the connection
        // was lost) on: the engine replays what happened meanwhile, so
        // nothing falls in between.
        let now = std::time::SystemTime::now();
        let since = engine_time(self.last_contact.unwrap_or(now).min(now) - Duration::from_secs(1));
        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            (
                "event".to_owned(),
                ["create", "start", "die", "destroy", "rename"]
                    .map(str::to_owned)
                    .to_vec(),
            ),
        ]);
        let mut events = docker.events(Some(EventsOptions {
            since: Some(since),
            until: None,
            filters: Some(filters),
        }));
        self.root = docker.info().await.ok().and_then(|i| i.docker_root_dir);
        self.resync(&docker).await?;
        info!(endpoint = %self.endpoint(), containers = self.sent.len(), "Connected to the Docker engine.");
        *backoff = crate::background::FIRST_BACKOFF;
        let mut resync = tokio::time::interval(self.planner.opts.resync_interval);
        resync.tick().await;
        let mut check_stop = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                ev = events.next() => match ev {
                    Some(Ok(ev)) => self.on_event(&docker, ev).await,
                    Some(Err(e)) => return Err(self.err(e)),
                    None => return Err(DiscoveryError::Closed { endpoint: self.endpoint().to_owned() }),
                },
                _ = resync.tick() => self.resync(&docker).await?,
                _ = check_stop.tick() => if self.stopped() { return Ok(()) },
            }
        }
    }

    async fn inspect(
        &mut self,
        docker: &Docker,
        id: &str,
    ) -> Result<Option<Container>, DiscoveryError> {
        if let Some(c) = self.inspected.get(id) {
            return Ok(Some(c.clone()));
        }
        match docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(r) => {
                let mut c = Container::from_inspect(r);
                if let Some(c) = &mut c {
                    if let Some(root) = &self.root {
                        c.expect_log_under(root);
                    }
                    self.inspected.insert(c.id.clone(), c.clone());
                }
                Ok(c)
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Lists running containers, and those created but not yet started
    /// (their targets wait for their logs, as at their `create`), and sends
    /// the complete set of targets.
    async fn resync(&mut self, docker: &Docker) -> Result<(), DiscoveryError> {
        let listed_at = std::time::SystemTime::now();
        let states = ["created", "running", "paused", "restarting"];
        let list = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(HashMap::from([(
                    "status".to_owned(),
                    states.map(str::to_owned).to_vec(),
                )])),
                ..Default::default()
            }))
            .await
            .map_err(|e| self.err(e))?;
        let ids: Vec<(String, bool)> = list
            .into_iter()
            .filter_map(|c| Some((c.id?, c.state == Some(ContainerSummaryStateEnum::CREATED))))
            .collect();
        let live: HashSet<&String> = ids.iter().map(|(id, _)| id).collect();
        self.inspected.retain(|id, _| live.contains(id));
        let mut all = Vec::new();
        let mut sent = HashMap::new();
        for (id, created) in ids {
            let Some(c) = self.inspect(docker, &id).await? else {
                continue;
            };
            let targets = if created {
                self.planner.targets_before_start(&c)
            } else {
                self.planner.targets(&c)
            };
            sent.insert(id, targets.iter().map(|t| t.id.clone()).collect());
            all.extend(targets);
        }
        self.sent = sent;
        self.planner.stats.resyncs.inc();
        let _ = self.tx.send(TargetUpdate::Sync(all));
        self.last_contact = Some(listed_at);
        Ok(())
    }

    async fn on_event(&mut self, docker: &Docker, ev: EventMessage) {
        if let Some(t) = ev.time_nano.and_then(|n| u64::try_from(n).ok()) {
            let at = std::time::UNIX_EPOCH + Duration::from_nanos(t);
            self.last_contact = Some(self.last_contact.map_or(at, |l| l.max(at)));
        }
        let Some(actor) = ev.actor else { return };
        let Some(id) = actor.id else { return };
        let action = ev.action.unwrap_or_default();
        debug!(container = %id, action = %action, "Docker event.");
        match action.as_str() {
            "create" | "start" | "rename" => {
                if action == "rename" {
                    self.inspected.remove(&id);
                }
                match self.inspect(docker, &id).await {
                    Ok(Some(c)) => self.add(&c, &action),
                    // Counted once, at its start (the create was its first
                    // chance), if this input could have read it: its
                    // event carries its name, image and labels.
                    Ok(None) if action == "start" => {
                        let c = Container::from_event(&id, &actor.attributes.unwrap_or_default());
                        if self.planner.could_select(&c) {
                            self.planner.stats.containers_missed.inc();
                            warn!(container = %c.name, id = %short(&id), "Container was removed before it could be inspected; its output could not be read.");
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        warn!(error = %e, "Cannot inspect a container; the next resync retries.")
                    }
                }
            }
            "die" | "destroy" => {
                if action == "destroy" {
                    self.inspected.remove(&id);
                    self.planner.warned.retain(|k| !k.starts_with(&id));
                }
                for t in self.sent.remove(&id).unwrap_or_default() {
                    let _ = self.tx.send(TargetUpdate::Removed(t));
                }
            }
            _ => {}
        }
    }

    /// Sends the targets of `c`, on its `action`. At `create` its log does
    /// not exist yet: the tailer has the target before the container
    /// runs, and opens the log the moment the engine makes it (a `--rm`
    /// container can be gone by the time its `start` event is read).
    /// From `start` on, its log must be there.
    fn add(&mut self, c: &Container, action: &str) {
        let targets = if action == "create" {
            self.planner.targets_before_start(c)
        } else {
            self.planner.targets(c)
        };
        if targets.is_empty() && action == "create" {
            return;
        }
        if action == "start" && !targets.is_empty() {
            self.planner.stats.containers_added.inc();
            info!(container = %c.name, id = %short(&c.id), targets = targets.len(), "Container started; reading it.");
        }
        self.sent
            .insert(c.id.clone(), targets.iter().map(|t| t.id.clone()).collect());
        for t in targets {
            let _ = self.tx.send(TargetUpdate::Added(t));
        }
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}
