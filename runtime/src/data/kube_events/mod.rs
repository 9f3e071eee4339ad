//! The `kubernetes_events` input: the cluster's Events (`v1/events`),
//! shipped by one agent of the many that run it — the holder of the input's
//! Lease ([`Elector`]); another takes over when it stops (at once when it
//! stops cleanly, after the Lease's duration when it dies).
//!
//! Each Event version is delivered once. The leader lists the Events, then
//! watches from the list's resourceVersion; every batch registers the
//! resourceVersion of its last Event with an ack tracker (resourceVersions
//! stand in for file offsets), and what the tracker has seen delivered is
//! written into the Lease at every renewal and when the leader stops. The
//! next leader — this agent after a restart, or another — watches from
//! there; when the API server no longer has that point (410 Expired) it
//! lists again and ships only Events whose resourceVersion is above it.
//!
//! Owns its API connection and its Lease; must not touch files,
//! checkpoints on disk or plugins.

mod record;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::TrySendError;
use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::{ListParams, WatchEvent, WatchParams};
use tracing::{info, warn};

pub use record::fields;

use crate::data::batch::{Envelope, Outlet};
use crate::data::discovery::kubernetes::api_client;
use crate::model::ack::{FileIdentity, FileTracker};
use crate::model::event::Batch;
use crate::state::lease::{self, Elector};

/// The Lease annotation holding the resume point: every Event up to this
/// resourceVersion was delivered.
pub const RESUME_ANNOTATION: &str = "gleaner.io/events-delivered-through";

/// A checked `kubernetes_events` input.
#[derive(Debug, Clone)]
pub struct KubeEventsOptions {
    /// API server URL; `None`: in-cluster service account, else kubeconfig.
    pub api_server: Option<String>,
    /// Only Events in these namespaces (all when empty).
    pub namespaces: Vec<String>,
    /// A field selector for the API server.
    pub field_selector: Option<String>,
    /// The Lease's name.
    pub lease: String,
    /// The Lease's namespace.
    pub lease_namespace: String,
    /// This agent's name in the Lease.
    pub identity: String,
    /// Where the first leader ever starts.
    pub start_at: EventsStart,
}

/// Where an input without a resume point starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventsStart {
    /// Every Event the API server still holds.
    Existing,
    /// Events from now on.
    Now,
}

/// Starts the input's thread.
pub fn spawn(
    name: String,
    options: KubeEventsOptions,
    outlet: Outlet,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    crate::background::spawn_on_runtime(name, Input { options, outlet }.run())
}

struct Input {
    options: KubeEventsOptions,
    outlet: Outlet,
}

/// How a leader's time ended.
enum End {
    /// The pipeline stops; the Lease was given up with the last resume point.
    Stop,
    /// Another agent holds the Lease now.
    Lost,
}

/// How one watch request ended.
enum WatchEnd {
    /// The server closed it (its timeout): watch again from the position.
    Closed,
    /// The position is gone from the server: list again.
    Expired,
}

impl Input {
    fn stopping(&self) -> bool {
        self.outlet.shutdown.reading().load(Ordering::Relaxed)
    }

    async fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        while !self.stopping() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn run(self) {
        let mut backoff = crate::background::FIRST_BACKOFF;
        let client = loop {
            match api_client(self.options.api_server.as_deref()).await {
                Ok(c) => break c,
                Err(e) => {
                    warn!(error = %e, retry_in = ?backoff, "The kubernetes_events input cannot reach the API; retrying.")
                }
            }
            if !crate::background::back_off(&mut backoff, self.outlet.shutdown.reading()).await {
                return;
            }
        };
        let o = &self.options;
        let leases: Api<Lease> = Api::namespaced(client.clone(), &o.lease_namespace);
        let mut elector = Elector::new(leases, &o.lease, &o.identity);
        let events: Api<Event> = match o.namespaces.as_slice() {
            [one] => Api::namespaced(client, one),
            _ => Api::all(client),
        };
        while !self.stopping() {
            if !elector.tick().await {
                if self.outlet.exit_on_eof {
                    info!(lease = %o.lease, "Another agent ships the Events; nothing to read.");
                    break;
                }
                self.pause(lease::RENEW_EVERY).await;
                continue;
            }
            info!(lease = %o.lease, identity = %o.identity, "Holding the Lease: shipping the cluster's Events.");
            let mut leader = Leader::new(&self, &events, &mut elector);
            match leader.run().await {
                End::Stop => break,
                End::Lost => {
                    warn!(lease = %o.lease, "Lost the Lease: another agent ships the Events now (what was in flight may be shipped twice).")
                }
            }
        }
        info!(lease = %o.lease, "kubernetes_events input stopped.");
    }
}

/// The leader's state.
struct Leader<'a> {
    input: &'a Input,
    api: &'a Api<Event>,
    elector: &'a mut Elector,
    /// Delivered resourceVersions, as a file's tracker counts bytes.
    tracker: Arc<FileTracker>,
    /// The highest resourceVersion queued: anything at or below was sent.
    sent: u64,
    /// Where the watch continues from.
    position: Option<String>,
    batch: Batch,
    batch_bytes: u64,
    batch_since: Option<Instant>,
    /// The last successful renewal of the Lease.
    renewed: Instant,
}

impl<'a> Leader<'a> {
    fn new(input: &'a Input, api: &'a Api<Event>, elector: &'a mut Elector) -> Self {
        // `0` is never written: watching "from 0" means "from anywhere".
        let resume = elector
            .annotation(RESUME_ANNOTATION)
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&rv| rv > 0);
        let identity = FileIdentity::default();
        let start = resume.unwrap_or(0);
        if let Some(rv) = resume {
            info!(
                resource_version = rv,
                "Resuming the Events after the last one delivered."
            );
        }
        Leader {
            input,
            api,
            elector,
            tracker: FileTracker::new(identity, "kubernetes-events", start),
            sent: start,
            position: resume.map(|rv| rv.to_string()),
            batch: Batch::default(),
            batch_bytes: 0,
            batch_since: None,
            renewed: Instant::now(),
        }
    }

    async fn run(&mut self) -> End {
        if self.position.is_none() && self.input.options.start_at == EventsStart::Now {
            match self.current_version().await {
                Ok(rv) => {
                    self.tracker =
                        FileTracker::new(self.tracker.identity(), "kubernetes-events", rv);
                    self.sent = rv;
                    self.position = Some(rv.to_string());
                }
                Err(e) => {
                    warn!(error = %e, "Cannot read the Events' current resourceVersion; listing them all.")
                }
            }
        }
        let mut backoff = crate::background::FIRST_BACKOFF;
        let mut listed = false;
        loop {
            if self.input.stopping() || (self.input.outlet.exit_on_eof && listed) {
                return self.stop().await;
            }
            let from = match self.position.clone() {
                Some(rv) if !self.input.outlet.exit_on_eof => rv,
                _ => match self.relist().await {
                    Ok(Some(rv)) => {
                        listed = true;
                        backoff = crate::background::FIRST_BACKOFF;
                        self.position = Some(rv);
                        continue;
                    }
                    Ok(None) => return End::Lost,
                    Err(e) => {
                        warn!(error = %e, retry_in = ?backoff, "Listing the Events failed; retrying.");
                        if !self.wait(&mut backoff).await {
                            return End::Lost;
                        }
                        continue;
                    }
                },
            };
            match self.watch(&from).await {
                Ok(Some(WatchEnd::Closed)) => backoff = crate::background::FIRST_BACKOFF,
                Ok(Some(WatchEnd::Expired)) => {
                    info!(resource_version = %from, "The Events' watch position expired; listing again.");
                    self.position = None;
                }
                Ok(None) => {
                    if self.input.stopping() {
                        return self.stop().await;
                    }
                    return End::Lost;
                }
                Err(e) => {
                    warn!(error = %e, retry_in = ?backoff, "Watching the Events failed; retrying.");
                    if !self.wait(&mut backoff).await {
                        return End::Lost;
                    }
                }
            }
        }
    }

    /// Waits `backoff` (doubling it), renewing the Lease; false if lost.
    async fn wait(&mut self, backoff: &mut Duration) -> bool {
        let until = Instant::now() + *backoff;
        *backoff = (*backoff * 2).min(Duration::from_secs(30));
        while Instant::now() < until && !self.input.stopping() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if !self.renew_if_due().await {
                return false;
            }
        }
        true
    }

    async fn current_version(&self) -> Result<u64, kube::Error> {
        let list = self.api.list(&self.list_params().limit(1)).await?;
        Ok(list
            .metadata
            .resource_version
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    fn list_params(&self) -> ListParams {
        let mut lp = ListParams::default();
        if let Some(sel) = &self.input.options.field_selector {
            lp = lp.fields(sel);
        }
        lp
    }

    /// Lists every Event, ships those above `sent` in resourceVersion
    /// order; the list's resourceVersion (where the watch goes on), or
    /// `None` if the Lease was lost meanwhile.
    async fn relist(&mut self) -> Result<Option<String>, kube::Error> {
        let mut items = Vec::new();
        let mut version = None;
        let mut token: Option<String> = None;
        loop {
            let mut lp = self.list_params().limit(500);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let page = self.api.list(&lp).await?;
            version = version.or(page.metadata.resource_version.clone());
            items.extend(page.items.into_iter().filter_map(|e| {
                let rv = record::resource_version(&e)?;
                (rv > self.sent).then_some((rv, e))
            }));
            token = page.metadata.continue_.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
            if !self.renew_if_due().await {
                return Ok(None);
            }
        }
        items.sort_by_key(|(rv, _)| *rv);
        info!(new = items.len(), "Listed the Events.");
        for (rv, event) in items {
            if !self.offer(rv, &event).await {
                return Ok(None);
            }
        }
        if !self.flush().await {
            return Ok(None);
        }
        Ok(version)
    }

    /// One watch request from `from`, until the server closes it; `None`
    /// when stopping or the Lease was lost.
    async fn watch(&mut self, from: &str) -> Result<Option<WatchEnd>, kube::Error> {
        let mut wp = WatchParams::default().timeout(290);
        if let Some(sel) = &self.input.options.field_selector {
            wp = wp.fields(sel);
        }
        let stream = match self.api.watch(&wp, from).await {
            Ok(s) => s,
            Err(kube::Error::Api(s)) if s.code == 410 => return Ok(Some(WatchEnd::Expired)),
            Err(e) => return Err(e),
        };
        let mut stream = std::pin::pin!(stream);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                item = stream.next() => {
                    let event = match item {
                        None => return Ok(Some(WatchEnd::Closed)),
                        Some(item) => item?,
                    };
                    match event {
                        WatchEvent::Added(e) | WatchEvent::Modified(e) => {
                            self.position = e.metadata.resource_version.clone();
                            if let Some(rv) = record::resource_version(&e)
                                && !self.offer(rv, &e).await
                            {
                                return Ok(None);
                            }
                        }
                        WatchEvent::Deleted(e) => self.position = e.metadata.resource_version,
                        WatchEvent::Bookmark(b) => self.position = Some(b.metadata.resource_version),
                        WatchEvent::Error(s) if s.code == 410 => return Ok(Some(WatchEnd::Expired)),
                        WatchEvent::Error(s) => return Err(kube::Error::Api(s)),
                    }
                }
                _ = tick.tick() => {
                    if self.input.stopping() {
                        return Ok(None);
                    }
                    let lingered = self
                        .batch_since
                        .is_some_and(|t| t.elapsed() >= self.input.outlet.limits.linger);
                    if (lingered && !self.flush().await) || !self.renew_if_due().await {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Adds an Event above `sent` (in a namespace asked for) to the batch,
    /// queueing it when full; false if the Lease was lost.
    async fn offer(&mut self, rv: u64, event: &Event) -> bool {
        let namespaces = &self.input.options.namespaces;
        if rv <= self.sent
            || (namespaces.len() > 1
                && !event
                    .metadata
                    .namespace
                    .as_ref()
                    .is_some_and(|ns| namespaces.contains(ns)))
        {
            return true;
        }
        self.sent = rv;
        let now = crate::data::tail::now_nanos();
        self.batch_bytes += record::push(&mut self.batch, event, now) as u64;
        self.batch_since.get_or_insert_with(Instant::now);
        if self.batch.len() >= self.input.outlet.limits.max_events
            || self.batch.bodies.len() >= self.input.outlet.limits.max_bytes
        {
            return self.flush().await;
        }
        true
    }

    /// Queues the batch (its end: the last resourceVersion sent), renewing
    /// the Lease while the pipeline is full; false if the Lease was lost.
    async fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_since = None;
        let stats = &self.input.outlet.stats;
        stats.lines_read.add(batch.len() as u64);
        stats.bytes.add(std::mem::take(&mut self.batch_bytes));
        let mut envelope = Envelope::new(batch, Some(self.tracker.register(self.sent)));
        loop {
            match self.input.outlet.out.try_send(envelope) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(e)) => {
                    e.fail();
                    return true;
                }
                Err(TrySendError::Full(e)) => {
                    envelope = e;
                    if self.input.outlet.shutdown.expired() {
                        envelope.fail();
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    if !self.renew_if_due().await {
                        envelope.fail();
                        return false;
                    }
                }
            }
        }
    }

    /// Renews the Lease (writing the resume point) once
    /// [`lease::RENEW_EVERY`] has passed; false once another agent holds
    /// it, or this one could not renew it for most of its duration.
    async fn renew_if_due(&mut self) -> bool {
        if self.renewed.elapsed() < lease::RENEW_EVERY {
            return true;
        }
        self.note_resume_point();
        if self.elector.tick().await {
            self.renewed = Instant::now();
            return true;
        }
        self.elector.unusable() && self.renewed.elapsed() < lease::DURATION - lease::RENEW_EVERY
    }

    fn note_resume_point(&mut self) {
        let delivered = self.tracker.committed();
        if delivered > 0 {
            self.elector
                .set_annotation(RESUME_ANNOTATION, delivered.to_string());
        }
    }

    /// Stopping: queues what is batched, waits for what is in flight (until
    /// the shutdown deadline), writes the resume point and gives the Lease up.
    async fn stop(&mut self) -> End {
        self.flush().await;
        while self.tracker.in_flight() > 0 && !self.input.outlet.shutdown.expired() {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if !self.renew_if_due().await {
                return End::Lost;
            }
        }
        self.note_resume_point();
        self.elector.release().await;
        info!(
            delivered_through = self.tracker.committed(),
            "Stopped shipping Events."
        );
        End::Stop
    }
}
