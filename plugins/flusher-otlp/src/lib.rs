//! `otlp`: ships events as OpenTelemetry logs over OTLP/HTTP (`/v1/logs`),
//! protobuf (default) or JSON, to an OpenTelemetry Collector or any
//! backend that takes OTLP.
//!
//! Each batch is one `ResourceLogs`: its tags become resource attributes
//! named by the semantic conventions (`k8s.namespace` →
//! `k8s.namespace.name`, `k8s.owner.kind: Deployment` + `k8s.owner.name`
//! → `k8s.deployment.name`, `container.image` → `container.image.name`,
//! ...; `source.path` goes on each record as `log.file.path`), plus the
//! config's `resource:` attributes. Each event is a `LogRecord`: its time,
//! the time it was sent as observed time, severity number and text, the
//! body (the `message` field a parser made, else the line) as a string,
//! and its other fields as typed attributes (strings, ints,
//! doubles, bools; JSON arrays and objects as array and key-value list
//! values). Fields `trace_id` (32 hex digits) and `span_id` (16) fill the
//! record's trace context.
//!
//! Config:
//! - `url` (required): `http(s)://host:port` (its `host:port` must be in
//!   `grants.hosts`); `/v1/logs` is added unless the URL has a path;
//! - `encoding`: `protobuf` (default) or `json`;
//! - `compression`: `gzip` (default) or `none`;
//! - `resource`: more resource attributes (`service.name: checkout`);
//! - `scope`: the instrumentation scope name (default `gleaner`);
//! - `headers`: request headers (`authorization: "Bearer ${TOKEN}"`);
//! - `max_bytes`: largest request before compression (default 4 MiB).
//!
//! Answers as the OTLP specification says: 200 delivered, with a
//! `partial_success` counted in `records_rejected` and logged (the
//! specification forbids resending); 429, 502, 503, 504 (and 401, 403,
//! 408: a credential gets fixed) retried; any other status rejects the
//! batch with the server's message.

mod encode;

use std::collections::BTreeMap;

use gleaner_sdk::http::{Compression, Target, parse_url};
use gleaner_sdk::{Batch, FlushError, ItemFlusher, Report};

use crate::encode::{Encoder, Encoding};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    url: String,
    #[serde(default)]
    encoding: Encoding,
    #[serde(default = "default_compression")]
    compression: Compression,
    #[serde(default)]
    resource: BTreeMap<String, String>,
    #[serde(default = "default_scope")]
    scope: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default = "default_max_bytes")]
    max_bytes: usize,
}

fn default_scope() -> String {
    "gleaner".into()
}

fn default_max_bytes() -> usize {
    4 << 20
}

fn default_compression() -> Compression {
    Compression::Gzip
}

/// The flusher.
pub struct Otlp {
    target: Target,
    headers: Vec<(String, Vec<u8>)>,
    compression: Compression,
    encoder: Encoder,
}

impl ItemFlusher for Otlp {
    fn init(config: &str) -> Result<Self, String> {
        let c: Config = gleaner_sdk::parse_config(config)?;
        let mut target = parse_url(&c.url)?;
        if target.path == "/" {
            target.path = "/v1/logs".into();
        }
        let content_type = match c.encoding {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        };
        let mut headers = gleaner_sdk::http::headers(c.headers, content_type);
        c.compression.add_header(&mut headers);
        if c.max_bytes == 0 {
            return Err("max_bytes: must be above zero".into());
        }
        Ok(Otlp {
            target,
            headers,
            compression: c.compression,
            encoder: Encoder::new(c.encoding, c.resource, c.scope, c.max_bytes),
        })
    }

    fn flush(&mut self, input: Batch) -> Result<Report, FlushError> {
        let observed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let requests = self.encoder.encode(&input, observed);
        gleaner_sdk::deliver_each(
            &requests,
            |r| r.events.clone().collect(),
            |request, _| self.send(&request.body),
        )
    }
}

impl Otlp {
    /// Posts one request; counts and logs a partial success.
    fn send(&self, body: &[u8]) -> Result<(), FlushError> {
        let body = self.compression.apply(body)?;
        let (status, text) =
            gleaner_sdk::http::post_bytes(&self.target, &self.headers, &body, 1 << 20)?;
        let answer = encode::read_answer(self.encoder.encoding(), status, &text)?;
        if answer.rejected > 0 || !answer.message.is_empty() {
            gleaner_sdk::host::counter_add("records_rejected", answer.rejected);
            gleaner_sdk::host::warn(&format!(
                "the destination took the request but rejected {} records: {}",
                answer.rejected, answer.message
            ));
        }
        Ok(())
    }
}

gleaner_sdk::export_item_flusher!(Otlp);
