//! `loki`: ships events to Grafana Loki's push API
//! (`/loki/api/v1/push`), protobuf and snappy by default or JSON, and
//! answers the host stream by stream: when Loki refuses a stream's entries
//! (too old, too new, out of order, limits: a `400` naming the stream),
//! only that stream's events are dead-lettered with Loki's reason; the
//! other streams of the request were taken. `429` and `5xx` retry.
//!
//! Config:
//! - `url` (required): Loki, `http(s)://host:port` (its `host:port` must be
//!   in `grants.hosts`); the push path is added unless the URL has a path;
//! - `labels`: label name → template (`{name}` is a field or tag, `%Y`... the
//!   time), default `{job: gleaner}`. Each label keeps at most
//!   `max_label_values` distinct values (default 1000): later new values
//!   become `overflow` (counted in `label_values_capped`, logged once per
//!   label), so one bad template cannot flood Loki with streams;
//! - `structured_metadata`: field names sent as structured metadata
//!   (Loki 3) instead of in the line;
//! - `line_format`: `json` (default: the event as the other flushers write
//!   it, without its time, which is the entry's) or `body` (the raw line);
//! - `remove_label_fields`: leave the fields used as labels out of JSON
//!   lines (default false);
//! - `tenant_id`: the `X-Scope-OrgID` header (multi-tenant Loki);
//! - `user` and `password` (basic auth), `headers`;
//! - `encoding`: `protobuf` (default, snappy-compressed) or `json`;
//! - `compression` (JSON only): `none` (default) or `gzip`;
//! - `max_bytes`: largest request before compression (default 1 MiB; a
//!   batch is split into several requests).
//!
//! Entries are sorted by time within each stream. Counters:
//! `items_retried`, `items_rejected`, `label_values_capped`.

mod push;

use std::collections::BTreeMap;

use gleaner_sdk::host::Codec;
use gleaner_sdk::http::{Compression, Target, basic_auth, parse_url};
use gleaner_sdk::{Batch, FlushError, ItemFlusher, Report};

use crate::push::{Encoding, LineFormat};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    url: String,
    #[serde(default = "default_labels")]
    labels: BTreeMap<String, String>,
    #[serde(default = "default_max_label_values")]
    max_label_values: usize,
    #[serde(default)]
    structured_metadata: Vec<String>,
    #[serde(default)]
    line_format: LineFormat,
    #[serde(default)]
    remove_label_fields: bool,
    #[serde(default)]
    tenant_id: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    encoding: Encoding,
    #[serde(default)]
    compression: Compression,
    #[serde(default = "default_max_bytes")]
    max_bytes: usize,
}

fn default_labels() -> BTreeMap<String, String> {
    BTreeMap::from([("job".into(), "gleaner".into())])
}

fn default_max_label_values() -> usize {
    1000
}

fn default_max_bytes() -> usize {
    1 << 20
}

/// The flusher.
pub struct Loki {
    target: Target,
    headers: Vec<(String, Vec<u8>)>,
    codec: Option<Codec>,
    push: push::Encoder,
}

impl ItemFlusher for Loki {
    fn init(config: &str) -> Result<Self, String> {
        let c: Config = gleaner_sdk::parse_config(config)?;
        let mut target = parse_url(&c.url)?;
        if target.path == "/" {
            target.path = "/loki/api/v1/push".into();
        }
        let content_type = match c.encoding {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        };
        let mut headers = gleaner_sdk::http::headers(c.headers, content_type);
        if let Some(tenant) = &c.tenant_id {
            headers.push(("x-scope-orgid".into(), tenant.clone().into_bytes()));
        }
        match (&c.user, &c.password) {
            (Some(user), Some(password)) => headers.push(basic_auth(user, password)),
            (None, None) => {}
            _ => return Err("user, password: give both".into()),
        }
        let codec = match (c.encoding, c.compression) {
            (Encoding::Protobuf, Compression::None) => Some(Codec::Snappy),
            (Encoding::Protobuf, Compression::Gzip) => {
                return Err(
                    "compression: protobuf pushes are always snappy; gzip is for `encoding: json`"
                        .into(),
                );
            }
            (Encoding::Json, Compression::Gzip) => Some(Codec::Gzip),
            (Encoding::Json, Compression::None) => None,
        };
        if codec == Some(Codec::Gzip) {
            headers.push(("content-encoding".into(), b"gzip".to_vec()));
        }
        if c.max_bytes == 0 {
            return Err("max_bytes: must be above zero".into());
        }
        if c.max_label_values == 0 {
            return Err("max_label_values: must be above zero".into());
        }
        let push = push::Encoder::new(
            &c.labels,
            c.max_label_values,
            c.structured_metadata,
            c.line_format,
            c.remove_label_fields,
            c.encoding,
            c.max_bytes,
        )?;
        Ok(Loki {
            target,
            headers,
            codec,
            push,
        })
    }

    fn flush(&mut self, input: Batch) -> Result<Report, FlushError> {
        let requests = self.push.encode(&input);
        let capped = self.push.take_capped();
        for label in &capped.newly_capped {
            gleaner_sdk::host::warn(&format!(
                "label `{label}` reached max_label_values distinct values: new values are sent as `overflow`"
            ));
        }
        gleaner_sdk::host::counter_add("label_values_capped", capped.values);
        gleaner_sdk::deliver_each(
            &requests,
            |r| r.events().map(|i| i as usize).collect(),
            |request, report| {
                let compressed;
                let body: &[u8] = match self.codec {
                    Some(codec) => {
                        compressed = gleaner_sdk::host::compress(codec, &request.body)
                            .map_err(FlushError::Rejected)?;
                        &compressed
                    }
                    None => &request.body,
                };
                let (status, text) = gleaner_sdk::http::post(&self.target, &self.headers, body)?;
                push::read_answer(status, &text, request, report)
            },
        )
    }
}

gleaner_sdk::export_item_flusher!(Loki);
