//! `s3`: writes events as NDJSON objects to Amazon S3 or an S3-compatible
//! store (MinIO, Ceph, R2, ...), one `PUT` per object, signed with AWS
//! Signature Version 4 computed here in the component.
//!
//! An object holds one batch's events that share a key prefix: its size
//! and age are the pipeline's `batch.max_bytes` and `batch.linger` (raise
//! them for fewer, larger objects). Objects never span batches because
//! events are acknowledged only once S3 has them; holding a batch back to
//! fill an object would acknowledge events S3 does not have yet.
//!
//! An object's key is the `key` template rendered for its events (`%Y`,
//! `%m`, `%d`, `%H`, `%M` of the event time, `{name}` for a field or tag),
//! then the first 16 hex digits of the SHA-256 of its content and the
//! extension: `logs/2026/11/29/10/3f2a9c0e1b7d4a55.ndjson.gz`. A retried
//! upload therefore writes the same key again: no duplicate objects.
//!
//! Config:
//! - `bucket` (required), `region` (default `us-east-1`);
//! - `endpoint`: an S3-compatible store's URL (`http://minio:9000`),
//!   addressed path-style (`/bucket/key`); without it,
//!   `https://BUCKET.s3.REGION.amazonaws.com`. Its `host:port` must be in
//!   `grants.hosts`;
//! - `key`: the key template (default `gleaner/%Y/%m/%d/%H/`);
//! - `compression`: `gzip` (default), `zstd` or `none`;
//! - `access_key_id`, `secret_access_key` (required; use `${...}`),
//!   `session_token` (temporary credentials);
//! - `storage_class`: `x-amz-storage-class` (`STANDARD_IA`, ...).
//!
//! Answers: 2xx delivered; 403 (a credential gets fixed), 408, 429, 5xx
//! (`SlowDown`, `InternalError`) retried; others (`NoSuchBucket`) reject
//! the object's events with S3's error.

mod sigv4;

use std::collections::BTreeMap;

use gleaner_sdk::host::Codec;
use gleaner_sdk::http::{Method, Target, parse_url};
use gleaner_sdk::json::{Layout, write_with};
use gleaner_sdk::time::Template;
use gleaner_sdk::{Batch, FlushError, ItemFlusher, Report};

use crate::sigv4::{Credentials, encode_path, sign_put};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    bucket: String,
    #[serde(default = "default_region")]
    region: String,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default = "default_key")]
    key: String,
    #[serde(default)]
    compression: Compression,
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    session_token: Option<String>,
    #[serde(default)]
    storage_class: Option<String>,
}

fn default_region() -> String {
    "us-east-1".into()
}

fn default_key() -> String {
    "gleaner/%Y/%m/%d/%H/".into()
}

#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Compression {
    #[default]
    Gzip,
    Zstd,
    None,
}

/// The flusher.
pub struct S3 {
    target: Target,
    /// `/bucket` (path-style) or empty (virtual-hosted).
    path_prefix: String,
    region: String,
    key: Template,
    compression: Compression,
    creds: Credentials,
    extra: Vec<(String, String)>,
}

/// One object: its key prefix and events.
struct Object {
    prefix: String,
    events: Vec<usize>,
}

impl ItemFlusher for S3 {
    fn init(config: &str) -> Result<Self, String> {
        let c: Config = gleaner_sdk::parse_config(config)?;
        let valid_bucket = (3..=63).contains(&c.bucket.len())
            && c.bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err(format!(
                "bucket: `{}` is not a bucket name (3 to 63 lower-case letters, digits, `-`, `.`)",
                c.bucket
            ));
        }
        let (target, path_prefix) = match &c.endpoint {
            Some(url) => {
                let t = parse_url(url).map_err(|e| format!("endpoint: {e}"))?;
                let base = t.path.trim_end_matches('/').to_owned();
                (t, format!("{base}/{}", c.bucket))
            }
            None => (
                parse_url(&format!(
                    "https://{}.s3.{}.amazonaws.com",
                    c.bucket, c.region
                ))?,
                String::new(),
            ),
        };
        let key = Template::parse(&c.key).map_err(|e| format!("key: {e}"))?;
        if c.access_key_id.is_empty() || c.secret_access_key.is_empty() {
            return Err("access_key_id, secret_access_key: must not be empty".into());
        }
        let extra = c
            .storage_class
            .map(|s| vec![("x-amz-storage-class".to_owned(), s)])
            .unwrap_or_default();
        Ok(S3 {
            target,
            path_prefix,
            region: c.region,
            key,
            compression: c.compression,
            creds: Credentials {
                access_key_id: c.access_key_id,
                secret_access_key: c.secret_access_key,
                session_token: c.session_token,
            },
            extra,
        })
    }

    fn flush(&mut self, input: Batch) -> Result<Report, FlushError> {
        // Every event's document, and its objects by key prefix.
        let mut docs = Vec::with_capacity(input.body_bytes() * 2);
        let mut starts = Vec::with_capacity(input.len() + 1);
        write_with(&input, &mut docs, &Layout::default(), |_, out| {
            starts.push(out.len())
        });
        starts.push(docs.len());
        let mut by_prefix: BTreeMap<String, usize> = BTreeMap::new();
        let mut objects: Vec<Object> = Vec::new();
        let mut prefix = String::new();
        // Events read together share a second: a key of the time alone is
        // rendered once for them.
        let by_time = !self.key.uses_values();
        let mut last: Option<(i64, usize)> = None;
        for event in input.events() {
            let second = event.timestamp().div_euclid(1_000_000_000);
            let n = match last {
                Some((s, n)) if by_time && s == second => n,
                _ => {
                    self.key.render(&input, &event, &mut prefix);
                    *by_prefix.entry(prefix.clone()).or_insert_with(|| {
                        objects.push(Object {
                            prefix: prefix.clone(),
                            events: Vec::new(),
                        });
                        objects.len() - 1
                    })
                }
            };
            last = Some((second, n));
            objects[n].events.push(event.index());
        }
        // One object (the usual case) is the whole buffer, not a copy.
        let mut whole = (objects.len() == 1).then(|| std::mem::take(&mut docs));
        gleaner_sdk::deliver_each(
            &objects,
            |o| o.events.clone(),
            |object, _| {
                let body = whole.take().unwrap_or_else(|| {
                    let mut body = Vec::new();
                    for &i in &object.events {
                        body.extend_from_slice(&docs[starts[i]..starts[i + 1]]);
                    }
                    body
                });
                self.put(&object.prefix, body)
            },
        )
    }
}

impl S3 {
    /// Compresses, names, signs and uploads one object.
    fn put(&self, prefix: &str, body: Vec<u8>) -> Result<(), FlushError> {
        let (body, ext, encoding) = match self.compression {
            Compression::Gzip => (
                gleaner_sdk::host::compress(Codec::Gzip, &body).map_err(FlushError::Rejected)?,
                ".ndjson.gz",
                Some("gzip"),
            ),
            Compression::Zstd => (
                gleaner_sdk::host::compress(Codec::Zstd, &body).map_err(FlushError::Rejected)?,
                ".ndjson.zst",
                Some("zstd"),
            ),
            Compression::None => (body, ".ndjson", None),
        };
        // The payload's digest, by the host (SHA-256 in Wasm is ~90 MB/s).
        let hash = sigv4::hex(&gleaner_sdk::host::sha256(&body));
        let key = format!("{prefix}{}{ext}", &hash[..16]);
        let path = encode_path(&format!(
            "{}/{}",
            self.path_prefix,
            key.trim_start_matches('/')
        ));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let mut stamp = Vec::new();
        gleaner_sdk::json::write_rfc3339(now, &mut stamp);
        let stamp = String::from_utf8_lossy(&stamp);
        // 2026-11-29T10:15:00.…Z → 20261129T101500Z
        let amz_date = format!(
            "{}{}{}T{}{}{}Z",
            &stamp[0..4],
            &stamp[5..7],
            &stamp[8..10],
            &stamp[11..13],
            &stamp[14..16],
            &stamp[17..19]
        );
        let signed = sign_put(
            &self.creds,
            &self.region,
            &self.target.authority,
            &path,
            &hash,
            &amz_date,
            &self.extra,
        );
        let mut headers: Vec<(String, Vec<u8>)> = signed
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        headers.push(("content-type".into(), b"application/x-ndjson".to_vec()));
        if let Some(e) = encoding {
            headers.push(("content-encoding".into(), e.as_bytes().to_vec()));
        }
        let target = Target {
            path,
            ..self.target.clone()
        };
        let (status, text) = gleaner_sdk::http::send(Method::Put, &target, &headers, &body, 4096)?;
        gleaner_sdk::http::outcome(status, &String::from_utf8_lossy(&text))
    }
}

gleaner_sdk::export_item_flusher!(S3);
