//! Consumer group membership (the classic protocol, as Kafka's Java
//! consumer speaks it): find the coordinator, join, and — when elected
//! leader — assign partitions with the `range` assignor; heartbeats;
//! committed offsets read and written; leaving. Owns the member's identity
//! and assignment; fetching records is [`crate::consume`]'s.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{self as m, GroupId, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::cluster::Cluster;
use crate::{Error, by_topic, error_name};

/// How to take part in a group.
#[derive(Debug, Clone)]
pub struct GroupOptions {
    /// The group id.
    pub group: String,
    /// Topics subscribed to.
    pub topics: Vec<String>,
    /// Without a heartbeat for this long, the coordinator drops the member.
    pub session_timeout: Duration,
    /// How long a rebalance may wait for members to rejoin.
    pub rebalance_timeout: Duration,
    /// Time between heartbeats.
    pub heartbeat_interval: Duration,
}

/// A topic partition.
pub type TopicPartition = (String, i32);

/// What a heartbeat says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// Still a member of this generation.
    Member,
    /// The group is rebalancing (or forgot us): join again.
    Rejoin,
}

/// This process as a member of a group.
#[derive(Debug)]
pub struct Member {
    options: GroupOptions,
    coordinator: i32,
    member_id: String,
    generation: i32,
    assignment: Vec<TopicPartition>,
    last_heartbeat: Instant,
}

const PROTOCOL_TYPE: &str = "consumer";
const ASSIGNOR: &str = "range";

fn group_id(name: &str) -> GroupId {
    GroupId(StrBytes::from_string(name.to_owned()))
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

impl Member {
    /// Joins the group (finding its coordinator first) and waits for an
    /// assignment.
    pub fn join(cluster: &mut Cluster, options: GroupOptions) -> Result<Self, Error> {
        let mut member = Member {
            options,
            coordinator: -1,
            member_id: String::new(),
            generation: -1,
            assignment: Vec::new(),
            last_heartbeat: Instant::now(),
        };
        member.rejoin(cluster)?;
        Ok(member)
    }

    /// The partitions assigned to this member in this generation.
    pub fn assignment(&self) -> &[TopicPartition] {
        &self.assignment
    }

    /// The generation of the group this member belongs to.
    pub fn generation(&self) -> i32 {
        self.generation
    }

    fn find_coordinator(&mut self, cluster: &mut Cluster) -> Result<(), Error> {
        let req = m::FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(self.options.group.clone()))
            .with_key_type(0);
        let resp = cluster.any_broker(|c| c.call(&req))?;
        if resp.error_code != 0 {
            return Err(Error::broker("cluster", "FindCoordinator", resp.error_code));
        }
        cluster.add_broker(resp.node_id, resp.host.as_str(), resp.port);
        self.coordinator = resp.node_id.0;
        Ok(())
    }

    /// Joins (again) after a rebalance; retries while the coordinator moves
    /// or loads, up to the rebalance timeout.
    pub fn rejoin(&mut self, cluster: &mut Cluster) -> Result<(), Error> {
        let deadline =
            Instant::now() + self.options.rebalance_timeout + self.options.session_timeout;
        loop {
            match self.try_join(cluster) {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() < deadline && rejoinable(&e) => {
                    if let Error::Broker { code: 16 | 15, .. } = e {
                        self.coordinator = -1;
                    }
                    if e.is_connection() {
                        cluster.drop_broker(self.coordinator);
                        self.coordinator = -1;
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn try_join(&mut self, cluster: &mut Cluster) -> Result<(), Error> {
        if self.coordinator < 0 {
            self.find_coordinator(cluster)?;
        }
        let subscription = encode_versioned(
            &m::ConsumerProtocolSubscription::default().with_topics(
                self.options
                    .topics
                    .iter()
                    .map(|t| StrBytes::from_string(t.clone()))
                    .collect(),
            ),
            0,
        )?;
        let join = m::JoinGroupRequest::default()
            .with_group_id(group_id(&self.options.group))
            .with_session_timeout_ms(self.options.session_timeout.as_millis() as i32)
            .with_rebalance_timeout_ms(self.options.rebalance_timeout.as_millis() as i32)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_protocol_type(StrBytes::from_static_str(PROTOCOL_TYPE))
            .with_protocols(vec![
                m::join_group_request::JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str(ASSIGNOR))
                    .with_metadata(subscription),
            ]);
        let conn = cluster.broker(self.coordinator)?;
        let mut resp = conn.call(&join)?;
        if resp.error_code == 79 {
            // MEMBER_ID_REQUIRED: join again with the id the coordinator gave.
            self.member_id = resp.member_id.to_string();
            resp = conn.call(&join.with_member_id(resp.member_id.clone()))?;
        }
        if resp.error_code != 0 {
            if resp.error_code == 25 {
                self.member_id.clear();
            }
            return Err(Error::broker(conn.addr(), "JoinGroup", resp.error_code));
        }
        self.member_id = resp.member_id.to_string();
        self.generation = resp.generation_id;
        let assignments = if resp.leader == resp.member_id {
            let members: Vec<(String, Vec<String>)> = resp
                .members
                .iter()
                .map(|mbr| {
                    let sub: m::ConsumerProtocolSubscription = decode_versioned(&mbr.metadata)?;
                    Ok((
                        mbr.member_id.to_string(),
                        sub.topics.iter().map(|t| t.to_string()).collect(),
                    ))
                })
                .collect::<Result<_, Error>>()?;
            let topics: Vec<String> = {
                let mut t: Vec<String> = members.iter().flat_map(|(_, t)| t.clone()).collect();
                t.sort();
                t.dedup();
                t
            };
            cluster.refresh(&topics)?;
            let counts: BTreeMap<String, usize> = topics
                .iter()
                .map(|t| {
                    (
                        t.clone(),
                        cluster.topic(t).map_or(0, |m| m.partitions.len()),
                    )
                })
                .collect();
            range_assign(&members, &counts)
                .into_iter()
                .map(|(member, parts)| {
                    let a = m::ConsumerProtocolAssignment::default().with_assigned_partitions(
                        by_topic(parts.iter().map(|(t, p)| (t.as_str(), *p)))
                            .into_iter()
                            .map(|(t, p)| {
                                m::consumer_protocol_assignment::TopicPartition::default()
                                    .with_topic(topic_name(t))
                                    .with_partitions(p)
                            })
                            .collect(),
                    );
                    Ok(m::sync_group_request::SyncGroupRequestAssignment::default()
                        .with_member_id(StrBytes::from_string(member))
                        .with_assignment(encode_versioned(&a, 0)?))
                })
                .collect::<Result<Vec<_>, Error>>()?
        } else {
            Vec::new()
        };
        let sync = m::SyncGroupRequest::default()
            .with_group_id(group_id(&self.options.group))
            .with_generation_id(self.generation)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_protocol_type(Some(StrBytes::from_static_str(PROTOCOL_TYPE)))
            .with_protocol_name(Some(StrBytes::from_static_str(ASSIGNOR)))
            .with_assignments(assignments);
        let conn = cluster.broker(self.coordinator)?;
        let resp = conn.call(&sync)?;
        if resp.error_code != 0 {
            return Err(Error::broker(conn.addr(), "SyncGroup", resp.error_code));
        }
        self.assignment = if resp.assignment.is_empty() {
            Vec::new()
        } else {
            let a: m::ConsumerProtocolAssignment = decode_versioned(&resp.assignment)?;
            a.assigned_partitions
                .iter()
                .flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.0.to_string(), *p)))
                .collect()
        };
        self.last_heartbeat = Instant::now();
        Ok(())
    }

    /// Sends a heartbeat if one is due.
    pub fn heartbeat(&mut self, cluster: &mut Cluster) -> Result<Heartbeat, Error> {
        if self.last_heartbeat.elapsed() < self.options.heartbeat_interval {
            return Ok(Heartbeat::Member);
        }
        let req = m::HeartbeatRequest::default()
            .with_group_id(group_id(&self.options.group))
            .with_generation_id(self.generation)
            .with_member_id(StrBytes::from_string(self.member_id.clone()));
        let conn = cluster.broker(self.coordinator)?;
        let resp = conn.call(&req)?;
        self.last_heartbeat = Instant::now();
        match resp.error_code {
            0 => Ok(Heartbeat::Member),
            // REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID,
            // FENCED_INSTANCE_ID, NOT_COORDINATOR
            27 | 22 | 25 | 82 | 16 => {
                if resp.error_code == 16 {
                    self.coordinator = -1;
                }
                Ok(Heartbeat::Rejoin)
            }
            code => Err(Error::broker(conn.addr(), "Heartbeat", code)),
        }
    }

    /// The group's committed offsets for `partitions` (`-1`: none yet).
    pub fn committed(
        &mut self,
        cluster: &mut Cluster,
        partitions: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, i64>, Error> {
        let req = m::OffsetFetchRequest::default()
            .with_group_id(group_id(&self.options.group))
            .with_topics(Some(
                by_topic(partitions.iter().map(|(t, p)| (t.as_str(), *p)))
                    .into_iter()
                    .map(|(t, p)| {
                        m::offset_fetch_request::OffsetFetchRequestTopic::default()
                            .with_name(topic_name(t))
                            .with_partition_indexes(p)
                    })
                    .collect(),
            ));
        let conn = cluster.broker(self.coordinator)?;
        let resp = conn.call(&req)?;
        if resp.error_code != 0 {
            return Err(Error::broker(conn.addr(), "OffsetFetch", resp.error_code));
        }
        let mut out = HashMap::new();
        for t in resp.topics {
            for p in t.partitions {
                if p.error_code != 0 {
                    return Err(Error::broker(conn.addr(), "OffsetFetch", p.error_code));
                }
                out.insert(
                    (t.name.0.to_string(), p.partition_index),
                    p.committed_offset,
                );
            }
        }
        Ok(out)
    }

    /// Commits `offsets` (the next offset to read, per partition) for this
    /// generation.
    pub fn commit(
        &mut self,
        cluster: &mut Cluster,
        offsets: &[(TopicPartition, i64)],
    ) -> Result<(), Error> {
        if offsets.is_empty() {
            return Ok(());
        }
        let req = m::OffsetCommitRequest::default()
            .with_group_id(group_id(&self.options.group))
            .with_generation_id_or_member_epoch(self.generation)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_retention_time_ms(-1)
            .with_topics(
                by_topic(offsets.iter().map(|((t, p), o)| (t.as_str(), (*p, *o))))
                    .into_iter()
                    .map(|(t, ps)| {
                        m::offset_commit_request::OffsetCommitRequestTopic::default()
                            .with_name(topic_name(t))
                            .with_partitions(
                                ps.into_iter()
                                    .map(|(p, o)| {
                                        m::offset_commit_request::OffsetCommitRequestPartition::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(o)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let conn = cluster.broker(self.coordinator)?;
        let resp = conn.call(&req)?;
        for t in &resp.topics {
            for p in &t.partitions {
                if p.error_code != 0 {
                    return Err(Error::Broker {
                        addr: conn.addr().to_owned(),
                        api: format!("OffsetCommit {}[{}]", t.name.0.as_str(), p.partition_index),
                        code: p.error_code,
                        name: error_name(p.error_code),
                    });
                }
            }
        }
        Ok(())
    }

    /// Leaves the group so its partitions move at once, not after the
    /// session timeout.
    pub fn leave(&mut self, cluster: &mut Cluster) -> Result<(), Error> {
        let req = m::LeaveGroupRequest::default()
            .with_group_id(group_id(&self.options.group))
            .with_member_id(StrBytes::from_string(self.member_id.clone()));
        let conn = cluster.broker(self.coordinator)?;
        let resp = conn.call(&req)?;
        if resp.error_code != 0 {
            return Err(Error::broker(conn.addr(), "LeaveGroup", resp.error_code));
        }
        Ok(())
    }
}

fn rejoinable(e: &Error) -> bool {
    match e {
        // COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE,
        // NOT_COORDINATOR, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID,
        // REBALANCE_IN_PROGRESS
        Error::Broker { code, .. } => matches!(code, 14 | 15 | 16 | 22 | 25 | 27),
        e => e.is_connection(),
    }
}

/// Kafka's `RangeAssignor`: per topic, partitions in order are cut into
/// contiguous ranges over the members subscribed to it (sorted by id),
/// the first `count % members` members taking one more.
pub fn range_assign(
    members: &[(String, Vec<String>)],
    partitions: &BTreeMap<String, usize>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut out: BTreeMap<String, Vec<TopicPartition>> = members
        .iter()
        .map(|(m, _)| (m.clone(), Vec::new()))
        .collect();
    for (topic, &count) in partitions {
        let mut subscribed: Vec<&String> = members
            .iter()
            .filter(|(_, t)| t.contains(topic))
            .map(|(m, _)| m)
            .collect();
        subscribed.sort();
        if subscribed.is_empty() {
            continue;
        }
        let per = count / subscribed.len();
        let extra = count % subscribed.len();
        let mut next = 0;
        for (i, m) in subscribed.into_iter().enumerate() {
            let n = per + usize::from(i < extra);
            let parts = out.entry(m.clone()).or_default();
            for p in next..next + n {
                parts.push((topic.clone(), p as i32));
            }
            next += n;
        }
    }
    out
}

/// A consumer protocol message: its version (i16) then its body.
fn encode_versioned<T: Encodable>(msg: &T, version: i16) -> Result<Bytes, Error> {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    msg.encode(&mut buf, version)
        .map_err(|e| Error::Encode(e.to_string()))?;
    Ok(buf.freeze())
}

fn decode_versioned<T: Decodable>(data: &Bytes) -> Result<T, Error> {
    let mut buf = data.clone();
    if buf.len() < 2 {
        return Err(Error::Codec("an empty consumer protocol message".into()));
    }
    let version = buf.get_i16().clamp(0, 3);
    T::decode(&mut buf, version)
        .map_err(|e| Error::Codec(format!("a consumer protocol message v{version}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_assignment_cuts_contiguous_ranges_first_members_taking_more() {
        let members = vec![
            ("b".to_owned(), vec!["t".to_owned()]),
            ("a".to_owned(), vec!["t".to_owned(), "u".to_owned()]),
        ];
        let parts = BTreeMap::from([("t".to_owned(), 3), ("u".to_owned(), 2)]);
        let got = range_assign(&members, &parts);
        let tp = |t: &str, p: i32| (t.to_owned(), p);
        assert_eq!(
            got["a"],
            vec![tp("t", 0), tp("t", 1), tp("u", 0), tp("u", 1)]
        );
        assert_eq!(got["b"], vec![tp("t", 2)]);
    }
}
