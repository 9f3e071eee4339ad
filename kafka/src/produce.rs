//! Producing: records already assigned to partitions are cut into record
//! batches within the broker's `max.message.bytes`, sent to each
//! partition's leader (requests pipelined per broker, each within
//! `max_request_bytes`), and answered per batch: delivered at the chosen
//! `acks`, to retry (after a metadata refresh when leaders moved), or
//! refused (with the broker's reason, per record where it names records).
//! Owns no event model; the caller maps records back to its events.

use std::collections::BTreeMap;
use std::ops::Range;

use bytes::Bytes;
use kafka_protocol::messages::{self as m, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::Cluster;
use crate::records::{self, BATCH_OVERHEAD, Outgoing};
use crate::{Codecs, Compression, by_topic, error_name, retriable, stale_metadata};

/// Records for one partition of one topic.
#[derive(Debug, Clone, Default)]
pub struct PartitionRecords {
    /// Topic.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The records, in order.
    pub records: Vec<Outgoing>,
}

/// What became of some records of a [`PartitionRecords`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written at the requested acks.
    Delivered,
    /// Not written (or not known to be): send again.
    Retry(String),
    /// Refused for good, with the broker's reason.
    Rejected(String),
    /// The broker refused these records (indices within the range) and
    /// wrote none of the batch: retry the others.
    RejectedRecords(Vec<(usize, String)>),
}

/// Producer settings.
#[derive(Debug, Clone, Copy)]
pub struct ProducerOptions {
    /// 0 (no answer), 1 (the leader wrote it) or -1 (every in-sync replica did).
    pub acks: i16,
    /// How long the broker may wait for replicas, in ms.
    pub timeout_ms: i32,
    /// Codec for every batch.
    pub compression: Compression,
    /// Largest record batch (the topic's `max.message.bytes`).
    pub max_batch_bytes: usize,
    /// Largest produce request.
    pub max_request_bytes: usize,
    /// Sends of one batch within one call (metadata refreshed between).
    pub attempts: usize,
}

/// A producer: the cluster it knows and its settings.
#[derive(Debug)]
pub struct Producer {
    /// Brokers, leaders and connections.
    pub cluster: Cluster,
    options: ProducerOptions,
}

/// One encoded record batch on its way.
struct Chunk {
    group: usize,
    range: Range<usize>,
    data: Bytes,
}

impl Producer {
    /// A producer over `cluster`.
    pub fn new(cluster: Cluster, options: ProducerOptions) -> Self {
        Producer { cluster, options }
    }

    /// Sends every group's records; returns what became of each range of
    /// records, per group, covering every record exactly once.
    pub fn produce(
        &mut self,
        groups: &[PartitionRecords],
        codecs: &dyn Codecs,
    ) -> Vec<(usize, Range<usize>, Outcome)> {
        let mut done = Vec::new();
        let mut todo = Vec::new();
        for (g, group) in groups.iter().enumerate() {
            for range in self.split(&group.records) {
                match records::encode(
                    &group.records[range.clone()],
                    self.options.compression,
                    codecs,
                ) {
                    Ok(data) => todo.push(Chunk {
                        group: g,
                        range,
                        data,
                    }),
                    Err(e) => done.push((g, range, Outcome::Rejected(e.to_string()))),
                }
            }
        }
        for attempt in 0..self.options.attempts.max(1) {
            if todo.is_empty() {
                break;
            }
            let last = attempt + 1 == self.options.attempts.max(1);
            let topics: Vec<&str> = todo
                .iter()
                .map(|c| groups[c.group].topic.as_str())
                .collect();
            if let Err(e) = self.cluster.ensure(topics) {
                let reason = e.to_string();
                let denied = e.is_denied();
                for c in todo.drain(..) {
                    let o = if denied {
                        Outcome::Rejected(reason.clone())
                    } else {
                        Outcome::Retry(reason.clone())
                    };
                    done.push((c.group, c.range, o));
                }
                break;
            }
            let mut again = Vec::new();
            for (chunk, outcome) in self.send_round(groups, std::mem::take(&mut todo)) {
                match outcome {
                    Outcome::Retry(_) if !last => again.push(chunk),
                    o => done.push((chunk.group, chunk.range, o)),
                }
            }
            // Whatever the reason (a leader moved, a broker went away),
            // the next attempt asks the cluster again where partitions live.
            if !again.is_empty() {
                self.cluster.invalidate();
            }
            todo = again;
        }
        done
    }

    /// Cuts `records` into ranges whose batches fit `max_batch_bytes`.
    fn split(&self, records: &[Outgoing]) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let mut start = 0;
        let mut size = BATCH_OVERHEAD;
        for (i, r) in records.iter().enumerate() {
            let s = r.size_bound();
            if i > start && size + s > self.options.max_batch_bytes {
                out.push(start..i);
                start = i;
                size = BATCH_OVERHEAD;
            }
            size += s;
        }
        if start < records.len() {
            out.push(start..records.len());
        }
        out
    }

    /// Sends each chunk once to its partition's leader.
    fn send_round(
        &mut self,
        groups: &[PartitionRecords],
        chunks: Vec<Chunk>,
    ) -> Vec<(Chunk, Outcome)> {
        let mut out = Vec::new();
        let mut by_leader: BTreeMap<i32, Vec<Chunk>> = BTreeMap::new();
        for c in chunks {
            let g = &groups[c.group];
            let leader = self.cluster.topic(&g.topic).and_then(|t| {
                if t.error != 0 {
                    return Err(t.error).ok();
                }
                t.partitions
                    .iter()
                    .find(|p| p.index == g.partition)
                    .copied()
            });
            match leader {
                Some(p) if p.leader >= 0 => by_leader.entry(p.leader).or_default().push(c),
                Some(p) => {
                    let why = format!(
                        "{}[{}] has no leader ({})",
                        g.topic,
                        g.partition,
                        error_name(p.error)
                    );
                    out.push((c, Outcome::Retry(why)));
                }
                None => {
                    let code = self.cluster.topic(&g.topic).map_or(3, |t| t.error);
                    let why = format!(
                        "topic {} has no leader metadata ({})",
                        g.topic,
                        error_name(code)
                    );
                    let o = if code == 0 || retriable(code) {
                        Outcome::Retry(why)
                    } else {
                        Outcome::Rejected(why)
                    };
                    out.push((c, o));
                }
            }
        }
        for (leader, chunks) in by_leader {
            out.extend(self.send_to(leader, groups, chunks));
        }
        out
    }

    /// Pipelines requests to one broker: each holds at most one batch per
    /// partition and stays within `max_request_bytes`.
    fn send_to(
        &mut self,
        leader: i32,
        groups: &[PartitionRecords],
        mut chunks: Vec<Chunk>,
    ) -> Vec<(Chunk, Outcome)> {
        let mut requests: Vec<Vec<Chunk>> = Vec::new();
        while !chunks.is_empty() {
            let mut req = Vec::new();
            let mut size = 0;
            let mut i = 0;
            while i < chunks.len() {
                let c = &chunks[i];
                let dup = req.iter().any(|r: &Chunk| r.group == c.group);
                if dup || (!req.is_empty() && size + c.data.len() > self.options.max_request_bytes)
                {
                    i += 1;
                    continue;
                }
                size += c.data.len();
                req.push(chunks.remove(i));
            }
            requests.push(req);
        }
        let options = self.options;
        let conn = match self.cluster.broker(leader) {
            Ok(c) => c,
            Err(e) => {
                let denied = e.is_denied();
                let reason = e.to_string();
                self.cluster.drop_broker(leader);
                return fail_all(requests, &reason, denied);
            }
        };
        let mut pending = Vec::new();
        let mut failure = None;
        for req in &requests {
            let body = produce_request(groups, req, &options);
            let sent = if options.acks == 0 {
                conn.send_only(&body).map(|()| None)
            } else {
                conn.send(&body).map(Some)
            };
            match sent {
                Ok(p) => pending.push(p),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let mut out = Vec::new();
        let mut requests = requests.into_iter();
        for p in pending {
            let Some(req) = requests.next() else { break };
            let Some(p) = p else {
                // acks 0: written to the socket is all there is to know.
                out.extend(req.into_iter().map(|c| (c, Outcome::Delivered)));
                continue;
            };
            if failure.is_some() {
                out.extend(retry_all(req, "connection lost"));
                continue;
            }
            match conn.receive::<m::ProduceRequest>(p) {
                Ok(resp) => out.extend(answer(groups, req, resp, conn.addr())),
                Err(e) => {
                    let reason = e.to_string();
                    out.extend(retry_all(req, &reason));
                    failure = Some(e);
                }
            }
        }
        if let Some(e) = failure {
            let reason = e.to_string();
            for req in requests {
                out.extend(retry_all(req, &reason));
            }
            self.cluster.drop_broker(leader);
        }
        out
    }
}

fn retry_all(req: Vec<Chunk>, reason: &str) -> impl Iterator<Item = (Chunk, Outcome)> {
    let reason = reason.to_owned();
    req.into_iter()
        .map(move |c| (c, Outcome::Retry(reason.clone())))
}

fn fail_all(requests: Vec<Vec<Chunk>>, reason: &str, denied: bool) -> Vec<(Chunk, Outcome)> {
    requests
        .into_iter()
        .flatten()
        .map(|c| {
            let o = if denied {
                Outcome::Rejected(reason.to_owned())
            } else {
                Outcome::Retry(reason.to_owned())
            };
            (c, o)
        })
        .collect()
}

fn produce_request(
    groups: &[PartitionRecords],
    chunks: &[Chunk],
    options: &ProducerOptions,
) -> m::ProduceRequest {
    let topics = by_topic(chunks.iter().map(|c| {
        let g = &groups[c.group];
        (
            g.topic.as_str(),
            m::produce_request::PartitionProduceData::default()
                .with_index(g.partition)
                .with_records(Some(c.data.clone())),
        )
    }));
    m::ProduceRequest::default()
        .with_acks(options.acks)
        .with_timeout_ms(options.timeout_ms)
        .with_topic_data(
            topics
                .into_iter()
                .map(|(t, parts)| {
                    m::produce_request::TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_string(t.to_owned())))
                        .with_partition_data(parts)
                })
                .collect(),
        )
}

/// Reads a produce response: each chunk's partition answer.
fn answer(
    groups: &[PartitionRecords],
    req: Vec<Chunk>,
    resp: m::ProduceResponse,
    addr: &str,
) -> Vec<(Chunk, Outcome)> {
    req.into_iter()
        .map(|c| {
            let g = &groups[c.group];
            let part = resp
                .responses
                .iter()
                .filter(|t| t.name.0.as_str() == g.topic)
                .flat_map(|t| &t.partition_responses)
                .find(|p| p.index == g.partition);
            let outcome = match part {
                None => Outcome::Retry(format!(
                    "{addr} did not answer for {}[{}]",
                    g.topic, g.partition
                )),
                Some(p) if p.error_code == 0 => Outcome::Delivered,
                Some(p) => {
                    let why = format!(
                        "{addr} refused {}[{}]: {}{}",
                        g.topic,
                        g.partition,
                        error_name(p.error_code),
                        p.error_message
                            .as_ref()
                            .map(|m| format!(": {}", m.as_str()))
                            .unwrap_or_default()
                    );
                    if stale_metadata(p.error_code) {
                        Outcome::Retry(format!("{why} (leader moved)"))
                    } else if retriable(p.error_code) {
                        Outcome::Retry(why)
                    } else if !p.record_errors.is_empty() {
                        Outcome::RejectedRecords(
                            p.record_errors
                                .iter()
                                .map(|r| {
                                    let msg = r
                                        .batch_index_error_message
                                        .as_ref()
                                        .map(|m| m.to_string())
                                        .unwrap_or_else(|| error_name(p.error_code));
                                    (r.batch_index as usize, format!("{why}: {msg}"))
                                })
                                .collect(),
                        )
                    } else {
                        Outcome::Rejected(why)
                    }
                }
            };
            (c, outcome)
        })
        .collect()
}
