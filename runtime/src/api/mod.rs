//! The local HTTP API: `GET /healthz` (the process answers), `GET /readyz`
//! (every pipeline source has started its pipelines, and the agent is not
//! stopping), `GET /api/v1/pipelines` (what runs, and which source runs
//! it), `POST /api/v1/reload` (reload the config file, answer with the
//! outcome). Served by one thread of its own, so a busy pipeline never delays a
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

use crate::reload::{Outcome, Reloader};
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
    reloader: Option<Reloader>,
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
                    let reloader = reloader.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                            let (sup, health, reloader) =
                                (sup.clone(), health.clone(), reloader.clone());
                            async move {
                                if req.method() == Method::POST
                                    && req.uri().path() == "/api/v1/reload"
                                {
                                    // A reload compiles plugins: off this thread.
                                    let outcome = tokio::task::spawn_blocking(move || {
                                        reloader.and_then(|r| r.reload_now("api"))
                                    })
                                    .await
                                    .ok()
                                    .flatten();
                                    return Ok::<_, Infallible>(reload_reply(outcome));
                                }
                                Ok::<_, Infallible>(route(&req, &sup, &health, reloader.as_ref()))
                            }
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

fn reload_reply(outcome: Option<Outcome>) -> Response<Full<Bytes>> {
    match outcome {
        Some(o) => reply(
            if o.applied {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            },
            "application/json",
            serde_json::to_string(&o).unwrap_or_default(),
        ),
        None => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "reloading is off (a one-off run, or the agent is stopping)\n".into(),
        ),
    }
}

fn route<B>(
    req: &Request<B>,
    sup: &Supervisor,
    health: &Health,
    reloader: Option<&Reloader>,
) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "use GET (POST only for /api/v1/reload)\n".into(),
        );
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
        "/metrics" => {
            let mut e = crate::telemetry::Exposition::default();
            sup.metrics(&mut e);
            if let Some(r) = reloader {
                for (result, c) in [("applied", &r.stats.applied), ("failed", &r.stats.failed)] {
                    e.counter(
                        "config_reloads_total",
                        "Config reloads, by result.",
                        &[("result", result)],
                        c.get() as f64,
                    );
                }
            }
            reply(StatusCode::OK, "text/plain; version=0.0.4", e.render())
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
