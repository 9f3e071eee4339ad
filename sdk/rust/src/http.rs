//! HTTP for flushers: URLs, the `wasi:http` POST (the host checks the
//! destination against the pipeline's `grants.hosts` and speaks TLS for
//! `https://`), and the usual mapping of statuses to retry or reject.
//! Shared by the first-party flushers; outside a component (a plugin's
//! native tests) `post` answers that it is only available in the host.

use crate::FlushError;

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

/// Maps an HTTP status to the flush outcome: 2xx delivered; 401, 403,
/// 408, 429 and 5xx retried (a credential gets fixed, a server recovers:
/// the events wait in the buffer); any other status rejects the events.
pub fn outcome(status: u16, body: &str) -> Result<(), FlushError> {
    let msg = || describe(status, body);
    match status {
        200..=299 => Ok(()),
        s if retryable(s) => Err(FlushError::Retryable(msg())),
        _ => Err(FlushError::Rejected(msg())),
    }
}

/// True for the statuses [`outcome`] retries.
pub fn retryable(status: u16) -> bool {
    matches!(status, 401 | 403 | 408 | 429 | 500..=599)
}

/// `HTTP 503: <up to 300 characters of the answer>`, for reasons and logs.
pub fn describe(status: u16, text: &str) -> String {
    format!(
        "HTTP {status}: {}",
        text.trim().chars().take(300).collect::<String>()
    )
}

/// `text` percent-encoded for a URL: every byte but the unreserved ones
/// (RFC 3986: letters, digits, `-_.~`) and those in `keep` (e.g. `/` in a
/// path) as `%XX`.
pub fn percent_encode(text: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `authorization` header of HTTP basic auth.
pub fn basic_auth(user: &str, password: &str) -> (String, Vec<u8>) {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    (
        "authorization".into(),
        format!("Basic {token}").into_bytes(),
    )
}

/// A request body's compression, as flusher configs spell it
/// (`compression: gzip`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// Sent as it is.
    #[default]
    None,
    /// gzip, by the host, with `content-encoding: gzip`.
    Gzip,
}

impl Compression {
    /// Adds the `content-encoding` header it needs, if any.
    pub fn add_header(self, headers: &mut Vec<(String, Vec<u8>)>) {
        if self == Compression::Gzip {
            headers.push(("content-encoding".into(), b"gzip".to_vec()));
        }
    }

    /// The body to send.
    pub fn apply(self, body: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, FlushError> {
        match self {
            Compression::None => Ok(std::borrow::Cow::Borrowed(body)),
            Compression::Gzip => crate::host::compress(crate::host::Codec::Gzip, body)
                .map(std::borrow::Cow::Owned)
                .map_err(FlushError::Rejected),
        }
    }
}

/// One request of a batch and the batch's events in it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The body, before compression.
    pub body: Vec<u8>,
    /// The events in it, in order.
    pub events: std::ops::Range<usize>,
}

/// Cuts `all` (the encoded events one after another, event `i` ending at
/// `ends[i]`) into requests of at most `max_bytes`, at event boundaries
/// (an event larger than that alone is a request of its own).
pub fn split(all: &[u8], ends: &[usize], max_bytes: usize) -> Vec<Request> {
    let mut requests = Vec::new();
    let (mut from_event, mut from_byte) = (0, 0);
    for (i, &end) in ends.iter().enumerate() {
        let full = ends
            .get(i + 1)
            .is_none_or(|&next| next - from_byte > max_bytes);
        if full {
            requests.push(Request {
                body: all[from_byte..end].to_vec(),
                events: from_event..i + 1,
            });
            (from_event, from_byte) = (i + 1, end);
        }
    }
    requests
}

/// Request headers from a config's `headers:` map (names lower-cased)
/// plus `content-type`.
pub fn headers(
    configured: std::collections::BTreeMap<String, String>,
    content_type: &str,
) -> Vec<(String, Vec<u8>)> {
    let mut headers: Vec<(String, Vec<u8>)> = configured
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.into_bytes()))
        .collect();
    headers.push(("content-type".into(), content_type.as_bytes().to_vec()));
    headers
}

/// POSTs `body` to `target` with `headers` (lower-case names); returns the
/// status and up to 4 KiB of the response text.
pub fn post(
    target: &Target,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
) -> Result<(u16, String), FlushError> {
    post_reading(target, headers, body, 4096)
}

/// [`post`], reading up to `limit` bytes of the response (a destination
/// that answers per item, such as Elasticsearch's `_bulk`, needs it all).
pub fn post_reading(
    target: &Target,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
    limit: usize,
) -> Result<(u16, String), FlushError> {
    let (status, bytes) = post_bytes(target, headers, body, limit)?;
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// [`post_reading`] for a binary answer (a protobuf response).
pub fn post_bytes(
    target: &Target,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
    limit: usize,
) -> Result<(u16, Vec<u8>), FlushError> {
    send(Method::Post, target, headers, body, limit)
}

/// The request methods flushers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `POST`.
    Post,
    /// `PUT` (an S3 object).
    Put,
}

/// Sends `body` with `method`; returns the status and up to `limit` bytes
/// of the response.
pub fn send(
    method: Method,
    target: &Target,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
    limit: usize,
) -> Result<(u16, Vec<u8>), FlushError> {
    #[cfg(target_arch = "wasm32")]
    return transport::send(method, target, headers, body, limit);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (method, target, headers, body, limit);
        Err(FlushError::Retryable(
            "wasi:http is only available inside the Gleaner host".into(),
        ))
    }
}

/// The `wasi:http` request: build, stream the body, wait for the status.
#[cfg(target_arch = "wasm32")]
mod transport {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
    use wasip2::io::streams::StreamError;

    use super::Target;
    use crate::FlushError;

    fn transient(what: &str, e: impl std::fmt::Debug) -> FlushError {
        FlushError::Retryable(format!("{what}: {e:?}"))
    }

    fn failed(e: ErrorCode) -> FlushError {
        match e {
            ErrorCode::HttpRequestDenied => {
                FlushError::Rejected("the destination is not in this flusher's grants.hosts".into())
            }
            // Retried: a certificate gets renewed, a CA file fixed; the host's
            // log says what the handshake refused.
            ErrorCode::TlsCertificateError => FlushError::Retryable(
                "TLS: the destination's certificate is not trusted (see the agent's log)".into(),
            ),
            other => transient("request failed", other),
        }
    }

    /// Sends `body`; returns the status and up to `limit` bytes of the response.
    pub fn send(
        method: super::Method,
        target: &Target,
        headers: &[(String, Vec<u8>)],
        body: &[u8],
        limit: usize,
    ) -> Result<(u16, Vec<u8>), FlushError> {
        let fields = Fields::from_list(headers)
            .map_err(|e| FlushError::Rejected(format!("headers: {e:?}")))?;
        // A length, not chunked encoding: S3 refuses a PUT without one
        // (411), and every destination can size its buffer.
        if !headers.iter().any(|(k, _)| k == "content-length") {
            fields
                .append("content-length", body.len().to_string().as_bytes())
                .map_err(|e| FlushError::Rejected(format!("headers: {e:?}")))?;
        }
        let request = OutgoingRequest::new(fields);
        let bad = |what: &str| FlushError::Rejected(format!("invalid {what}"));
        request
            .set_method(&match method {
                super::Method::Post => Method::Post,
                super::Method::Put => Method::Put,
            })
            .map_err(|()| bad("method"))?;
        request
            .set_scheme(Some(if target.https {
                &Scheme::Https
            } else {
                &Scheme::Http
            }))
            .map_err(|()| bad("scheme"))?;
        request
            .set_authority(Some(&target.authority))
            .map_err(|()| bad("authority"))?;
        request
            .set_path_with_query(Some(&target.path))
            .map_err(|()| bad("path"))?;
        let outgoing = request.body().map_err(|()| bad("body"))?;
        let future = outgoing_handler::handle(request, None).map_err(failed)?;
        {
            let stream = outgoing.write().map_err(|()| bad("body stream"))?;
            let mut rest = body;
            while !rest.is_empty() {
                let permitted = stream
                    .check_write()
                    .map_err(|e| transient("write body", e))?
                    as usize;
                if permitted == 0 {
                    stream.subscribe().block();
                    continue;
                }
                let n = permitted.min(rest.len());
                stream
                    .write(&rest[..n])
                    .map_err(|e| transient("write body", e))?;
                rest = &rest[n..];
            }
            // With its content-length written the body is complete and the
            // stream may close under us: that is success, not an error (an
            // error here would send the request again).
            let done = |r: Result<u64, StreamError>| match r {
                Ok(n) => Ok(n > 0),
                Err(StreamError::Closed) => Ok(true),
                Err(e) => Err(transient("flush body", e)),
            };
            if done(stream.flush().map(|()| 0))? {
                // Closed already.
            } else {
                while !done(stream.check_write())? {
                    stream.subscribe().block();
                }
            }
        }
        OutgoingBody::finish(outgoing, None).map_err(failed)?;
        let response = loop {
            match future.get() {
                Some(r) => break r,
                None => future.subscribe().block(),
            }
        };
        let response = response
            .map_err(|()| transient("response", "already taken"))?
            .map_err(failed)?;
        let status = response.status();
        let mut text = Vec::new();
        if let Ok(incoming) = response.consume()
            && let Ok(input) = incoming.stream()
        {
            while text.len() < limit {
                match input.blocking_read(65536) {
                    Ok(chunk) if !chunk.is_empty() => text.extend_from_slice(&chunk),
                    _ => break,
                }
            }
        }
        Ok((status, text))
    }
}

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
        assert!(matches!(outcome(401, ""), Err(FlushError::Retryable(_))));
        assert!(matches!(outcome(404, ""), Err(FlushError::Rejected(_))));
        let ends = [10, 20, 35, 40];
        let cut: Vec<_> = split(&[0; 40], &ends, 20)
            .into_iter()
            .map(|r| (r.events, r.body.len()))
            .collect();
        assert_eq!(cut, [(0..2, 20), (2..4, 20)]);
        assert_eq!(split(&[0; 40], &ends, 5).len(), 4);
        assert_eq!(
            basic_auth("elastic", "pw").1,
            b"Basic ZWxhc3RpYzpwdw==".to_vec()
        );
    }
}
