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
    #[cfg(target_arch = "wasm32")]
    return transport::post(target, headers, body, limit);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (target, headers, body, limit);
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

    /// POSTs `body`; returns the status and up to `limit` bytes of the response.
    pub fn post(
        target: &Target,
        headers: &[(String, Vec<u8>)],
        body: &[u8],
        limit: usize,
    ) -> Result<(u16, String), FlushError> {
        let fields = Fields::from_list(headers)
            .map_err(|e| FlushError::Rejected(format!("headers: {e:?}")))?;
        let request = OutgoingRequest::new(fields);
        let bad = |what: &str| FlushError::Rejected(format!("invalid {what}"));
        request
            .set_method(&Method::Post)
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
            stream.flush().map_err(|e| transient("flush body", e))?;
            loop {
                if stream
                    .check_write()
                    .map_err(|e| transient("flush body", e))?
                    > 0
                {
                    break;
                }
                stream.subscribe().block();
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
        Ok((status, String::from_utf8_lossy(&text).into_owned()))
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
    }
}
