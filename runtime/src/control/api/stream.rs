//! `GET /api/v1/tap`: a live sample of the events passing one stage of a
//! running pipeline, streamed as JSON lines until its limit is reached,
//! the pipeline stops or the client goes. The stage is `input`,
//! `processor:N` or `flusher:N` (N by place, from 0, or the plugin's
//! reference where only one stage of that kind runs it).
//!
//! Opens taps through the supervisor; never holds or changes a batch.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::Frame;
use hyper::{Response, StatusCode};

use super::{Body, reply};
use crate::config::{PipelineConfig, PluginEntry};
use crate::control::supervisor::Supervisor;
use crate::data::tap::Point;

/// Events a tap sends unless `limit` says otherwise.
pub const DEFAULT_LIMIT: u64 = 100;
/// Events a second a tap sends unless `rate` says otherwise.
pub const DEFAULT_RATE: u32 = 100;
/// The most `limit` may be.
pub const MAX_LIMIT: u64 = 1_000_000;
/// The most `rate` may be (0, no limit, is not allowed).
pub const MAX_RATE: u32 = 10_000;

/// The body of a tap: chunks of JSON lines as the pipeline passes them.
pub struct TapBody(pub(super) tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for TapBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

/// The query string as a map (values percent-decoded).
pub(super) fn query(uri: &hyper::Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| Some(hex(*bytes.get(i + 1)?)? * 16 + hex(*bytes.get(i + 2)?)?))
            .flatten();
        match (bytes[i], escaped) {
            (_, Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b'+', None) => out.push(b' '),
            (b, None) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Finds `stage` of a pipeline built from `config`.
pub fn point(stage: &str, config: &PipelineConfig) -> Result<Point, String> {
    let find = |list: &[PluginEntry], what: &str| -> Result<usize, String> {
        if let Ok(n) = what.parse::<usize>() {
            return if n < list.len() {
                Ok(n)
            } else {
                Err(format!("there are {} of them", list.len()))
            };
        }
        let at: Vec<usize> = (0..list.len())
            .filter(|&i| list[i].reference == what)
            .collect();
        match at[..] {
            [n] => Ok(n),
            [] => Err(format!("none runs `{what}`")),
            _ => Err(format!("{} run `{what}`: give the place", at.len())),
        }
    };
    let found = match stage.split_once(':') {
        None if stage == "input" => Ok(Point::Input),
        Some(("processor", what)) => find(&config.processors, what).map(Point::Processor),
        Some(("flusher", what)) => find(&config.flushers, what).map(Point::Flusher),
        _ => Err("it is not input, processor:N or flusher:N".to_owned()),
    };
    found.map_err(|why| format!("no stage `{stage}`: {why}; {}", stages(config)))
}

/// The stages of a pipeline, for error messages.
fn stages(config: &PipelineConfig) -> String {
    let mut out = vec!["input".to_owned()];
    let list = |kind: &str, l: &[PluginEntry]| -> Vec<String> {
        l.iter()
            .enumerate()
            .map(|(i, e)| format!("{kind}:{i} ({})", e.reference))
            .collect()
    };
    out.extend(list("processor", &config.processors));
    out.extend(list("flusher", &config.flushers));
    format!("the stages are {}", out.join(", "))
}

/// Answers `GET /api/v1/tap?pipeline=P&stage=S&limit=N&rate=R`.
pub(super) fn tap(uri: &hyper::Uri, sup: &Supervisor) -> Response<Body> {
    const TEXT: &str = "text/plain; charset=utf-8";
    let bad = |status, msg: String| reply(status, TEXT, msg + "\n");
    let q = query(uri);
    let Some(name) = q.get("pipeline") else {
        return bad(StatusCode::BAD_REQUEST, "give ?pipeline=NAME".into());
    };
    let number = |key: &str, default: u64, max: u64| -> Result<u64, String> {
        match q.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or(format!("`{key}` must be a whole number from 1 to {max}")),
        }
    };
    let (limit, rate) = match (
        number("limit", DEFAULT_LIMIT, MAX_LIMIT),
        number("rate", u64::from(DEFAULT_RATE), u64::from(MAX_RATE)),
    ) {
        (Ok(l), Ok(r)) => (l, r as u32),
        (Err(e), _) | (_, Err(e)) => return bad(StatusCode::BAD_REQUEST, e),
    };
    let stage = q.get("stage").map_or("input", String::as_str);
    let opened = sup.with_pipeline(name, |p, config| {
        let point = match config {
            Some(c) => point(stage, c).map_err(|e| (StatusCode::BAD_REQUEST, e))?,
            None if stage == "input" => Point::Input,
            None => {
                let e = format!("the config of `{name}` is not known; only `input`");
                return Err((StatusCode::BAD_REQUEST, e));
            }
        };
        p.taps()
            .open(point, limit, rate)
            .map(|rx| (point, rx))
            .map_err(|e| (StatusCode::TOO_MANY_REQUESTS, e.to_string()))
    });
    match opened {
        None => bad(StatusCode::NOT_FOUND, format!("no pipeline `{name}` runs")),
        Some(Err((status, e))) => bad(status, e),
        Some(Ok((point, rx))) => {
            tracing::info!(pipeline = %name, stage = %point, limit, rate, "Tap opened.");
            let mut r = Response::new(http_body_util::Either::Right(TapBody(rx)));
            let headers = r.headers_mut();
            headers.insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/x-ndjson"),
            );
            if let Ok(v) =
                format!("pipeline={name}; stage={point}; limit={limit}; rate={rate}").parse()
            {
                headers.insert("x-gleaner-tap", v);
            }
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_decoded() {
        let uri: hyper::Uri = "/api/v1/tap?pipeline=a%2Db&stage=flusher%3Abuiltin%3Afile&x"
            .parse()
            .unwrap();
        let q = query(&uri);
        assert_eq!(q["pipeline"], "a-b");
        assert_eq!(q["stage"], "flusher:builtin:file");
        assert_eq!(q["x"], "");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%é%4"), "%é%4");
        assert_eq!(decode("a+b%20c"), "a b c");
    }
}
