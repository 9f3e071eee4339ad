//! The local HTTP API: `GET /healthz` (the process answers), `GET /readyz`
//! (every pipeline source has started its pipelines, and the agent is not
//! stopping), `GET /api/v1/pipelines` (what runs, and which source runs
//! it). Served by one thread of its own, so a busy pipeline never delays a
//! probe.
//!
//! Reads the supervisor's state; never starts or stops anything.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::supervisor::Supervisor;

/// What the probes report.
#[derive(Debug, Default)]
pub struct Health {
    /// Set once every pipeline source has applied its first set.
    pub ready: AtomicBool,
}

/// Binds `addr` now (so a taken port is a startup error) and serves on a
/// thread of its own until the process ends.
pub fn serve(
    addr: SocketAddr,
    supervisor: Arc<Supervisor>,
    health: Arc<Health>,
) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("gleaner-api".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "Cannot start the API runtime.");
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "Cannot serve the API.");
                        return;
                    }
                };
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let (sup, health) = (supervisor.clone(), health.clone());
                    tokio::spawn(async move {
                        let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                            let reply = route(&req, &sup, &health);
                            async move { Ok::<_, Infallible>(reply) }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        })?;
    tracing::info!(address = %bound, "Serving the API (/healthz, /readyz, /api/v1/pipelines).");
    Ok(bound)
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn route<B>(req: &Request<B>, sup: &Supervisor, health: &Health) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET {
        return reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "use GET\n".into());
    }
    match req.uri().path() {
        "/healthz" => reply(StatusCode::OK, TEXT, "ok\n".into()),
        "/readyz" => {
            if sup.stopping() {
                reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, "stopping\n".into())
            } else if health.ready.load(Ordering::Relaxed) {
                reply(StatusCode::OK, TEXT, "ready\n".into())
            } else {
                reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, "starting\n".into())
            }
        }
        "/api/v1/pipelines" => {
            let list: Vec<serde_json::Value> = sup
                .pipelines()
                .into_iter()
                .map(|(name, owner)| serde_json::json!({"name": name, "source": owner}))
                .collect();
            reply(
                StatusCode::OK,
                "application/json",
                serde_json::json!({ "pipelines": list }).to_string(),
            )
        }
        _ => reply(StatusCode::NOT_FOUND, TEXT, "not found\n".into()),
    }
}
