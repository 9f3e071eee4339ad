//! `clickhouse`: inserts events into a ClickHouse table over its HTTP
//! interface, `INSERT INTO db.table FORMAT JSONEachRow`, one row per event,
//! and answers the host row by row where ClickHouse says which row it could
//! not take.
//!
//! Each row is the event as the other flushers write it (typed values, so
//! an `int` field fills an integer column), with its time under
//! `timestamp_key` in `timestamp_format`. Members the table has no column
//! for are skipped (`skip_unknown_fields`).
//!
//! Config:
//! - `url` (required): `http(s)://host:8123` (its `host:port` must be in
//!   `grants.hosts`);
//! - `table` (required), `database` (default `default`): names of letters,
//!   digits and `_`;
//! - `user`, `password` (use `${...}`): sent as `X-ClickHouse-User` and
//!   `X-ClickHouse-Key`;
//! - `timestamp_key` (default `timestamp`), `timestamp_format`:
//!   `datetime_ms` (default, `2024-11-21 16:01:02.500` for `DateTime64(3)`),
//!   `datetime` (`DateTime`), `datetime_ns` (`DateTime64(9)`), `unix`,
//!   `unix_ms`, `rfc3339`;
//! - `skip_unknown_fields` (default true);
//! - `async_insert` (default false): ClickHouse 21.11+ buffers small
//!   inserts server-side; sent with `wait_for_async_insert=1`, so the
//!   answer still comes once the rows are written;
//! - `compression`: `none` (default) or `gzip`;
//! - `max_bytes`: largest request before compression (default 10 MiB).
//!
//! ClickHouse's answers (`Code: N` in the body): a row it cannot parse
//! (`(at row N)`: the insert is atomic, nothing was written) is rejected
//! with the message and the request's other rows retried; overload,
//! timeouts, too many parts, read-only replicas, authentication (a
//! credential gets fixed) retry; an unknown table, database, column or
//! setting, or a syntax error, rejects the request's rows. Counters
//! `items_retried`, `items_rejected`.

mod insert;

use gleaner_sdk::http::{Compression, Target, parse_url};
use gleaner_sdk::time::TimeFormat;
use gleaner_sdk::{Batch, FlushError, ItemFlusher, Report};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    url: String,
    table: String,
    #[serde(default = "default_database")]
    database: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default = "default_timestamp_key")]
    timestamp_key: String,
    #[serde(default = "default_timestamp_format")]
    timestamp_format: TimeFormat,
    #[serde(default = "default_true")]
    skip_unknown_fields: bool,
    #[serde(default)]
    async_insert: bool,
    #[serde(default)]
    compression: Compression,
    #[serde(default = "default_max_bytes")]
    max_bytes: usize,
}

fn default_database() -> String {
    "default".into()
}

fn default_timestamp_key() -> String {
    "timestamp".into()
}

fn default_timestamp_format() -> TimeFormat {
    TimeFormat::DatetimeMs
}

fn default_true() -> bool {
    true
}

fn default_max_bytes() -> usize {
    10 << 20
}

/// True for a plain ClickHouse identifier.
fn identifier(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The flusher.
pub struct ClickHouse {
    target: Target,
    headers: Vec<(String, Vec<u8>)>,
    compression: Compression,
    encoder: insert::Encoder,
}

impl ItemFlusher for ClickHouse {
    fn init(config: &str) -> Result<Self, String> {
        let c: Config = gleaner_sdk::parse_config(config)?;
        let mut target = parse_url(&c.url)?;
        for (key, name) in [("table", &c.table), ("database", &c.database)] {
            if !identifier(name) {
                return Err(format!(
                    "{key}: `{name}` is not a plain identifier (letters, digits, `_`)"
                ));
            }
        }
        if c.timestamp_format == TimeFormat::UnixFraction {
            return Err("timestamp_format: unix_fraction is not a ClickHouse input".into());
        }
        let query = format!(
            "INSERT INTO `{}`.`{}` FORMAT JSONEachRow",
            c.database, c.table
        );
        let mut path = format!("/?query={}", gleaner_sdk::http::percent_encode(&query, b""));
        if c.skip_unknown_fields {
            path.push_str("&input_format_skip_unknown_fields=1");
        }
        if c.async_insert {
            path.push_str("&async_insert=1&wait_for_async_insert=1");
        }
        target.path = path;
        let mut headers = gleaner_sdk::http::headers(Default::default(), "application/x-ndjson");
        if let Some(user) = &c.user {
            headers.push(("x-clickhouse-user".into(), user.clone().into_bytes()));
        }
        if let Some(password) = &c.password {
            headers.push(("x-clickhouse-key".into(), password.clone().into_bytes()));
        }
        c.compression.add_header(&mut headers);
        if c.max_bytes == 0 {
            return Err("max_bytes: must be above zero".into());
        }
        Ok(ClickHouse {
            target,
            headers,
            compression: c.compression,
            encoder: insert::Encoder::new(c.timestamp_key, c.timestamp_format, c.max_bytes),
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
                insert::read_answer(status, &text, request, report)
            },
        )
    }
}

gleaner_sdk::export_item_flusher!(ClickHouse);
