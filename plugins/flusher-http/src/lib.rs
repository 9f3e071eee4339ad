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
use gleaner_sdk::{Batch, FlushError, Flusher};

#[cfg(target_arch = "wasm32")]
mod transport;

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

/// A parsed `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// `https://`.
    pub https: bool,
    /// `host:port`.
    pub authority: String,
    /// Path and query, starting with `/`.
    pub path: String,
}

/// Parses `http[s]://host[:port][/path]`.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let (https, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => return Err(format!("url: `{url}` must start with http:// or https://")),
    };
    let (auth, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if auth.is_empty() {
        return Err(format!("url: `{url}` has no host"));
    }
    let authority = if auth
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        auth.to_owned()
    } else {
        format!("{auth}:{}", if https { 443 } else { 80 })
    };
    Ok(Target {
        https,
        authority,
        path: path.to_owned(),
    })
}

/// Maps an HTTP status to the flush outcome.
pub fn outcome(status: u16, body: &str) -> Result<(), FlushError> {
    let msg = || {
        format!(
            "HTTP {status}: {}",
            body.chars().take(200).collect::<String>()
        )
    };
    match status {
        200..=299 => Ok(()),
        408 | 429 | 500..=599 => Err(FlushError::Retryable(msg())),
        _ => Err(FlushError::Rejected(msg())),
    }
}

/// The flusher.
#[cfg_attr(
    not(target_arch = "wasm32"),
    expect(dead_code, reason = "the transport exists only in the component")
)]
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
        let mut headers: Vec<(String, Vec<u8>)> = c
            .headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.into_bytes()))
            .collect();
        headers.push(("content-type".into(), b"application/x-ndjson".to_vec()));
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
    #[cfg(target_arch = "wasm32")]
    fn send(&self, body: &[u8]) -> Result<(), FlushError> {
        let (status, text) = transport::post(&self.target, &self.headers, body)?;
        outcome(status, &text)
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn send(&self, _body: &[u8]) -> Result<(), FlushError> {
        Err(FlushError::Retryable(
            "wasi:http is only available inside the Gleaner host".into(),
        ))
    }
}

gleaner_sdk::export_flusher!(Http);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_a_default_port_and_path() {
        assert_eq!(
            parse_url("http://127.0.0.1:9000/ingest?x=1").unwrap(),
            Target {
                https: false,
                authority: "127.0.0.1:9000".into(),
                path: "/ingest?x=1".into()
            }
        );
        assert_eq!(
            parse_url("http://logs.local").unwrap(),
            Target {
                https: false,
                authority: "logs.local:80".into(),
                path: "/".into()
            }
        );
        assert!(parse_url("ftp://x").unwrap_err().starts_with("url:"));
        let t = parse_url("https://logs.example.org/in").unwrap();
        assert_eq!(
            (t.https, t.authority.as_str()),
            (true, "logs.example.org:443")
        );
    }

    #[test]
    fn statuses_map_to_outcomes() {
        assert_eq!(outcome(204, ""), Ok(()));
        assert!(
            matches!(outcome(503, "busy"), Err(FlushError::Retryable(m)) if m == "HTTP 503: busy")
        );
        assert!(matches!(outcome(429, ""), Err(FlushError::Retryable(_))));
        assert!(matches!(outcome(400, "bad"), Err(FlushError::Rejected(_))));
    }
}
