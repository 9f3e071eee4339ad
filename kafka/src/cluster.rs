//! What the client knows of the cluster: brokers by id, each topic's
//! partitions and their leaders, and one open connection per broker.
//! Metadata is fetched from any reachable broker (bootstrap list first
//! when nothing is known) and refreshed when a response says leaders
//! moved. Owns connections; knows nothing of records or groups.

use std::collections::HashMap;

use kafka_protocol::messages::{self as m, BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::Error;
use crate::wire::{ConnectOptions, Connection};

/// A partition's leader, or the error that keeps it from having one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// Index within the topic.
    pub index: i32,
    /// The leader's broker id (-1 when none).
    pub leader: i32,
    /// The partition's error code in the last metadata (0 when none).
    pub error: i16,
}

/// A topic's partitions, or why it has none.
#[derive(Debug, Clone, Default)]
pub struct Topic {
    /// Partitions by index.
    pub partitions: Vec<Partition>,
    /// The topic's error code in the last metadata (0 when none).
    pub error: i16,
}

/// Brokers, topics and connections.
#[derive(Debug)]
pub struct Cluster {
    bootstrap: Vec<String>,
    options: ConnectOptions,
    brokers: HashMap<i32, String>,
    topics: HashMap<String, Topic>,
    conns: HashMap<i32, Connection>,
    /// A connection to a bootstrap address, before broker ids are known.
    seed: Option<Connection>,
    /// Create topics that do not exist when asked for their metadata.
    pub auto_create: bool,
}

impl Cluster {
    /// A cluster reached through `bootstrap` (`host:port` each).
    pub fn new(bootstrap: Vec<String>, options: ConnectOptions) -> Self {
        Cluster {
            bootstrap,
            options,
            brokers: HashMap::new(),
            topics: HashMap::new(),
            conns: HashMap::new(),
            seed: None,
            auto_create: true,
        }
    }

    /// The connection options (client id, timeout, SASL).
    pub fn options(&self) -> &ConnectOptions {
        &self.options
    }

    /// The topic as last fetched.
    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.get(name)
    }

    /// The address of broker `id`, when known.
    pub fn broker_addr(&self, id: i32) -> Option<&str> {
        self.brokers.get(&id).map(String::as_str)
    }

    /// Forgets every topic's metadata: the next [`Cluster::refresh`] asks again.
    pub fn invalidate(&mut self) {
        self.topics.clear();
    }

    /// Makes sure `topics` have metadata, asking the cluster for those
    /// that have none (or only errors).
    pub fn ensure<'a>(&mut self, topics: impl IntoIterator<Item = &'a str>) -> Result<(), Error> {
        let missing: Vec<String> = topics
            .into_iter()
            .filter(|t| {
                self.topics
                    .get(*t)
                    .is_none_or(|m| m.error != 0 || m.partitions.is_empty())
            })
            .map(str::to_owned)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        self.refresh(&missing)
    }

    /// Fetches metadata for `topics` from some broker.
    pub fn refresh(&mut self, topics: &[String]) -> Result<(), Error> {
        let req = m::MetadataRequest::default()
            .with_topics(Some(
                topics
                    .iter()
                    .map(|t| {
                        m::metadata_request::MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
                    })
                    .collect(),
            ))
            .with_allow_auto_topic_creation(self.auto_create);
        let resp = self.any_broker(|conn| conn.call(&req))?;
        self.brokers = resp
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        // Connections to brokers that left, or moved, are dropped.
        let brokers = &self.brokers;
        self.conns
            .retain(|id, c| brokers.get(id).is_some_and(|a| a == c.addr()));
        for t in resp.topics {
            let Some(name) = t.name else { continue };
            let mut partitions: Vec<Partition> = t
                .partitions
                .iter()
                .map(|p| Partition {
                    index: p.partition_index,
                    leader: p.leader_id.0,
                    error: p.error_code,
                })
                .collect();
            partitions.sort_by_key(|p| p.index);
            self.topics.insert(
                name.0.to_string(),
                Topic {
                    partitions,
                    error: t.error_code,
                },
            );
        }
        Ok(())
    }

    /// Creates `topic` with `partitions` partitions and `replication`
    /// replicas; one that exists already is left as it is.
    pub fn create_topic(
        &mut self,
        topic: &str,
        partitions: i32,
        replication: i16,
    ) -> Result<(), Error> {
        let req = m::CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![
                m::create_topics_request::CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                    .with_num_partitions(partitions)
                    .with_replication_factor(replication),
            ]);
        let resp = self.any_broker(|conn| conn.call(&req))?;
        for t in resp.topics {
            // TOPIC_ALREADY_EXISTS
            if t.error_code != 0 && t.error_code != 36 {
                return Err(Error::broker(
                    "cluster",
                    &format!("CreateTopics {topic}"),
                    t.error_code,
                ));
            }
        }
        self.topics.remove(topic);
        Ok(())
    }

    /// Runs `f` on a connection to any broker: a known one, else each
    /// bootstrap address in turn.
    pub fn any_broker<T>(
        &mut self,
        mut f: impl FnMut(&mut Connection) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut last = None;
        if let Some(id) = self.conns.keys().next().copied() {
            match self.conns.get_mut(&id).map(&mut f) {
                Some(Ok(v)) => return Ok(v),
                Some(Err(e)) => {
                    self.conns.remove(&id);
                    last = Some(e);
                }
                None => {}
            }
        }
        if let Some(conn) = self.seed.as_mut() {
            match f(conn) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    self.seed = None;
                    last = Some(e);
                }
            }
        }
        let addrs: Vec<String> = self
            .bootstrap
            .iter()
            .chain(self.brokers.values())
            .cloned()
            .collect();
        for addr in addrs {
            match Connection::open(&addr, &self.options) {
                Ok(mut conn) => match f(&mut conn) {
                    Ok(v) => {
                        self.seed = Some(conn);
                        return Ok(v);
                    }
                    Err(e) => last = Some(e),
                },
                Err(e) if e.is_denied() => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) => Error::NoBroker(e.to_string()),
            None => Error::NoBroker("no bootstrap address".into()),
        })
    }

    /// The connection to broker `id`, opened if needed.
    pub fn broker(&mut self, id: i32) -> Result<&mut Connection, Error> {
        if !self.conns.contains_key(&id) {
            let addr =
                self.brokers.get(&id).cloned().ok_or_else(|| {
                    Error::NoBroker(format!("broker {id} is not in the metadata"))
                })?;
            let conn = Connection::open(&addr, &self.options)?;
            self.conns.insert(id, conn);
        }
        self.conns
            .get_mut(&id)
            .ok_or_else(|| Error::NoBroker(format!("broker {id}")))
    }

    /// Drops the connection to broker `id` (after an I/O error).
    pub fn drop_broker(&mut self, id: i32) {
        self.conns.remove(&id);
    }

    /// Records a broker learned elsewhere (a group coordinator).
    pub fn add_broker(&mut self, id: BrokerId, host: &str, port: i32) {
        let addr = format!("{host}:{port}");
        if self.brokers.get(&id.0) != Some(&addr) {
            self.conns.remove(&id.0);
            self.brokers.insert(id.0, addr);
        }
    }
}
