//! `splunk-hec`: ships events to Splunk's HTTP Event Collector
//! (`/services/collector/event`), several events per request, and answers
//! the host event by event from HEC's error codes.
//!
//! Each event is a HEC event object: `time` (seconds with nanoseconds),
//! `host`, `source`, `sourcetype`, `index` when set, `event` (the event as
//! the other flushers write it, a JSON object with typed values, or with
//! `event_format: body` the raw line) and `fields` (the `indexed_fields`
//! named, as index-time fields).
//!
//! Config:
//! - `url` (required): the collector, `http(s)://host:8088` (its
//!   `host:port` must be in `grants.hosts`); `/services/collector/event` is
//!   added unless the URL has a path;
//! - `token` (required; use `${...}`): sent as `Authorization: Splunk ...`;
//! - `index`, `sourcetype`, `source`, `host`: templates (`{name}` is a
//!   field or tag); `source` defaults to the file (`{source.path}`), the
//!   others to the token's defaults;
//! - `event_format`: `json` (default) or `body`;
//! - `indexed_fields`: field names sent as index-time `fields`;
//! - `compression`: `none` (default) or `gzip`;
//! - `max_bytes`: largest request before compression (default 1 MiB).
//!
//! HEC's answers: `0` delivered. `6`, `7`, `12`, `13`, `15` (invalid data,
//! incorrect index, missing or blank event, bad indexed fields) come with
//! `invalid-event-number`: HEC indexed the events before it, so that event
//! is rejected with HEC's text and the ones after it are retried; without
//! the number the request's events are rejected. `8`, `9`, `18`-`20`
//! (internal error, busy, unhealthy) and `1`-`4` (token missing, disabled
//! or invalid: a credential gets fixed) retry. Counters `items_retried`,
//! `items_rejected`.

mod hec;

use std::collections::BTreeMap;

use gleaner_sdk::http::{Compression, Target, parse_url};
use gleaner_sdk::time::Template;
use gleaner_sdk::{Batch, FlushError, ItemFlusher, Report};

use crate::hec::{EventFormat, Meta};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    url: String,
    token: String,
    #[serde(default)]
    index: Option<String>,
    #[serde(default)]
    sourcetype: Option<String>,
    #[serde(default = "default_source")]
    source: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    event_format: EventFormat,
    #[serde(default)]
    indexed_fields: Vec<String>,
    #[serde(default)]
    compression: Compression,
    #[serde(default = "default_max_bytes")]
    max_bytes: usize,
}

fn default_source() -> Option<String> {
    Some("{source.path}".into())
}

fn default_max_bytes() -> usize {
    1 << 20
}

/// The flusher.
pub struct SplunkHec {
    target: Target,
    headers: Vec<(String, Vec<u8>)>,
    compression: Compression,
    encoder: hec::Encoder,
}

impl ItemFlusher for SplunkHec {
    fn init(config: &str) -> Result<Self, String> {
        let c: Config = gleaner_sdk::parse_config(config)?;
        let mut target = parse_url(&c.url)?;
        if target.path == "/" {
            target.path = "/services/collector/event".into();
        }
        if c.token.is_empty() {
            return Err("token: must not be empty".into());
        }
        let mut headers = gleaner_sdk::http::headers(BTreeMap::new(), "application/json");
        headers.push((
            "authorization".into(),
            format!("Splunk {}", c.token).into_bytes(),
        ));
        c.compression.add_header(&mut headers);
        if c.max_bytes == 0 {
            return Err("max_bytes: must be above zero".into());
        }
        let template = |key: &str, t: Option<String>| {
            t.map(|t| Template::parse(&t).map_err(|e| format!("{key}: {e}")))
                .transpose()
        };
        let meta = Meta {
            index: template("index", c.index)?,
            sourcetype: template("sourcetype", c.sourcetype)?,
            source: template("source", c.source)?,
            host: template("host", c.host)?,
        };
        Ok(SplunkHec {
            target,
            headers,
            compression: c.compression,
            encoder: hec::Encoder::new(meta, c.event_format, c.indexed_fields, c.max_bytes),
        })
    }

    fn flush(&mut self, input: Batch) -> Result<Report, FlushError> {
        let requests = self.encoder.encode(&input);
        gleaner_sdk::deliver_each(
            &requests,
            |r| r.events.clone().collect(),
            |request, report| {
                let body = self.compression.apply(&request.body)?;
                let (status, text) = gleaner_sdk::http::post(&self.target, &self.headers, &body)?;
                hec::read_answer(status, &text, request, report)
            },
        )
    }
}

gleaner_sdk::export_item_flusher!(SplunkHec);
