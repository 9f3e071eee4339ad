//! The local HTTP API: `GET /healthz` (the process answers), `GET /readyz`
//! (every pipeline source has started its pipelines, and the agent is not
//! stopping), `GET /metrics` (Prometheus text, `metrics`), `GET
//! /api/v1/pipelines` (what runs, who runs it, plugin versions, swaps and
//! rollbacks, counters, queues, read progress), `GET /api/v1/plugins`
//! (builtins, bundles and refused bundles, and who uses them), `POST
//! /api/v1/reload` (reload the config file, answer with the outcome).
//! Served by one thread of its own, so a busy pipeline never delays a
//! probe.
//!
//! Reads the supervisor's state; never starts or stops anything.

mod metrics;

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

use crate::progress::Progress;
use crate::reload::{Outcome, Reloader};
use crate::supervisor::{PipelineView, Supervisor};

/// What the probes report.
#[derive(Debug, Default)]
pub struct Health {
    /// Set once every pipeline source has applied its first set.
    pub ready: AtomicBool,
}

/// What the API reads.
pub struct ApiContext {
    /// The running pipelines.
    pub supervisor: Arc<Supervisor>,
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

/// Binds `addr` now (so a taken port is a startup error) and serves on a
/// thread of its own until the process ends.
pub fn serve(addr: SocketAddr, ctx: ApiContext) -> std::io::Result<SocketAddr> {
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
                    let ctx = ctx.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                            let ctx = ctx.clone();
                            async move {
                                if req.method() == Method::POST
                                    && req.uri().path() == "/api/v1/reload"
                                {
                                    // A reload compiles plugins: off this thread.
                                    let reloader = ctx.reloader.clone();
                                    let outcome = tokio::task::spawn_blocking(move || {
                                        reloader.and_then(|r| r.reload_now("api"))
                                    })
                                    .await
                                    .ok()
                                    .flatten();
                                    return Ok::<_, Infallible>(reload_reply(outcome));
                                }
                                Ok::<_, Infallible>(route(&req, &ctx))
                            }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        })?;
    tracing::info!(address = %bound, "Serving the API (/healthz, /readyz, /metrics, /api/v1/pipelines, /api/v1/plugins, /api/v1/reload).");
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

fn route<B>(req: &Request<B>, ctx: &ApiContext) -> Response<Full<Bytes>> {
    let (sup, health, reloader) = (&ctx.supervisor, &ctx.health, ctx.reloader.as_ref());
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
                "lines": input.lines.get(),
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
        "counters": {
            "events_in": s.events_in.get(),
            "events_processed": s.events_processed.get(),
            "events_delivered": s.events_delivered.get(),
            "events_dead_lettered": s.events_dead_lettered.get(),
            "events_dropped": s.events_dropped.get(),
            "events_buffered": s.events_buffered.get(),
            "events_replayed": s.events_replayed.get(),
        },
        "queues": v.queues.iter().map(|(n, d)| (n.clone(), json!(d))).collect::<serde_json::Map<_, _>>(),
        "inputs": inputs,
    });
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
        match crate::bundle::Registry::scan(dir) {
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
