//! `http`: POSTs each batch as NDJSON to a URL (its `host:port` must be in
//! `grants.hosts`), optionally compressed by the host (zstd or gzip).
//!
//! Config:
//! - `url` (required): `http://host:port/path` or `https://...` (TLS by
//!   the host: the pipeline entry's `tls:` sets the CA file, a client
//!   certificate, or `verify: false`);
//! - `compression`: `none` (default), `zstd` or `gzip` (sets `Content-Encoding`);
//! - `headers`: extra request headers, name → value.
//!
//! Outcome: 2xx → delivered; 408, 429 and 5xx, or a connection failure →
//! retryable; other statuses → rejected (the host dead-letters the batch).

use std::collections::BTreeMap;

use gleaner_sdk::host::Codec;
use gleaner_sdk::http::{Target, outcome, parse_url};
use gleaner_sdk::{Batch, FlushError, Flusher};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    url: String,
    #[serde(default)]
    compression: Compression,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Compression {
    #[default]
    None,
    Zstd,
    Gzip,
}

/// The flusher.
pub struct Http {
    target: Target,
    compression: Compression,
    headers: Vec<(String, Vec<u8>)>,
    buf: Vec<u8>,
}

impl Flusher for Http {
    fn init(config: &str) -> Result<Self, String> {
        let c: Config = gleaner_sdk::parse_config(config)?;
        let target = parse_url(&c.url)?;
        let mut headers = gleaner_sdk::http::headers(c.headers, "application/x-ndjson");
        match c.compression {
            Compression::None => {}
            Compression::Zstd => headers.push(("content-encoding".into(), b"zstd".to_vec())),
            Compression::Gzip => headers.push(("content-encoding".into(), b"gzip".to_vec())),
        }
        Ok(Http {
            target,
            compression: c.compression,
            headers,
            buf: Vec::new(),
        })
    }

    fn flush(&mut self, input: Batch) -> Result<(), FlushError> {
        self.buf.clear();
        gleaner_sdk::json::write_ndjson(&input, &mut self.buf);
        let body =
            match self.compression {
                Compression::None => std::mem::take(&mut self.buf),
                Compression::Zstd => gleaner_sdk::host::compress(Codec::Zstd, &self.buf)
                    .map_err(FlushError::Rejected)?,
                Compression::Gzip => gleaner_sdk::host::compress(Codec::Gzip, &self.buf)
                    .map_err(FlushError::Rejected)?,
            };
        let result = self.send(&body);
        if self.compression == Compression::None {
            self.buf = body;
        }
        result
    }
}

impl Http {
    fn send(&self, body: &[u8]) -> Result<(), FlushError> {
        let (status, text) = gleaner_sdk::http::post(&self.target, &self.headers, body)?;
        outcome(status, &text)
    }
}

gleaner_sdk::export_flusher!(Http);
