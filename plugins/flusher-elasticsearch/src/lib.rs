//! `elasticsearch`: ships events to Elasticsearch 7/8 or OpenSearch with the
//! `_bulk` API, and answers the host item by item: items refused for good
//! (a mapping error) are dead-lettered with Elasticsearch's reason, items
//! throttled or failed (429, 5xx) are retried alone, and items accepted
//! are never sent again.
//!
//! Config:
//! - `url` (required): the cluster, `http(s)://host:port` (its `host:port`
//!   must be in `grants.hosts`);
//! - `index`: the index (or data stream) name, a template: `%Y`, `%m`,
//!   `%d`, `%H` of the event's time (UTC) and `{name}` for a field or tag
//!   (`logs-{k8s.namespace.name}-%Y.%m.%d`; a missing one is `unknown`).
//!   Default `gleaner-%Y.%m.%d`;
//! - `action`: `index` (default) or `create` (data streams; with `id_field`,
//!   a document that already exists, 409, counts as delivered);
//! - `id_field`: the document `_id` from this field (default: Elasticsearch's);
//! - `pipeline`: an ingest pipeline;
//! - `api_key`, or `user` and `password`: credentials (use `${...}`);
//! - `headers`: more request headers;
//! - `compression`: `none` (default) or `gzip`;
//! - `max_bytes`: largest request body before compression (default
//!   5 MiB; a batch is split into several requests).
//!
//! Each document is the event as the other flushers write it, with its time
//! as `@timestamp`. Whole-request answers: 2xx per item as above; 408, 429,
//! 5xx, 401 and 403 retry the request's events; other statuses reject them.
//! Counters: `items_retried`, `items_rejected`.

mod bulk;

use std::collections::BTreeMap;

use gleaner_sdk::http::{Compression, Target, basic_auth, parse_url};
use gleaner_sdk::{Batch, FlushError, ItemFlusher, Report};

use crate::bulk::{Action, IndexTemplate};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    url: String,
    #[serde(default = "default_index")]
    index: String,
    #[serde(default)]
    action: Action,
    #[serde(default)]
    id_field: Option<String>,
    #[serde(default)]
    pipeline: Option<String>,
    #[serde(default)]
    api_key: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    compression: Compression,
    #[serde(default = "default_max_bytes")]
    max_bytes: usize,
}

fn default_index() -> String {
    "gleaner-%Y.%m.%d".into()
}

fn default_max_bytes() -> usize {
    5 << 20
}

/// The flusher.
pub struct Elasticsearch {
    target: Target,
    headers: Vec<(String, Vec<u8>)>,
    compression: Compression,
    bulk: bulk::Encoder,
}

impl ItemFlusher for Elasticsearch {
    fn init(config: &str) -> Result<Self, String> {
        let c: Config = gleaner_sdk::parse_config(config)?;
        let mut target = parse_url(&c.url)?;
        let base = target.path.trim_end_matches('/');
        target.path = match &c.pipeline {
            Some(p) => format!("{base}/_bulk?pipeline={p}"),
            None => format!("{base}/_bulk"),
        };
        let mut headers = gleaner_sdk::http::headers(c.headers, "application/x-ndjson");
        match (&c.api_key, &c.user, &c.password) {
            (Some(key), None, None) => {
                headers.push(("authorization".into(), format!("ApiKey {key}").into_bytes()))
            }
            (None, Some(user), Some(password)) => headers.push(basic_auth(user, password)),
            (None, None, None) => {}
            (Some(_), _, _) => {
                return Err("api_key: give either api_key or user and password".into());
            }
            (None, _, _) => return Err("user, password: give both".into()),
        }
        c.compression.add_header(&mut headers);
        if c.max_bytes == 0 {
            return Err("max_bytes: must be above zero".into());
        }
        let index = IndexTemplate::parse(&c.index).map_err(|e| format!("index: {e}"))?;
        Ok(Elasticsearch {
            target,
            headers,
            compression: c.compression,
            bulk: bulk::Encoder::new(index, c.action, c.id_field, c.max_bytes),
        })
    }

    fn flush(&mut self, input: Batch) -> Result<Report, FlushError> {
        let requests = self.bulk.encode(&input);
        gleaner_sdk::deliver_each(
            &requests,
            |r| r.events.clone().collect(),
            |request, report| {
                let body = self.compression.apply(&request.body)?;
                let (status, text) =
                    gleaner_sdk::http::post_reading(&self.target, &self.headers, &body, 64 << 20)?;
                bulk::read_answer(status, &text, request, report)
            },
        )
    }
}

gleaner_sdk::export_item_flusher!(Elasticsearch);
