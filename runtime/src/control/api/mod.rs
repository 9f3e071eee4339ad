//! The local HTTP API: `GET /healthz` (the process answers), `GET /readyz`
//! (every pipeline source has started its pipelines, and the agent is not
//! stopping), `GET /metrics` (Prometheus text, `metrics`), `GET
//! /api/v1/pipelines` (what runs, who runs it, plugin versions, swaps and
//! rollbacks, counters, queues, read progress), `GET /api/v1/plugins`
//! (builtins, bundles and refused bundles, and who uses them), `POST
//! /api/v1/reload` (reload the config file, answer with the outcome),
//! `GET /api/v1/tap` (a live sample of a stage's events: `stream`), `POST
//! /api/v1/pipelines/NAME/dead-letter/replay` (`dead_letter`). Served by
//! one thread of its own, so a busy pipeline never delays a probe.
//!
//! Reads the supervisor's state; never starts or stops anything.

mod dead_letter;
mod metrics;
pub mod stream;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::control::progress::Progress;
use crate::control::reload::{Outcome, Reloader};
use crate::control::supervisor::{PipelineView, Supervisor};

/// What the probes report.
#[derive(Debug, Default)]
pub struct Health {
    /// Set once every pipeline source has applied its first set.
    pub ready: AtomicBool,
    /// Connections closed because [`MAX_CONNECTIONS`] newer ones came.
    pub connections_evicted: crate::telemetry::Counter,
    /// Failed accepts (e.g. out of descriptors).
    pub accept_errors: crate::telemetry::Counter,
}

/// What the API reads.
pub struct ApiContext {
    /// The running pipelines.
    pub supervisor: Arc<Supervisor>,
    /// Checkpoints: not ready while they cannot be written.
    pub store: Arc<crate::state::checkpoint::CheckpointStore>,
    /// What `POST` endpoints require as `Authorization: Bearer TOKEN`.
    pub token: Option<crate::config::Secret>,
    /// Readiness.
    pub health: Arc<Health>,
    /// Config reloads (`None` for one-off runs).
    pub reloader: Option<Reloader>,
    /// Read progress samples.
    pub progress: Arc<Progress>,
    /// The plugins directory, if set.
    pub plugins_dir: Option<std::path::PathBuf>,
    /// Per-file metrics on `/metrics`.
    pub file_metrics: bool,
}

/// Connections open at once. A new connection past it closes the oldest
/// one, so idle clients can neither take the descriptors the data path
/// needs nor lock out a probe that arrives after them.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send a request's headers (also how long a
/// kept-alive connection may sit idle between requests).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of one connection (keep-alive included).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Binds `addr` now (so a taken port is a startup error) and serves on a
/// thread of its own until the process ends.
pub fn serve(addr: SocketAddr, ctx: ApiContext) -> std::io::Result<SocketAddr> {
    if !addr.ip().is_loopback() && ctx.token.is_none() {
        tracing::warn!(address = %addr, "The API listens beyond loopback without api.token: anyone who can reach it can reload the config.");
    }
    let ctx = Arc::new(ctx);
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
            rt.block_on(accept_loop(listener, ctx));
        })?;
    tracing::info!(address = %bound, "Serving the API (/healthz, /readyz, /metrics, /api/v1/pipelines, /api/v1/plugins, /api/v1/reload, /api/v1/tap).");
    Ok(bound)
}

/// Accepts connections, at most [`MAX_CONNECTIONS`] open at once (the
/// oldest closed for a new one), each with header and lifetime timeouts;
/// backs off when accepting fails (e.g. out of descriptors) instead of
/// spinning.
async fn accept_loop(listener: std::net::TcpListener, ctx: Arc<ApiContext>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "Cannot serve the API.");
            return;
        }
    };
    let open: Arc<std::sync::Mutex<OpenConnections>> = Arc::default();
    // One permit per open socket, given back when its task has dropped it:
    // an evicted connection's descriptor is closed before the next accept,
    // so a burst of clients never holds more than MAX_CONNECTIONS + 1.
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut next_id = 0u64;
    let mut backoff = Duration::from_millis(10);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff = Duration::from_millis(10);
                stream
            }
            Err(e) => {
                ctx.health.accept_errors.inc();
                tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "API cannot accept a connection; backing off.");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let id = next_id;
        next_id += 1;
        let close = Arc::new(tokio::sync::Notify::new());
        {
            let mut open = open.lock().unwrap_or_else(|p| p.into_inner());
            while open.len() >= MAX_CONNECTIONS {
                if let Some((_, oldest)) = open.pop_front() {
                    oldest.notify_one();
                    ctx.health.connections_evicted.inc();
                }
            }
            open.push_back((id, close.clone()));
        }
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return; // never closed
        };
        let (ctx, open) = (ctx.clone(), open.clone());
        tokio::spawn(async move {
            // Set once the connection streams a tap: it may outlive
            // CONNECTION_TIMEOUT (a tap ends by its limit, or when the
            // client or the pipeline goes).
            let streaming = Arc::new(AtomicBool::new(false));
            let flag = streaming.clone();
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let (ctx, flag) = (ctx.clone(), flag.clone());
                async move {
                    let r = handle(req, ctx).await;
                    if matches!(r.body(), Either::Right(_)) {
                        flag.store(true, Ordering::Relaxed);
                    }
                    Ok::<_, Infallible>(r)
                }
            });
            let conn = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            {
                let mut conn = std::pin::pin!(conn);
                tokio::select! {
                    _ = tokio::time::timeout(CONNECTION_TIMEOUT, &mut conn) => {
                        if streaming.load(Ordering::Relaxed) {
                            tokio::select! {
                                _ = &mut conn => {}
                                _ = close.notified() => {}
                            }
                        }
                    }
                    _ = close.notified() => {}
                }
            } // the socket is closed here
            open.lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|(i, _)| *i != id);
            drop(slot);
        });
    }
}

/// A response body: whole, or a tap's stream.
pub(super) type Body = Either<Full<Bytes>, stream::TapBody>;

/// Open connections, oldest first: (id, how to close it).
type OpenConnections = std::collections::VecDeque<(u64, Arc<tokio::sync::Notify>)>;

async fn handle(req: Request<hyper::body::Incoming>, ctx: Arc<ApiContext>) -> Response<Body> {
    let path = req.uri().path();
    // Changes, and the events themselves, need the token when one is set.
    let guarded = req.method() == Method::POST || path == "/api/v1/tap";
    if guarded && !authorized(&req, ctx.token.as_ref()) {
        let mut r = reply(
            StatusCode::UNAUTHORIZED,
            "text/plain; charset=utf-8",
            "this endpoint needs `Authorization: Bearer <api.token>`\n".into(),
        );
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    if req.method() == Method::GET && path == "/api/v1/tap" {
        return stream::tap(req.uri(), &ctx.supervisor);
    }
    if req.method() == Method::POST
        && let Some(name) = dead_letter::replay_target(path)
    {
        // It rewrites the dead-letter file: off this thread.
        let (name, uri, ctx) = (name.to_owned(), req.uri().clone(), ctx.clone());
        return tokio::task::spawn_blocking(move || {
            dead_letter::replay(&name, &uri, &ctx.supervisor)
        })
        .await
        .unwrap_or_else(|e| {
            reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                format!("{e}\n"),
            )
        });
    }
    if req.method() == Method::POST && path == "/api/v1/reload" {
        // A reload compiles plugins: off this thread.
        let reloader = ctx.reloader.clone();
        let outcome =
            tokio::task::spawn_blocking(move || reloader.and_then(|r| r.reload_now("api")))
                .await
                .ok()
                .flatten();
        return reload_reply(outcome);
    }
    route(&req, &ctx)
}

/// True if no token is set, or the request carries it.
fn authorized<B>(req: &Request<B>, token: Option<&crate::config::Secret>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let given = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compared in time independent of where they differ.
    let (a, b) = (given.as_bytes(), token.0.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Body> {
    let mut r = Response::new(Either::Left(Full::new(Bytes::from(body))));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn reload_reply(outcome: Option<Outcome>) -> Response<Body> {
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

fn route<B>(req: &Request<B>, ctx: &ApiContext) -> Response<Body> {
    let (sup, health, reloader) = (&ctx.supervisor, &ctx.health, ctx.reloader.as_ref());
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "use GET (POST only for /api/v1/reload and dead-letter replays)\n".into(),
        );
    }
    match req.uri().path() {
        "/healthz" => reply(StatusCode::OK, TEXT, "ok\n".into()),
        "/readyz" => {
            if sup.stopping() {
                reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, "stopping\n".into())
            } else if !ctx.store.writable() {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT,
                    "checkpoints cannot be written (see the agent's log)\n".into(),
                )
            } else if health.ready.load(Ordering::Relaxed) {
                reply(StatusCode::OK, TEXT, "ready\n".into())
            } else {
                reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, "starting\n".into())
            }
        }
        "/metrics" => {
            let mut e = crate::telemetry::Exposition::default();
            metrics::pipelines(&mut e, &sup.views(), &ctx.progress, ctx.file_metrics);
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
            metrics::agent(&mut e, &ctx.store, health);
            reply(StatusCode::OK, "text/plain; version=0.0.4", e.render())
        }
        "/api/v1/pipelines" => {
            let list: Vec<serde_json::Value> = sup
                .views()
                .iter()
                .map(|v| pipeline_json(v, &ctx.progress))
                .collect();
            reply(
                StatusCode::OK,
                "application/json",
                serde_json::json!({ "pipelines": list }).to_string(),
            )
        }
        "/api/v1/plugins" => reply(
            StatusCode::OK,
            "application/json",
            plugins_json(&sup.views(), ctx.plugins_dir.as_deref()).to_string(),
        ),
        _ => reply(StatusCode::NOT_FOUND, TEXT, "not found\n".into()),
    }
}

/// One pipeline for `/api/v1/pipelines`.
fn pipeline_json(v: &PipelineView, progress: &Progress) -> serde_json::Value {
    use serde_json::json;
    let plugins = |entries: &[crate::config::PluginEntry]| -> Vec<serde_json::Value> {
        entries
            .iter()
            .map(|e| {
                let mut p = json!({"key": e.key, "plugin": e.reference});
                if let crate::plugin::PluginSource::Bundle { sha256, .. } = &e.spec.source {
                    p["sha256"] = json!(sha256);
                }
                p
            })
            .collect()
    };
    let state = if v.swap.probation.is_some() {
        "probation"
    } else if v.held_back {
        "rolled_back"
    } else {
        "running"
    };
    let s = &v.stats;
    let inputs: Vec<serde_json::Value> = v
        .inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let mut j = json!({
                "input": i,
                "lines": input.lines_read.get(),
                "bytes": input.bytes.get(),
                "files_open": input.files_opened.get().saturating_sub(input.files_closed.get()),
            });
            if let Some(mut p) = progress.input(&format!("{}/{i}", v.name)) {
                // The ten files furthest behind.
                p.per_file.truncate(10);
                j["progress"] = json!(p);
            }
            j
        })
        .collect();
    let mut j = json!({
        "name": v.name,
        "source": v.owner,
        "state": state,
        "generation": v.swap.active,
        "swaps": v.swap.swaps,
        "rollbacks": v.swap.rollbacks,
        "counters": s.each().map(|c| (c.name.to_owned(), json!(c.value))).collect::<serde_json::Map<_, _>>(),
        "queues": v.queues.iter().map(|(n, d)| (n.clone(), json!(d))).collect::<serde_json::Map<_, _>>(),
        "inputs": inputs,
        "taps": v.taps,
    });
    if let Some(r) = &v.resend {
        j["dead_letter_replay"] = json!(r);
    }
    if let Some(c) = &v.config {
        j["processors"] = json!(plugins(&c.processors));
        j["flushers"] = json!(plugins(&c.flushers));
    }
    if let Some(p) = &v.swap.probation {
        j["probation"] =
            json!({"generation": p.generation, "batches_seen": p.seen, "batches_failed": p.failed});
    }
    if let Some(r) = &v.swap.last_rollback {
        j["last_rollback"] = json!({
            "generation": r.generation,
            "restored_generation": r.restored,
            "batches_failed": r.failed,
            "batches_seen": r.seen,
            "error": r.error,
            "at": humantime::format_rfc3339_seconds(r.at).to_string(),
        });
    }
    j
}

/// `/api/v1/plugins`: builtins, bundles (and which pipelines run them),
/// refused bundles.
fn plugins_json(views: &[PipelineView], dir: Option<&std::path::Path>) -> serde_json::Value {
    use serde_json::json;
    let used_by = |reference: &str| -> Vec<String> {
        views
            .iter()
            .filter(|v| {
                v.config.as_ref().is_some_and(|c| {
                    c.processors
                        .iter()
                        .chain(&c.flushers)
                        .any(|e| e.reference == reference)
                })
            })
            .map(|v| v.name.clone())
            .collect()
    };
    let builtins: Vec<serde_json::Value> = crate::plugin::builtin::names()
        .map(|n| {
            let reference = format!("builtin:{n}");
            json!({"name": reference, "used_by": used_by(&reference)})
        })
        .collect();
    let mut j = json!({ "builtin": builtins });
    if let Some(dir) = dir {
        match crate::plugin::bundle::Registry::scan(dir) {
            Ok(reg) => {
                let bundles: Vec<serde_json::Value> = reg
                    .bundles
                    .iter()
                    .map(|b| {
                        let mut v = json!(b);
                        v["id"] = json!(b.id());
                        v["used_by"] = json!(used_by(&b.id()));
                        v
                    })
                    .collect();
                j["plugins_dir"] = json!(dir);
                j["bundles"] = json!(bundles);
                j["refused"] = json!(reg.refused);
            }
            Err(e) => {
                j["plugins_dir"] = json!(dir);
                j["error"] = json!(format!("cannot read {}: {e}", dir.display()));
            }
        }
    }
    j
}
