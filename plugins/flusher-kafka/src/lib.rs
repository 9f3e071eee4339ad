//! `kafka`: produces events to Kafka over `wasi:sockets` (TCP to the
//! brokers in `grants.hosts` only), one record per event, and acks to the
//! host only once the brokers acked at the chosen level.
//!
//! Config:
//! - `brokers` (required): bootstrap `host:port`s; the brokers the
//!   cluster advertises must be granted too;
//! - `topic` (required): a template, `logs-{k8s.namespace.name}` (fields,
//!   then tags; `%Y %m %d %H %M` of the event's time);
//! - `key`: a field or tag whose value is the record key (default none).
//!   Keyed records go to `murmur2(key) % partitions`, as Java clients put
//!   them; records without a key go to one partition per batch and topic,
//!   the next batch to the next partition;
//! - `acks`: `all` (default), `1` or `0` (no answer: delivered once
//!   written to the socket);
//! - `compression`: `lz4` (default), `zstd`, `snappy`, `gzip` or `none`,
//!   run natively by the host;
//! - `encoding`: `json` (default: the document the other flushers write:
//!   `timestamp`, tags, typed fields, `message`) or `raw` (the body);
//! - `max_message_bytes` (default 1,000,000: under the broker's default
//!   `message.max.bytes`): largest record batch; `max_request_bytes`
//!   (default 4 MiB); `timeout_ms` (default 30,000): how long the broker
//!   may wait for replicas;
//! - `client_id` (default `gleaner`);
//! - `sasl`: `{mechanism: PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512,
//!   username, password}` (use `${...}` for the password);
//! - `tls` (default false): speak TLS to every broker (Kafka's `SSL` and
//!   `SASL_SSL` listeners). The host makes the connections
//!   (`gleaner:tls`) with the entry's `tls:` block (`ca_file`,
//!   `cert_file`/`key_file` for mTLS, `verify`).
//!
//! Answers: a batch a broker refuses for a reason that passes (leader
//! moved, not enough replicas, timeout) is retried within the call after
//! a metadata refresh, twice, then handed back to the host to retry with
//! its backoff; records the broker names as invalid are rejected alone and
//! the rest of their batch retried; a topic that cannot exist, a record
//! too large or an authorization failure rejects. Counters
//! `items_retried`, `items_rejected`, `records_sent`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gleaner_kafka::cluster::Cluster;
use gleaner_kafka::produce::{Outcome, PartitionRecords, Producer, ProducerOptions};
use gleaner_kafka::records::{Outgoing, partition_for_key};
use gleaner_kafka::sasl::{Mechanism, Sasl};
use gleaner_kafka::wire::{ConnectOptions, Connector, Stream};
use gleaner_kafka::{Codecs, Compression};
use gleaner_sdk::host::{self, Codec};
use gleaner_sdk::json::{Layout, write_with};
use gleaner_sdk::time::Template;
use gleaner_sdk::tls::TlsStream;
use gleaner_sdk::{Batch, FlushError, ItemFlusher, Report};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    brokers: Vec<String>,
    topic: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    acks: Acks,
    #[serde(default)]
    compression: CompressionName,
    #[serde(default)]
    encoding: Encoding,
    #[serde(default = "default_max_message_bytes")]
    max_message_bytes: usize,
    #[serde(default = "default_max_request_bytes")]
    max_request_bytes: usize,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u32,
    #[serde(default = "default_client_id")]
    client_id: String,
    #[serde(default)]
    sasl: Option<SaslConfig>,
    #[serde(default)]
    tls: bool,
}

#[derive(Debug, Default, Clone, Copy, serde::Deserialize)]
enum Acks {
    #[default]
    #[serde(rename = "all", alias = "-1")]
    All,
    #[serde(rename = "1")]
    Leader,
    #[serde(rename = "0")]
    None,
}

#[derive(Debug, Default, Clone, Copy, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum CompressionName {
    None,
    Gzip,
    Snappy,
    #[default]
    Lz4,
    Zstd,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum Encoding {
    #[default]
    Json,
    Raw,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SaslConfig {
    mechanism: String,
    username: String,
    password: String,
}

fn default_max_message_bytes() -> usize {
    1_000_000
}

fn default_max_request_bytes() -> usize {
    4 << 20
}

fn default_timeout_ms() -> u32 {
    30_000
}

fn default_client_id() -> String {
    "gleaner".into()
}

/// The host's native codecs, in Kafka's formats.
struct HostCodecs;

impl Codecs for HostCodecs {
    fn compress(&self, codec: Compression, data: &[u8]) -> Result<Vec<u8>, String> {
        let c = match codec {
            Compression::Gzip => Codec::Gzip,
            Compression::Snappy => Codec::Snappy,
            Compression::Lz4 => Codec::Lz4,
            Compression::Zstd => Codec::Zstd,
            Compression::None => return Ok(data.to_vec()),
        };
        host::compress(c, data)
    }

    fn decompress(&self, _: Compression, _: &[u8]) -> Result<Vec<u8>, String> {
        Err("a producer does not decompress".into())
    }
}

/// TLS made by the host (`gleaner:tls`), with the entry's `tls:` block.
struct HostTls;

impl Connector for HostTls {
    fn connect(&self, addr: &str, timeout: Duration) -> std::io::Result<Box<dyn Stream>> {
        Ok(Box::new(TlsStream::connect_addr(addr, timeout)?))
    }
}

/// The flusher.
pub struct Kafka {
    producer: Producer,
    topic: Template,
    key: Option<String>,
    encoding: Encoding,
    /// Per topic, the partition the next batch's unkeyed records go to.
    next_partition: HashMap<String, usize>,
}

impl ItemFlusher for Kafka {
    fn init(config: &str) -> Result<Self, String> {
        let c: Config = gleaner_sdk::parse_config(config)?;
        if c.brokers.is_empty() {
            return Err("brokers: at least one `host:port` is needed".into());
        }
        for (i, b) in c.brokers.iter().enumerate() {
            if !b
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            {
                return Err(format!("brokers[{i}]: `{b}` is not `host:port`"));
            }
        }
        let topic = Template::parse(&c.topic).map_err(|e| format!("topic: {e}"))?;
        let sasl = match c.sasl {
            None => None,
            Some(s) => Some(Sasl {
                mechanism: Mechanism::parse(&s.mechanism).ok_or_else(|| {
                    format!(
                        "sasl.mechanism: `{}` is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                        s.mechanism
                    )
                })?,
                username: s.username,
                password: s.password,
            }),
        };
        if c.max_message_bytes < 1024 {
            return Err("max_message_bytes: must be at least 1024".into());
        }
        let mut options = ConnectOptions::new(
            c.client_id,
            Duration::from_millis(u64::from(c.timeout_ms) + 5_000),
        );
        options.sasl = sasl;
        if c.tls {
            options.connector = Arc::new(HostTls);
        }
        let producer = Producer::new(
            Cluster::new(c.brokers, options),
            ProducerOptions {
                acks: match c.acks {
                    Acks::All => -1,
                    Acks::Leader => 1,
                    Acks::None => 0,
                },
                timeout_ms: c.timeout_ms as i32,
                compression: match c.compression {
                    CompressionName::None => Compression::None,
                    CompressionName::Gzip => Compression::Gzip,
                    CompressionName::Snappy => Compression::Snappy,
                    CompressionName::Lz4 => Compression::Lz4,
                    CompressionName::Zstd => Compression::Zstd,
                },
                max_batch_bytes: c.max_message_bytes,
                max_request_bytes: c.max_request_bytes.max(c.max_message_bytes),
                attempts: 3,
            },
        );
        Ok(Kafka {
            producer,
            topic,
            key: c.key,
            encoding: c.encoding,
            next_partition: HashMap::new(),
        })
    }

    fn flush(&mut self, input: Batch) -> Result<Report, FlushError> {
        let values = self.values(&input);
        // Each event's topic, as an index into the batch's distinct topics.
        let mut topics: Vec<String> = Vec::new();
        let mut topic_of: Vec<u32> = Vec::with_capacity(input.len());
        if self.topic.is_constant() {
            let mut text = String::new();
            if let Some(first) = input.events().next() {
                self.topic.render(&input, &first, &mut text);
                topics.push(text);
            }
            topic_of.resize(input.len(), 0);
        } else {
            let mut index: HashMap<String, u32> = HashMap::new();
            let mut text = String::new();
            for event in input.events() {
                self.topic.render(&input, &event, &mut text);
                let i = match index.get(text.as_str()) {
                    Some(&i) => i,
                    None => {
                        topics.push(text.clone());
                        index.insert(text.clone(), topics.len() as u32 - 1);
                        topics.len() as u32 - 1
                    }
                };
                topic_of.push(i);
            }
        }
        if let Err(e) = self
            .producer
            .cluster
            .ensure(topics.iter().map(String::as_str))
        {
            return Err(if e.is_denied() {
                FlushError::Rejected(e.to_string())
            } else {
                FlushError::Retryable(e.to_string())
            });
        }
        // Per topic: its partitions (empty: none usable now, with the
        // topic's error) and the partition this batch's unkeyed records take.
        let meta: Vec<(Vec<i32>, i16, usize)> = topics
            .iter()
            .map(|t| {
                let m = self.producer.cluster.topic(t);
                let parts =
                    m.map_or_else(Vec::new, |m| m.partitions.iter().map(|p| p.index).collect());
                let sticky = self.next_partition.get(t).copied().unwrap_or(0);
                (parts, m.map_or(0, |m| m.error), sticky)
            })
            .collect();
        let mut groups: Vec<PartitionRecords> = Vec::new();
        let mut group_of: HashMap<(u32, i32), usize> = HashMap::new();
        let mut events_of: Vec<Vec<usize>> = Vec::new();
        let mut report = Report::default();
        // Why events were held back before sending: a topic not there yet.
        let mut unready: Option<String> = None;
        for event in input.events() {
            let i = event.index();
            let t = topic_of[i];
            let (parts, error, sticky) = &meta[t as usize];
            if parts.is_empty() {
                let why = format!(
                    "topic {} has no partitions ({})",
                    topics[t as usize],
                    gleaner_kafka::error_name(*error)
                );
                if *error != 0 && !gleaner_kafka::retriable(*error) {
                    report.reject(i, why);
                } else {
                    report.retry(i);
                    unready.get_or_insert(why);
                }
                continue;
            }
            let key = self
                .key
                .as_deref()
                .and_then(|k| event.field(k).or_else(|| input.tag(k)));
            let slot = match key {
                Some(k) => partition_for_key(k.as_bytes(), parts.len()),
                None => sticky % parts.len(),
            };
            let partition = parts[slot];
            let g = *group_of.entry((t, partition)).or_insert_with(|| {
                groups.push(PartitionRecords {
                    topic: topics[t as usize].clone(),
                    partition,
                    records: Vec::with_capacity(input.len()),
                });
                events_of.push(Vec::with_capacity(input.len()));
                groups.len() - 1
            });
            groups[g].records.push(Outgoing {
                timestamp_ms: event.timestamp().div_euclid(1_000_000),
                key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
                value: values[i].clone(),
                headers: Vec::new(),
            });
            events_of[g].push(i);
        }
        for (t, (_, _, sticky)) in topics.iter().zip(&meta) {
            self.next_partition
                .insert(t.clone(), sticky.wrapping_add(1));
        }
        let mut delivered = 0;
        let mut retry_reason = unready;
        for (g, range, outcome) in self.producer.produce(&groups, &HostCodecs) {
            let events = &events_of[g][range];
            match outcome {
                Outcome::Delivered => delivered += events.len(),
                Outcome::Retry(why) => {
                    events.iter().for_each(|&i| {
                        report.retry(i);
                    });
                    retry_reason.get_or_insert(why);
                }
                Outcome::Rejected(why) => events.iter().for_each(|&i| {
                    report.reject(i, why.clone());
                }),
                Outcome::RejectedRecords(bad) => {
                    for (j, &i) in events.iter().enumerate() {
                        match bad.iter().find(|(b, _)| *b == j) {
                            Some((_, why)) => report.reject(i, why.clone()),
                            None => report.retry(i),
                        };
                    }
                }
            }
        }
        host::counter_add("records_sent", delivered as u64);
        // Nothing went out and nothing was refused: one error for the
        // batch, with its reason, and the host's backoff.
        if delivered == 0
            && report.rejections().is_empty()
            && let Some(why) = retry_reason
        {
            return Err(FlushError::Retryable(why));
        }
        host::counter_add("items_retried", report.retried().len() as u64);
        host::counter_add("items_rejected", report.rejections().len() as u64);
        Ok(report)
    }
}

impl Kafka {
    /// Each event's record value.
    fn values(&self, input: &Batch) -> Vec<Bytes> {
        match self.encoding {
            Encoding::Raw => {
                // One copy of the body column, sliced per event.
                let (bodies, ends) = input.body_column();
                let all = Bytes::copy_from_slice(bodies);
                let mut start = 0;
                ends.iter()
                    .map(|&end| {
                        let end = (end as usize).clamp(start, all.len());
                        let v = all.slice(start..end);
                        start = end;
                        v
                    })
                    .collect()
            }
            Encoding::Json => {
                let mut out = Vec::with_capacity(input.body_bytes() * 2);
                let mut starts = Vec::with_capacity(input.len() + 1);
                write_with(input, &mut out, &Layout::default(), |_, out| {
                    starts.push(out.len())
                });
                starts.push(out.len());
                let all = Bytes::from(out);
                starts
                    .windows(2)
                    // Each document without its `\n`.
                    .map(|w| all.slice(w[0]..w[1].saturating_sub(1).max(w[0])))
                    .collect()
            }
        }
    }
}

gleaner_sdk::export_item_flusher!(Kafka);
