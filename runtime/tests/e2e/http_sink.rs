//! A real HTTP/1.1 server (hyper) for flusher tests: records every request
//! (headers, decoded body), counts TCP connections, and answers with a
//! scripted sequence of statuses before answering 200.

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
    pub script: VecDeque<u16>,
    /// While set, every request gets 503.
    pub down: bool,
}

pub struct Sink {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
    _rt: tokio::runtime::Runtime,
}

fn decode(encoding: Option<&str>, raw: &[u8]) -> Vec<u8> {
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            on_accept();
            let handle = handle.clone();
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(handle))
                    .await;
            });
        }
    });
    (addr, rt)
}

impl Sink {
    /// Starts the server; the first `script.len()` requests get those statuses.
    pub fn start(script: &[u16]) -> Sink {
        let state = Arc::new(Mutex::new(State {
            script: script.iter().copied().collect(),
            ..State::default()
        }));
        let counted = state.clone();
        let st = state.clone();
        let (addr, rt) = serve(
            move || counted.lock().unwrap().connections += 1,
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
