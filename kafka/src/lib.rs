//! # gleaner-kafka: the Kafka client Gleaner's flusher and input share
//!
//! Blocking, over `std::net`, so the same code runs natively (the `kafka`
//! input) and inside a Wasm component over `wasi:sockets` (the
//! `builtin:kafka` flusher). Messages and record batches are
//! `kafka-protocol`'s, generated from Kafka's own schemas; this crate adds
//! what a client does with them.
//!
//! Map: [`wire`] (a connection: framing, versions, SASL via [`sasl`]),
//! [`cluster`] (metadata: brokers, leaders, partitions), [`records`]
//! (record batches with the caller's codecs, the Java partitioner),
//! [`produce`] (a producer that reports per partition), [`group`]
//! (consumer group membership and assignment), [`consume`] (offsets and
//! fetches).
//!
//! Compression is the caller's ([`Codecs`]): the flusher calls the host's
//! native codecs, the input links them.

pub mod cluster;
pub mod consume;
pub mod group;
pub mod produce;
pub mod records;
pub mod sasl;
pub mod wire;

pub use kafka_protocol::records::Compression;

/// Compression codecs the caller provides, in Kafka's formats: gzip (RFC
/// 1952), LZ4 frame with independent blocks, zstd frame, and raw snappy
/// blocks (this crate adds the xerial framing Java clients expect).
pub trait Codecs {
    /// Compresses `data`; `Compression::Snappy` is one raw block.
    fn compress(&self, codec: Compression, data: &[u8]) -> Result<Vec<u8>, String>;
    /// Decompresses `data`; `Compression::Snappy` is one raw block.
    fn decompress(&self, codec: Compression, data: &[u8]) -> Result<Vec<u8>, String>;
}

/// What went wrong talking to Kafka.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No connection could be made.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The connection failed while in use.
    #[error("{what} to {addr} failed: {source}")]
    Io {
        addr: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The broker sent something this client cannot read.
    #[error("{addr} answered something unreadable: {message}")]
    Protocol { addr: String, message: String },
    /// A request could not be encoded.
    #[error("cannot encode a request: {0}")]
    Encode(String),
    /// The broker does not speak a version this client speaks.
    #[error("{addr} does not support {api}")]
    Unsupported { addr: String, api: String },
    /// The broker answered with an error code.
    #[error("{addr} answered {api} with {code} ({name})")]
    Broker {
        addr: String,
        api: String,
        code: i16,
        name: String,
    },
    /// SASL authentication failed.
    #[error("SASL authentication with {addr} failed: {message}")]
    Auth { addr: String, message: String },
    /// No broker of the list could be reached.
    #[error("no broker reachable ({0})")]
    NoBroker(String),
    /// Compression or decompression failed.
    #[error("{0}")]
    Codec(String),
}

impl Error {
    /// An error code from `api`'s response.
    pub fn broker(addr: &str, api: &str, code: i16) -> Self {
        Error::Broker {
            addr: addr.to_owned(),
            api: api.to_owned(),
            code,
            name: error_name(code),
        }
    }

    /// True for errors of the connection (the broker may be back soon).
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. } | Error::Io { .. } | Error::NoBroker(_)
        )
    }

    /// True when the error is the sandbox (or the OS) refusing the
    /// connection: not worth retrying.
    pub fn is_denied(&self) -> bool {
        match self {
            Error::Connect { source, .. } => source.kind() == std::io::ErrorKind::PermissionDenied,
            _ => false,
        }
    }
}

/// Groups `(topic, item)` pairs by topic, topics in name order (requests
/// list partitions under their topic).
pub(crate) fn by_topic<'a, T>(
    items: impl IntoIterator<Item = (&'a str, T)>,
) -> std::collections::BTreeMap<&'a str, Vec<T>> {
    let mut out: std::collections::BTreeMap<&str, Vec<T>> = std::collections::BTreeMap::new();
    for (topic, item) in items {
        out.entry(topic).or_default().push(item);
    }
    out
}

/// Kafka's name for an error code, e.g. `NOT_LEADER_OR_FOLLOWER`.
pub fn error_name(code: i16) -> String {
    use kafka_protocol::error::ParseResponseErrorCode;
    match code.err() {
        Some(e) => format!("{e:?}"),
        None => "NONE".to_owned(),
    }
}

/// Error codes after which a request succeeds once metadata is refreshed
/// or the cluster settles: a leader moved, a replica caught up, a
/// coordinator is loading.
pub fn retriable(code: i16) -> bool {
    matches!(
        code,
        2   // CORRUPT_MESSAGE (in transit)
        | 3 // UNKNOWN_TOPIC_OR_PARTITION (being created)
        | 5 // LEADER_NOT_AVAILABLE
        | 6 // NOT_LEADER_OR_FOLLOWER
        | 7 // REQUEST_TIMED_OUT
        | 13 // NETWORK_EXCEPTION
        | 14 // COORDINATOR_LOAD_IN_PROGRESS
        | 15 // COORDINATOR_NOT_AVAILABLE
        | 16 // NOT_COORDINATOR
        | 19 // NOT_ENOUGH_REPLICAS
        | 20 // NOT_ENOUGH_REPLICAS_AFTER_APPEND
        | 56 // KAFKA_STORAGE_ERROR
        | 74 // FENCED_LEADER_EPOCH
        | 75 // UNKNOWN_LEADER_EPOCH
        | 89 // THROTTLING_QUOTA_EXCEEDED
    )
}

/// Codes that mean the cluster's metadata (leaders) changed.
pub fn stale_metadata(code: i16) -> bool {
    matches!(code, 3 | 5 | 6 | 74 | 75)
}
