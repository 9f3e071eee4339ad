//! The `kafka` input: a member of a consumer group that turns the records
//! of its assigned partitions into batches and commits a partition's
//! offset only once every batch before it was delivered — the promise file
//! offsets keep: SIGTERM loses and repeats nothing, kill -9 repeats at
//! most what was in flight.
//!
//! Each assigned partition is a source with its own ack tracker
//! ([`FileTracker`], counting Kafka offsets instead of bytes); batches go
//! into the pipeline's queue like the tailer's. Owns the group membership
//! (through `gleaner-kafka`) and its thread; must not touch files,
//! checkpoints or plugins.

mod codecs;
mod tls;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::SendTimeoutError;
use gleaner_kafka::cluster::Cluster;
use gleaner_kafka::consume::{FetchOptions, Fetcher};
use gleaner_kafka::group::{GroupOptions, Heartbeat, Member, TopicPartition};
use gleaner_kafka::wire::ConnectOptions;

pub use codecs::Native as NativeCodecs;
pub use gleaner_kafka::consume::StartAt;
pub use gleaner_kafka::sasl::{Mechanism, Sasl};

use crate::data::batch::{Envelope, Outlet};
use crate::model::ack::{FileIdentity, FileTracker};
use crate::model::event::{Batch, value};
use crate::plugin::TlsSpec;

/// The tag naming the topic a batch was read from.
pub const TOPIC_TAG: &str = "kafka.topic";
/// The tag naming the partition a batch was read from.
pub const PARTITION_TAG: &str = "kafka.partition";
/// The field holding a record's offset (an int).
pub const OFFSET_FIELD: &str = "kafka.offset";
/// The field holding a record's key, when it has one.
pub const KEY_FIELD: &str = "kafka.key";
/// Record headers become fields named with this prefix.
pub const HEADER_PREFIX: &str = "kafka.header.";

/// A checked `kafka` input.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    /// Topics subscribed to.
    pub topics: Vec<String>,
    /// Consumer group id.
    pub group: String,
    /// Where partitions without a committed offset start.
    pub start_at: StartAt,
    /// Client id in requests.
    pub client_id: String,
    /// SASL credentials.
    pub sasl: Option<Sasl>,
    /// TLS to the brokers; plain TCP when `None`.
    pub tls: Option<TlsSpec>,
    /// Group session timeout.
    pub session_timeout: Duration,
    /// Time between heartbeats.
    pub heartbeat_interval: Duration,
    /// Longest a fetch waits for data at the broker.
    pub fetch_max_wait: Duration,
    /// Bytes one fetch may return.
    pub fetch_max_bytes: usize,
    /// How often delivered offsets are committed.
    pub commit_interval: Duration,
}

/// Starts the input's thread.
pub fn spawn(
    name: String,
    options: KafkaOptions,
    outlet: Outlet,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let mut connect = ConnectOptions::new(
        options.client_id.clone(),
        options.session_timeout.max(Duration::from_secs(10)),
    );
    connect.sasl = options.sasl.clone();
    if let Some(tls) = &options.tls {
        let config = tls.client_config().map_err(std::io::Error::other)?;
        connect.connector = Arc::new(tls::Rustls::new(config));
    }
    std::thread::Builder::new().name(name).spawn(move || {
        let mut input = Input {
            cluster: Cluster::new(options.brokers.clone(), connect),
            options,
            outlet,
            trackers: BTreeMap::new(),
            committed: HashMap::new(),
            last_commit: Instant::now(),
        };
        input.cluster.auto_create = false;
        input.run();
    })
}

struct Input {
    options: KafkaOptions,
    cluster: Cluster,
    outlet: Outlet,
    /// The assigned partitions' ack trackers (offsets, not bytes).
    trackers: BTreeMap<TopicPartition, Arc<FileTracker>>,
    /// What was last committed, per partition.
    committed: HashMap<TopicPartition, i64>,
    last_commit: Instant,
}

/// How a member's time in a generation ended.
enum End {
    /// The pipeline is stopping (or, with `exit_on_eof`, read to the end).
    Stop,
    /// The group rebalances.
    Rejoin,
}

impl Input {
    fn stopping(&self) -> bool {
        self.outlet.shutdown.reading().load(Ordering::Relaxed)
    }

    fn run(&mut self) {
        let mut backoff = Duration::from_millis(250);
        let mut failing = false;
        while !self.stopping() {
            let options = self.group_options();
            let result =
                Member::join(&mut self.cluster, options).and_then(|member| self.member(member));
            match result {
                Ok(End::Stop) => break,
                Ok(End::Rejoin) => {
                    backoff = Duration::from_millis(250);
                    failing = false;
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(group = %self.options.group, error = %e, "Kafka input cannot consume; retrying with backoff.");
                        failing = true;
                    }
                    self.outlet.shutdown.sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        tracing::info!(group = %self.options.group, "Kafka input stopped.");
    }

    fn group_options(&self) -> GroupOptions {
        GroupOptions {
            group: self.options.group.clone(),
            topics: self.options.topics.clone(),
            session_timeout: self.options.session_timeout,
            rebalance_timeout: self.options.session_timeout * 3,
            heartbeat_interval: self.options.heartbeat_interval,
        }
    }

    /// One generation: fetch, batch and commit until a rebalance or stop.
    fn member(&mut self, mut member: Member) -> Result<End, gleaner_kafka::Error> {
        let assignment = member.assignment().to_vec();
        tracing::info!(group = %self.options.group, generation = member.generation(), partitions = ?assignment, "Joined the Kafka consumer group.");
        let committed = member.committed(&mut self.cluster, &assignment)?;
        let mut fetcher = Fetcher::new(
            &mut self.cluster,
            FetchOptions {
                max_wait_ms: self.options.fetch_max_wait.as_millis() as i32,
                max_bytes: self.options.fetch_max_bytes as i32,
                partition_max_bytes: self.options.fetch_max_bytes as i32,
            },
            self.options.start_at,
            &assignment,
            &committed,
        )?;
        self.trackers.clear();
        self.committed.clear();
        for (tp, &at) in fetcher.positions() {
            self.trackers.insert(tp.clone(), tracker(tp, at));
            self.committed.insert(tp.clone(), at);
        }
        // With exit_on_eof: the high watermark each partition must reach.
        let mut ends: HashMap<TopicPartition, i64> = HashMap::new();
        let end = loop {
            if self.stopping() {
                break End::Stop;
            }
            if member.heartbeat(&mut self.cluster)? == Heartbeat::Rejoin {
                break End::Rejoin;
            }
            if self.outlet.out.is_full() {
                self.outlet.shutdown.sleep(Duration::from_millis(5));
                self.maybe_commit(&mut member, false);
                continue;
            }
            let fetched = fetcher.fetch(&mut self.cluster, &codecs::Native)?;
            for f in fetched {
                ends.entry(f.partition.clone()).or_insert(f.high_watermark);
                if !f.records.is_empty() {
                    self.send(&f.partition, &f.records, &mut member);
                }
            }
            self.maybe_commit(&mut member, false);
            if self.outlet.exit_on_eof
                && !assignment.is_empty()
                && assignment.iter().all(|tp| {
                    ends.get(tp)
                        .is_some_and(|&e| fetcher.positions().get(tp).is_some_and(|&p| p >= e))
                })
            {
                break End::Stop;
            }
        };
        self.drain(&mut member);
        if matches!(end, End::Stop)
            && let Err(e) = member.leave(&mut self.cluster)
        {
            tracing::debug!(error = %e, "Leaving the Kafka consumer group failed.");
        }
        Ok(end)
    }

    /// Turns one partition's records into batches and queues them.
    fn send(
        &mut self,
        tp: &TopicPartition,
        records: &[gleaner_kafka::records::Incoming],
        member: &mut Member,
    ) {
        let Some(tracker) = self.trackers.get(tp).cloned() else {
            return;
        };
        let tags = vec![
            (TOPIC_TAG.to_owned(), tp.0.clone()),
            (PARTITION_TAG.to_owned(), tp.1.to_string()),
        ];
        let now = crate::data::tail::now_nanos();
        let mut batch = Batch::with_tags(
            tags.clone(),
            records.len().min(self.outlet.limits.max_events),
            0,
        );
        let mut bytes = 0u64;
        for (i, r) in records.iter().enumerate() {
            let body = r.value.as_deref().unwrap_or_default();
            let ts = if r.timestamp_ms >= 0 {
                r.timestamp_ms.saturating_mul(1_000_000)
            } else {
                now
            };
            batch.push(ts, body);
            batch.push_typed(OFFSET_FIELD, value::INT, r.offset.to_string().as_bytes());
            if let Some(k) = &r.key {
                batch.push_field(KEY_FIELD, k);
            }
            for (name, v) in &r.headers {
                if let Some(v) = v {
                    batch.push_field(&format!("{HEADER_PREFIX}{name}"), v);
                }
            }
            bytes += body.len() as u64;
            let last = i + 1 == records.len();
            if last
                || batch.len() >= self.outlet.limits.max_events
                || batch.bodies.len() >= self.outlet.limits.max_bytes
            {
                let ack = tracker.register((r.offset + 1) as u64);
                let full = std::mem::replace(
                    &mut batch,
                    Batch::with_tags(
                        tags.clone(),
                        self.outlet.limits.max_events.min(records.len() - i),
                        0,
                    ),
                );
                self.outlet.stats.lines_read.add(full.len() as u64);
                self.queue(Envelope::new(full, Some(ack)), member);
            }
        }
        self.outlet.stats.bytes.add(bytes);
    }

    /// Queues a batch, heartbeating while the pipeline is full.
    fn queue(&mut self, mut envelope: Envelope, member: &mut Member) {
        loop {
            match self
                .outlet
                .out
                .send_timeout(envelope, Duration::from_millis(200))
            {
                Ok(()) => return,
                Err(SendTimeoutError::Timeout(e)) => {
                    envelope = e;
                    if let Err(err) = member.heartbeat(&mut self.cluster) {
                        tracing::debug!(error = %err, "Kafka heartbeat failed while the pipeline was full.");
                    }
                }
                Err(SendTimeoutError::Disconnected(e)) => {
                    e.fail();
                    return;
                }
            }
        }
    }

    /// Commits what was delivered since the last commit, every
    /// `commit_interval` (or now, with `force`).
    fn maybe_commit(&mut self, member: &mut Member, force: bool) {
        if !force && self.last_commit.elapsed() < self.options.commit_interval {
            return;
        }
        self.last_commit = Instant::now();
        let offsets: Vec<(TopicPartition, i64)> = self
            .trackers
            .iter()
            .map(|(tp, t)| (tp.clone(), t.committed() as i64))
            .filter(|(tp, o)| self.committed.get(tp) != Some(o))
            .collect();
        if offsets.is_empty() {
            return;
        }
        match member.commit(&mut self.cluster, &offsets) {
            Ok(()) => {
                for (tp, o) in offsets {
                    self.committed.insert(tp, o);
                }
            }
            Err(e) => {
                tracing::warn!(group = %self.options.group, error = %e, "Committing Kafka offsets failed; they are committed again with the next ones.")
            }
        }
    }

    /// Waits until what was queued is delivered (or the shutdown deadline
    /// passes), heartbeating, then commits.
    fn drain(&mut self, member: &mut Member) {
        let give_up = Instant::now() + self.options.session_timeout;
        while self.trackers.values().any(|t| t.in_flight() > 0)
            && !self.outlet.shutdown.expired()
            && Instant::now() < give_up
        {
            std::thread::sleep(Duration::from_millis(10));
            if let Err(e) = member.heartbeat(&mut self.cluster) {
                tracing::debug!(error = %e, "Kafka heartbeat failed while draining.");
            }
        }
        self.maybe_commit(member, true);
    }
}

/// An ack tracker for a partition, counting offsets from `at`.
fn tracker(tp: &TopicPartition, at: i64) -> Arc<FileTracker> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    tp.hash(&mut h);
    let identity = FileIdentity {
        dev: 0,
        ino: h.finish(),
        fingerprint: 0,
        fingerprint_len: 0,
        born_ns: 0,
    };
    FileTracker::new(
        identity,
        &format!("kafka:{}/{}", tp.0, tp.1),
        at.max(0) as u64,
    )
}
