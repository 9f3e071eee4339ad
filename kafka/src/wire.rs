//! One connection to one broker: size-prefixed frames, request headers
//! with correlation ids, API versions negotiated once (`ApiVersions`), and
//! SASL when configured. Owns the byte stream (plain TCP, or what the
//! caller's [`Connector`] opens: TLS); knows nothing of topics, partitions
//! or records.

use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{self as m, ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

use crate::Error;
use crate::sasl::Sasl;

/// A request this client sends, with the response it decodes and the
/// highest version of it the client was written for (the fields it sets
/// exist up to there; newer versions change their shape).
pub trait Call: Encodable + HeaderVersion {
    /// The API.
    const KEY: ApiKey;
    /// The newest version this client speaks.
    const MAX: i16;
    /// The oldest version this client speaks.
    const MIN: i16;
    /// The response.
    type Response: Decodable;
}

macro_rules! calls {
    ($($req:ident => $resp:ident, $key:ident, $min:literal..=$max:literal;)*) => {
        $(impl Call for m::$req {
            const KEY: ApiKey = ApiKey::$key;
            const MIN: i16 = $min;
            const MAX: i16 = $max;
            type Response = m::$resp;
        })*
    };
}

calls! {
    ApiVersionsRequest => ApiVersionsResponse, ApiVersions, 0..=3;
    SaslHandshakeRequest => SaslHandshakeResponse, SaslHandshake, 1..=1;
    SaslAuthenticateRequest => SaslAuthenticateResponse, SaslAuthenticate, 0..=2;
    MetadataRequest => MetadataResponse, Metadata, 4..=9;
    ProduceRequest => ProduceResponse, Produce, 3..=9;
    FetchRequest => FetchResponse, Fetch, 4..=11;
    ListOffsetsRequest => ListOffsetsResponse, ListOffsets, 1..=7;
    FindCoordinatorRequest => FindCoordinatorResponse, FindCoordinator, 1..=3;
    JoinGroupRequest => JoinGroupResponse, JoinGroup, 2..=7;
    SyncGroupRequest => SyncGroupResponse, SyncGroup, 1..=5;
    HeartbeatRequest => HeartbeatResponse, Heartbeat, 1..=4;
    LeaveGroupRequest => LeaveGroupResponse, LeaveGroup, 1..=2;
    OffsetCommitRequest => OffsetCommitResponse, OffsetCommit, 2..=8;
    OffsetFetchRequest => OffsetFetchResponse, OffsetFetch, 1..=7;
    CreateTopicsRequest => CreateTopicsResponse, CreateTopics, 2..=4;
}

/// Largest response frame accepted (a fetch is bounded by its request;
/// this guards against a garbled length).
const MAX_FRAME: usize = 512 << 20;

/// A byte stream to a broker: a TCP socket, or TLS over one.
pub trait Stream: Read + Write + Send {}

impl<T: Read + Write + Send> Stream for T {}

/// Opens the byte stream to a broker's `host:port`.
pub trait Connector: Send + Sync {
    /// Connects to `addr`; reads and writes should give up after
    /// `timeout` where the platform allows.
    fn connect(&self, addr: &str, timeout: Duration) -> std::io::Result<Box<dyn Stream>>;
}

/// Plain TCP (Kafka's `PLAINTEXT` and `SASL_PLAINTEXT` listeners).
#[derive(Debug, Clone, Copy, Default)]
pub struct Tcp;

impl Tcp {
    /// A connected socket with `timeout` on reads and writes (where the
    /// platform has socket timeouts: WASI 0.2 has none, and there the
    /// host's own call deadline bounds a stuck broker) and no Nagle delay.
    pub fn socket(addr: &str, timeout: Duration) -> std::io::Result<TcpStream> {
        let stream = TcpStream::connect(addr)?;
        let _ = stream.set_read_timeout(Some(timeout));
        let _ = stream.set_write_timeout(Some(timeout));
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

impl Connector for Tcp {
    fn connect(&self, addr: &str, timeout: Duration) -> std::io::Result<Box<dyn Stream>> {
        Ok(Box::new(Tcp::socket(addr, timeout)?))
    }
}

/// How to reach brokers.
#[derive(Clone)]
pub struct ConnectOptions {
    /// Sent as the client id in every request header.
    pub client_id: String,
    /// Socket read and write timeout (where the platform supports it).
    pub timeout: Duration,
    /// SASL credentials, when the listener needs them.
    pub sasl: Option<Sasl>,
    /// Opens connections: [`Tcp`], or TLS over it.
    pub connector: Arc<dyn Connector>,
}

impl ConnectOptions {
    /// Plain TCP, no SASL.
    pub fn new(client_id: impl Into<String>, timeout: Duration) -> Self {
        ConnectOptions {
            client_id: client_id.into(),
            timeout,
            sasl: None,
            connector: Arc::new(Tcp),
        }
    }
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("client_id", &self.client_id)
            .field("timeout", &self.timeout)
            .field("sasl", &self.sasl)
            .finish_non_exhaustive()
    }
}

/// A request sent whose response is still to be read.
#[derive(Debug, Clone, Copy)]
pub struct Pending {
    correlation: i32,
    version: i16,
}

/// An open, authenticated connection.
pub struct Connection {
    addr: String,
    stream: Box<dyn Stream>,
    connector: Arc<dyn Connector>,
    timeout: Duration,
    client_id: StrBytes,
    correlation: i32,
    /// Per API key, the newest version both sides speak.
    versions: HashMap<i16, (i16, i16)>,
    out: BytesMut,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .field("correlation", &self.correlation)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects to `addr` (`host:port`), negotiates versions and
    /// authenticates.
    pub fn open(addr: &str, options: &ConnectOptions) -> Result<Self, Error> {
        let stream = options
            .connector
            .connect(addr, options.timeout)
            .map_err(|e| Error::Connect {
                addr: addr.to_owned(),
                source: e,
            })?;
        let mut conn = Connection {
            addr: addr.to_owned(),
            stream,
            connector: options.connector.clone(),
            timeout: options.timeout,
            client_id: StrBytes::from_string(options.client_id.clone()),
            correlation: 0,
            versions: HashMap::new(),
            out: BytesMut::with_capacity(64 << 10),
        };
        conn.negotiate()?;
        if let Some(sasl) = &options.sasl {
            sasl.authenticate(&mut conn)?;
        }
        Ok(conn)
    }

    /// The address this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn negotiate(&mut self) -> Result<(), Error> {
        let req = m::ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("gleaner"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        // v3 first; a broker that does not know it answers in v0 with
        // UNSUPPORTED_VERSION and its ranges, which is all we need.
        let resp: m::ApiVersionsResponse = match self.call_at(&req, 3) {
            Ok(r) => r,
            Err(Error::Protocol { .. }) => {
                self.reopen()?;
                self.call_at(&req, 0)?
            }
            Err(e) => return Err(e),
        };
        if resp.error_code != 0 && resp.api_keys.is_empty() {
            return Err(Error::broker(&self.addr, "ApiVersions", resp.error_code));
        }
        for k in resp.api_keys {
            self.versions
                .insert(k.api_key, (k.min_version, k.max_version));
        }
        Ok(())
    }

    fn reopen(&mut self) -> Result<(), Error> {
        self.stream = self
            .connector
            .connect(&self.addr, self.timeout)
            .map_err(|e| Error::Connect {
                addr: self.addr.clone(),
                source: e,
            })?;
        Ok(())
    }

    /// The version of `C` to use with this broker: the newest both speak.
    pub fn version<C: Call>(&self) -> Result<i16, Error> {
        let (min, max) = self
            .versions
            .get(&(C::KEY as i16))
            .copied()
            .ok_or_else(|| Error::Unsupported {
                addr: self.addr.clone(),
                api: format!("{:?}", C::KEY),
            })?;
        let v = max.min(C::MAX);
        if v < min.max(C::MIN) {
            return Err(Error::Unsupported {
                addr: self.addr.clone(),
                api: format!(
                    "{:?} v{}..={} (broker {min}..={max})",
                    C::KEY,
                    C::MIN,
                    C::MAX
                ),
            });
        }
        Ok(v)
    }

    /// Sends `req` at the negotiated version and reads its response.
    pub fn call<C: Call>(&mut self, req: &C) -> Result<C::Response, Error> {
        let v = self.version::<C>()?;
        self.call_at(req, v)
    }

    /// Sends `req` without waiting for a response (a produce with
    /// `acks: 0`, which the broker does not answer).
    pub fn send_only<C: Call>(&mut self, req: &C) -> Result<(), Error> {
        let v = self.version::<C>()?;
        self.write_request(req, v).map(|_| ())
    }

    fn write_request<C: Call>(&mut self, req: &C, version: i16) -> Result<i32, Error> {
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(C::KEY as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(self.client_id.clone()));
        self.out.clear();
        self.out.extend_from_slice(&[0; 4]);
        header
            .encode(&mut self.out, C::header_version(version))
            .and_then(|()| req.encode(&mut self.out, version))
            .map_err(|e| Error::Encode(e.to_string()))?;
        let len = (self.out.len() - 4) as u32;
        self.out[..4].copy_from_slice(&len.to_be_bytes());
        self.stream
            .write_all(&self.out)
            .map_err(|e| self.io("send", e))?;
        Ok(self.correlation)
    }

    fn call_at<C: Call>(&mut self, req: &C, version: i16) -> Result<C::Response, Error> {
        let correlation = self.write_request(req, version)?;
        self.receive::<C>(Pending {
            correlation,
            version,
        })
    }

    /// Sends `req` at the negotiated version; read its response later
    /// with [`Connection::receive`]. Responses come back in the order the
    /// requests were sent, so several may be in flight.
    pub fn send<C: Call>(&mut self, req: &C) -> Result<Pending, Error> {
        let version = self.version::<C>()?;
        let correlation = self.write_request(req, version)?;
        Ok(Pending {
            correlation,
            version,
        })
    }

    /// Reads the response to a request sent with [`Connection::send`].
    pub fn receive<C: Call>(&mut self, pending: Pending) -> Result<C::Response, Error> {
        let Pending {
            correlation,
            version,
        } = pending;
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .map_err(|e| self.io("receive", e))?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_FRAME {
            return Err(self.protocol(format!("response of {len} bytes")));
        }
        let mut frame = vec![0u8; len];
        self.stream
            .read_exact(&mut frame)
            .map_err(|e| self.io("receive", e))?;
        let mut buf = Bytes::from(frame);
        let header = ResponseHeader::decode(&mut buf, C::KEY.response_header_version(version))
            .map_err(|e| self.protocol(e.to_string()))?;
        if header.correlation_id != correlation {
            return Err(self.protocol(format!(
                "correlation id {} where {correlation} was expected",
                header.correlation_id
            )));
        }
        C::Response::decode(&mut buf, version)
            .map_err(|e| self.protocol(format!("{:?} v{version} response: {e}", C::KEY)))
    }

    fn io(&self, what: &str, source: std::io::Error) -> Error {
        Error::Io {
            addr: self.addr.clone(),
            what: what.to_owned(),
            source,
        }
    }

    fn protocol(&self, message: String) -> Error {
        Error::Protocol {
            addr: self.addr.clone(),
            message,
        }
    }
}
