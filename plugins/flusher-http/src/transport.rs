//! The `wasi:http` request: build, stream the body, wait for the status.
//! Only compiled for the component (wasm32).

use gleaner_sdk::FlushError;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, Scheme};

use super::Target;

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

/// POSTs `body`; returns the status and up to 4 KiB of the response text.
pub fn post(
    target: &Target,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
) -> Result<(u16, String), FlushError> {
    let fields =
        Fields::from_list(headers).map_err(|e| FlushError::Rejected(format!("headers: {e:?}")))?;
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
                .map_err(|e| transient("write body", e))? as usize;
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
        while text.len() < 4096 {
            match input.blocking_read(4096) {
                Ok(chunk) if !chunk.is_empty() => text.extend_from_slice(&chunk),
                _ => break,
            }
        }
    }
    Ok((status, String::from_utf8_lossy(&text).into_owned()))
}
