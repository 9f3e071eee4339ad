//! A real HTTP/1.1 server (hyper) for flusher tests: records every request
//! (headers, decoded body), counts TCP connections, and answers with a
//! scripted sequence of statuses before answering 200; over plain TCP or
//! TLS (rustls, optionally requiring a client certificate).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[derive(Debug, Clone)]
pub struct Received {
    pub encoding: Option<String>,
    pub content_type: Option<String>,
    pub path: String,
    /// `authorization` and `x-api-key`, as sent.
    pub credentials: (Option<String>, Option<String>),
    /// The body after undoing `content-encoding`.
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: std::time::SystemTime,
}

#[derive(Default)]
pub struct State {
    pub requests: Vec<Received>,
    pub connections: usize,
    /// TLS handshakes that failed, with rustls's reason.
    pub handshake_errors: Vec<String>,
    pub script: VecDeque<u16>,
    /// While set, every request gets 503.
    pub down: bool,
}

pub struct Sink {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
    _rt: tokio::runtime::Runtime,
}

pub fn decode(encoding: Option<&str>, raw: &[u8]) -> Vec<u8> {
    match encoding {
        Some("zstd") => zstd::stream::decode_all(raw).expect("valid zstd"),
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(raw)
                .read_to_end(&mut out)
                .expect("valid gzip");
            out
        }
        _ => raw.to_vec(),
    }
}

/// Serves HTTP/1.1 on an ephemeral 127.0.0.1 port from a runtime of its
/// own (kept alive by the caller): `on_accept` runs for every connection,
/// `handle` for every request.
pub fn serve<H, Fut, B>(
    on_accept: impl Fn() + Send + Sync + 'static,
    handle: H,
) -> (SocketAddr, tokio::runtime::Runtime)
where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_on(None, on_accept, |_| {}, handle)
}

/// [`serve`], over TLS when `tls` is given; `on_tls_error` gets each
/// failed handshake's reason.
pub fn serve_on<H, Fut, B>(
    tls: Option<Arc<rustls::ServerConfig>>,
    on_accept: impl Fn() + Send + Sync + 'static,
    on_tls_error: impl Fn(String) + Send + Sync + 'static,
    handle: H,
) -> (SocketAddr, tokio::runtime::Runtime)
where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let on_tls_error = Arc::new(on_tls_error);
    rt.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            on_accept();
            let handle = handle.clone();
            let acceptor = acceptor.clone();
            let on_tls_error = on_tls_error.clone();
            tokio::spawn(async move {
                let http = http1::Builder::new();
                match acceptor {
                    None => {
                        let _ = http
                            .serve_connection(TokioIo::new(stream), service_fn(handle))
                            .await;
                    }
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(tls) => {
                            let _ = http
                                .serve_connection(TokioIo::new(tls), service_fn(handle))
                                .await;
                        }
                        Err(e) => on_tls_error(e.to_string()),
                    },
                }
            });
        }
    });
    (addr, rt)
}

impl Sink {
    /// Starts the server; the first `script.len()` requests get those statuses.
    pub fn start(script: &[u16]) -> Sink {
        Sink::start_on(None, script)
    }

    /// [`Sink::start`] over TLS.
    pub fn start_tls(tls: Arc<rustls::ServerConfig>) -> Sink {
        Sink::start_on(Some(tls), &[])
    }

    fn start_on(tls: Option<Arc<rustls::ServerConfig>>, script: &[u16]) -> Sink {
        let state = Arc::new(Mutex::new(State {
            script: script.iter().copied().collect(),
            ..State::default()
        }));
        let counted = state.clone();
        let refused = state.clone();
        let st = state.clone();
        let (addr, rt) = serve_on(
            tls,
            move || counted.lock().unwrap().connections += 1,
            move |e| refused.lock().unwrap().handshake_errors.push(e),
            move |req: Request<Incoming>| {
                let st = st.clone();
                async move {
                    let header = |n: &str| {
                        req.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    let encoding = header("content-encoding");
                    let content_type = header("content-type");
                    let credentials = (header("authorization"), header("x-api-key"));
                    let path = req
                        .uri()
                        .path_and_query()
                        .map(|p| p.to_string())
                        .unwrap_or_default();
                    let raw = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let body = decode(encoding.as_deref(), &raw);
                    let status = {
                        let mut s = st.lock().unwrap();
                        let status = if s.down {
                            503
                        } else {
                            s.script.pop_front().unwrap_or(200)
                        };
                        if status == 200 {
                            s.requests.push(Received {
                                encoding,
                                content_type,
                                path,
                                credentials,
                                body,
                                at: std::time::SystemTime::now(),
                            });
                        }
                        status
                    };
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::from_static(b"ok")))
                            .unwrap(),
                    )
                }
            },
        );
        Sink {
            addr,
            state,
            _rt: rt,
        }
    }

    /// Events received in accepted requests, as JSON.
    pub fn events(&self) -> Vec<serde_json::Value> {
        let s = self.state.lock().unwrap();
        s.requests
            .iter()
            .flat_map(|r| crate::common::json_lines(&r.body))
            .collect()
    }
}
