//! Reading assigned partitions: where to start (the group's committed
//! offset, else the earliest or latest), fetches pipelined to every
//! leader, positions advanced past what was returned, and the high
//! watermark kept for lag. Owns positions; committing them is the
//! caller's, through [`crate::group::Member::commit`], once delivered.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::{self as m, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::Cluster;
use crate::group::TopicPartition;
use crate::records::{self, Incoming};
use crate::{Codecs, Error, by_topic, error_name, stale_metadata};

/// Where a partition without a committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Its first record still kept.
    Earliest,
    /// Only records produced from now on.
    Latest,
}

/// Fetch settings.
#[derive(Debug, Clone, Copy)]
pub struct FetchOptions {
    /// Longest a broker holds a fetch waiting for data, in ms.
    pub max_wait_ms: i32,
    /// Bytes a fetch response may carry.
    pub max_bytes: i32,
    /// Bytes per partition per fetch.
    pub partition_max_bytes: i32,
}

/// Records fetched from one partition.
#[derive(Debug)]
pub struct Fetched {
    /// The partition.
    pub partition: TopicPartition,
    /// The records, in offset order.
    pub records: Vec<Incoming>,
    /// The offset after the last record returned (read from here next).
    pub next: i64,
    /// The partition's high watermark at the fetch.
    pub high_watermark: i64,
}

/// Positions of the assigned partitions.
#[derive(Debug)]
pub struct Fetcher {
    options: FetchOptions,
    start: StartAt,
    positions: BTreeMap<TopicPartition, i64>,
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

impl Fetcher {
    /// Positions for `assignment`: `committed` where the group has one,
    /// else per `start`.
    pub fn new(
        cluster: &mut Cluster,
        options: FetchOptions,
        start: StartAt,
        assignment: &[TopicPartition],
        committed: &HashMap<TopicPartition, i64>,
    ) -> Result<Self, Error> {
        let mut f = Fetcher {
            options,
            start,
            positions: BTreeMap::new(),
        };
        let mut unknown = Vec::new();
        for tp in assignment {
            match committed.get(tp) {
                Some(&o) if o >= 0 => {
                    f.positions.insert(tp.clone(), o);
                }
                _ => unknown.push(tp.clone()),
            }
        }
        f.reset(cluster, &unknown)?;
        Ok(f)
    }

    /// The next offset to read, per partition.
    pub fn positions(&self) -> &BTreeMap<TopicPartition, i64> {
        &self.positions
    }

    /// Moves partition `tp`'s position to `offset` (reads continue there).
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) {
        if let Some(p) = self.positions.get_mut(tp) {
            *p = offset;
        }
    }

    /// Sets partitions' positions to the earliest or latest offset.
    fn reset(&mut self, cluster: &mut Cluster, partitions: &[TopicPartition]) -> Result<(), Error> {
        if partitions.is_empty() {
            return Ok(());
        }
        let ts = match self.start {
            StartAt::Earliest => -2,
            StartAt::Latest => -1,
        };
        let topics: Vec<&str> = partitions.iter().map(|(t, _)| t.as_str()).collect();
        cluster.ensure(topics)?;
        for (leader, parts) in by_leader(cluster, partitions)? {
            let req = m::ListOffsetsRequest::default().with_topics(
                by_topic(parts.iter().map(|(t, p)| (t.as_str(), *p)))
                    .into_iter()
                    .map(|(t, ps)| {
                        m::list_offsets_request::ListOffsetsTopic::default()
                            .with_name(topic_name(t))
                            .with_partitions(
                                ps.into_iter()
                                    .map(|p| {
                                        m::list_offsets_request::ListOffsetsPartition::default()
                                            .with_partition_index(p)
                                            .with_timestamp(ts)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
            let conn = cluster.broker(leader)?;
            let resp = conn.call(&req)?;
            let addr = conn.addr().to_owned();
            for t in resp.topics {
                for p in t.partitions {
                    if p.error_code != 0 {
                        if stale_metadata(p.error_code) {
                            cluster.invalidate();
                        }
                        return Err(Error::broker(&addr, "ListOffsets", p.error_code));
                    }
                    self.positions
                        .insert((t.name.0.to_string(), p.partition_index), p.offset);
                }
            }
        }
        Ok(())
    }

    /// One fetch from every leader of the assigned partitions. Partitions
    /// whose offset is out of range start again per `start`.
    pub fn fetch(
        &mut self,
        cluster: &mut Cluster,
        codecs: &dyn Codecs,
    ) -> Result<Vec<Fetched>, Error> {
        let assigned: Vec<TopicPartition> = self.positions.keys().cloned().collect();
        if assigned.is_empty() {
            return Ok(Vec::new());
        }
        cluster.ensure(assigned.iter().map(|(t, _)| t.as_str()))?;
        let leaders = by_leader(cluster, &assigned)?;
        let mut sent = Vec::new();
        for (leader, parts) in &leaders {
            let req = self.request(parts);
            let conn = cluster.broker(*leader)?;
            match conn.send(&req) {
                Ok(p) => sent.push((*leader, p)),
                Err(e) => {
                    cluster.drop_broker(*leader);
                    return Err(e);
                }
            }
        }
        let mut out = Vec::new();
        let mut out_of_range = Vec::new();
        for (leader, pending) in sent {
            let conn = cluster.broker(leader)?;
            let resp = match conn.receive::<m::FetchRequest>(pending) {
                Ok(r) => r,
                Err(e) => {
                    cluster.drop_broker(leader);
                    return Err(e);
                }
            };
            let addr = conn.addr().to_owned();
            if resp.error_code != 0 {
                return Err(Error::broker(&addr, "Fetch", resp.error_code));
            }
            for t in resp.responses {
                let topic = t.topic.0.to_string();
                for p in t.partitions {
                    let tp = (topic.clone(), p.partition_index);
                    let Some(&from) = self.positions.get(&tp) else {
                        continue;
                    };
                    match p.error_code {
                        0 => {}
                        1 => {
                            out_of_range.push(tp);
                            continue;
                        }
                        code if stale_metadata(code) || crate::retriable(code) => {
                            cluster.invalidate();
                            continue;
                        }
                        code => {
                            return Err(Error::Broker {
                                addr: addr.clone(),
                                api: format!("Fetch {topic}[{}]", p.partition_index),
                                code,
                                name: error_name(code),
                            });
                        }
                    }
                    let (records, next) = match p.records {
                        Some(data) => records::decode(data, from, codecs)?,
                        None => (Vec::new(), from),
                    };
                    self.positions.insert(tp.clone(), next);
                    out.push(Fetched {
                        partition: tp,
                        records,
                        next,
                        high_watermark: p.high_watermark,
                    });
                }
            }
        }
        self.reset(cluster, &out_of_range)?;
        Ok(out)
    }

    fn request(&self, parts: &[TopicPartition]) -> m::FetchRequest {
        m::FetchRequest::default()
            .with_max_wait_ms(self.options.max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(self.options.max_bytes)
            .with_topics(
                by_topic(parts.iter().map(|(t, p)| (t.as_str(), *p)))
                    .into_iter()
                    .map(|(t, ps)| {
                        m::fetch_request::FetchTopic::default()
                            .with_topic(topic_name(t))
                            .with_partitions(
                                ps.into_iter()
                                    .map(|p| {
                                        let offset = self
                                            .positions
                                            .get(&(t.to_owned(), p))
                                            .copied()
                                            .unwrap_or(0);
                                        m::fetch_request::FetchPartition::default()
                                            .with_partition(p)
                                            .with_fetch_offset(offset)
                                            .with_partition_max_bytes(
                                                self.options.partition_max_bytes,
                                            )
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
    }
}

/// Groups partitions by their leader's broker id.
fn by_leader(
    cluster: &Cluster,
    parts: &[TopicPartition],
) -> Result<BTreeMap<i32, Vec<TopicPartition>>, Error> {
    let mut out: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
    for (t, p) in parts {
        let leader = cluster
            .topic(t)
            .and_then(|m| m.partitions.iter().find(|x| x.index == *p))
            .map_or(-1, |x| x.leader);
        if leader < 0 {
            return Err(Error::broker("cluster", &format!("Metadata {t}[{p}]"), 5));
        }
        out.entry(leader).or_default().push((t.clone(), *p));
    }
    Ok(out)
}
