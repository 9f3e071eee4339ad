//! The local destinations `gleaner bench --destinations` ships to: one
//! HTTP server answering as Elasticsearch `_bulk`, Loki's push API, an
//! OTLP/HTTP receiver, Splunk HEC, ClickHouse's HTTP interface and S3's
//! `PUT` do when all is well, counting the records each request carries
//! (decoding snappy and walking the protobuf where the protocol has them),
//! so the bench knows when every line has arrived.
//!
//! Owns the server and its counts; knows nothing of how Gleaner is run.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};

/// A running sink.
pub struct Sink {
    /// Where it listens.
    pub addr: SocketAddr,
    records: Arc<AtomicU64>,
    _rt: tokio::runtime::Runtime,
}

impl Sink {
    /// Starts a sink on an ephemeral 127.0.0.1 port.
    pub fn start() -> anyhow::Result<Sink> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let records = Arc::new(AtomicU64::new(0));
        let counted = records.clone();
        rt.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let counted = counted.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let query = req.uri().query().unwrap_or_default().to_owned();
                            let gzip = req
                                .headers()
                                .get("content-encoding")
                                .is_some_and(|v| v.as_bytes() == b"gzip");
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let body = if gzip { gunzip(&body) } else { body.to_vec() };
                            let (status, answer, n) = answer(&path, &query, &body);
                            counted.fetch_add(n, Ordering::Relaxed);
                            let response = Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from_static(answer)))
                                .unwrap_or_default();
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        Ok(Sink {
            addr,
            records,
            _rt: rt,
        })
    }

    /// Records received so far.
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }
}

/// A gzip body's content (nothing if it is not gzip).
fn gunzip(body: &[u8]) -> Vec<u8> {
    use std::io::Read as _;
    let mut out = Vec::new();
    let _ = flate2::read::GzDecoder::new(body).read_to_end(&mut out);
    out
}

/// The success answer of each protocol and the records in `body`.
fn answer(path: &str, query: &str, body: &[u8]) -> (u16, &'static [u8], u64) {
    let lines = || memchr::memchr_iter(b'\n', body).count() as u64;
    match path {
        "/_bulk" => (200, br#"{"took":1,"errors":false,"items":[]}"#, lines() / 2),
        "/loki/api/v1/push" => {
            let n = snap::raw::Decoder::new()
                .decompress_vec(body)
                .ok()
                .and_then(|raw| count(&raw, &[1, 2]))
                .unwrap_or(0);
            (204, b"", n)
        }
        "/v1/logs" => (200, b"", count(body, &[1, 2, 2]).unwrap_or(0)),
        "/services/collector/event" => (200, br#"{"text":"Success","code":0}"#, lines()),
        "/" if query.starts_with("query=INSERT") => (200, b"", lines()),
        // An S3 object: NDJSON.
        _ => (200, b"", lines()),
    }
}

/// Counts the messages at `path` (field numbers, outermost first) in a
/// protobuf message: `[1, 2]` is the entries (2) of each stream (1).
fn count(mut buf: &[u8], path: &[u32]) -> Option<u64> {
    let Some((&field, rest)) = path.split_first() else {
        return Some(1);
    };
    let mut n = 0;
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        match key & 7 {
            0 => {
                varint(&mut buf)?;
            }
            1 => buf = buf.get(8..)?,
            2 => {
                let len = usize::try_from(varint(&mut buf)?).ok()?;
                let (inner, after) = buf.split_at_checked(len)?;
                if key >> 3 == u64::from(field) {
                    n += count(inner, rest)?;
                }
                buf = after;
            }
            5 => buf = buf.get(4..)?,
            _ => return None,
        }
    }
    Some(n)
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_messages_are_counted() {
        // {1: {2: {}, 2: {}}, 1: {2: {}}, 3: 7}
        let msg = [0x0a, 4, 0x12, 0, 0x12, 0, 0x0a, 2, 0x12, 0, 0x18, 7];
        assert_eq!(count(&msg, &[1, 2]), Some(3));
        assert_eq!(count(&msg, &[1]), Some(2));
        assert_eq!(count(&[0x0a, 9], &[1]), None);
    }
}
