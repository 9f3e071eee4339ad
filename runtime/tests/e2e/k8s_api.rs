//! A fixture Kubernetes API server for the pods resource, speaking the real
//! wire format with `k8s-openapi` types: list (`PodList` with
//! `resourceVersion`, `fieldSelector=spec.nodeName=…`), watch streams of
//! ADDED / MODIFIED / DELETED and BOOKMARK events resumed from a
//! resourceVersion, `410 Gone` (an ERROR event with an `Expired` Status, as
//! the API server sends for a compacted resourceVersion), and dropped
//! connections. It counts every request, so tests can assert how many the
//! agent made. Only for what a real API server (`k8s_kit.rs`) cannot be
//! made to do on demand: custom resources, namespaces and status writes are
//! tested against the real one.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, Status, WatchEvent};
use tokio::sync::mpsc;

#[derive(Default)]
pub struct ApiState {
    pub rv: u64,
    /// Live pods by uid.
    pub pods: BTreeMap<String, Pod>,
    /// Every change: (resourceVersion, event).
    history: Vec<(u64, WatchEvent<Pod>)>,
    /// Watches from a resourceVersion below this get 410 Gone.
    compacted_before: u64,
    /// Open watch streams and the node each selects.
    watchers: Vec<(Option<String>, mpsc::UnboundedSender<Bytes>)>,
    pub lists: usize,
    pub watches: usize,
    pub gone: usize,
    pub other: usize,
}

pub struct ApiServer {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<ApiState>>,
    _rt: tokio::runtime::Runtime,
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref()
}

fn line<T: serde::Serialize>(v: &T) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap();
    b.push(b'\n');
    Bytes::from(b)
}

fn selects(node: &Option<String>, pod: &Pod) -> bool {
    node.as_deref().is_none_or(|n| node_of(pod) == Some(n))
}

impl ApiState {
    fn record(&mut self, make: impl FnOnce(Pod) -> WatchEvent<Pod>, mut pod: Pod) {
        self.rv += 1;
        pod.metadata.resource_version = Some(self.rv.to_string());
        let ev = make(pod.clone());
        self.watchers
            .retain(|(node, tx)| !selects(node, &pod) || tx.send(line(&ev)).is_ok());
        self.history.push((self.rv, ev));
    }
}

/// A pod on `node` with one container per name, labelled `app: <name>`,
/// owned by the ReplicaSet its name says (`<rs>-<suffix>`).
pub fn pod(namespace: &str, name: &str, uid: &str, node: &str, containers: &[&str]) -> Pod {
    let rs = name.rsplit_once('-').map_or(name, |(rs, _)| rs);
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "namespace": namespace, "name": name, "uid": uid,
            "labels": {"app": name, "pod-template-hash": "5f7b9"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": rs, "uid": "rs", "controller": true}]
        },
        "spec": {
            "nodeName": node,
            "containers": containers.iter().map(|c| serde_json::json!({"name": c, "image": format!("{c}:1.0")})).collect::<Vec<_>>()
        }
    }))
    .unwrap()
}

impl ApiServer {
    pub fn start() -> ApiServer {
        let state = Arc::new(Mutex::new(ApiState {
            rv: 100,
            ..ApiState::default()
        }));
        let st = state.clone();
        let (addr, rt) = crate::http_sink::serve(
            || {},
            move |req: Request<Incoming>| {
                let st = st.clone();
                async move { Ok::<_, Infallible>(handle(&st, &req)) }
            },
        );
        ApiServer {
            addr,
            state,
            _rt: rt,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn add(&self, pod: Pod) {
        let mut s = self.state.lock().unwrap();
        let uid = pod.metadata.uid.clone().unwrap();
        s.pods.insert(uid, pod.clone());
        s.record(WatchEvent::Added, pod);
    }

    pub fn delete(&self, uid: &str) {
        let mut s = self.state.lock().unwrap();
        let pod = s.pods.remove(uid).unwrap();
        s.record(WatchEvent::Deleted, pod);
    }

    /// Atomically: closes every watch, adds `pod` while none is open, and
    /// compacts history, so the agent's next watch gets 410 Gone.
    pub fn break_add_compact(&self, pod: Pod) {
        let mut s = self.state.lock().unwrap();
        s.watchers.clear();
        let uid = pod.metadata.uid.clone().unwrap();
        s.pods.insert(uid, pod.clone());
        s.record(WatchEvent::Added, pod);
        s.compacted_before = s.rv;
        s.history.clear();
    }

    pub fn watchers(&self) -> usize {
        self.state.lock().unwrap().watchers.len()
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(status: u16, body: Bytes) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(body).boxed())
        .unwrap()
}

/// A watch response: every line sent on `rx`, as it comes.
fn streaming(rx: mpsc::UnboundedReceiver<Bytes>) -> Response<Body> {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(StreamBody::new(stream).boxed())
        .unwrap()
}

fn handle(st: &Arc<Mutex<ApiState>>, req: &Request<Incoming>) -> Response<Body> {
    let mut s = st.lock().unwrap();
    if req.uri().path() != "/api/v1/pods" {
        s.other += 1;
        return full(404, Bytes::from_static(b"{}"));
    }
    let query: BTreeMap<String, String> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.replace("%3D", "=").replace("%3d", "=")))
        .collect();
    let node = query
        .get("fieldSelector")
        .and_then(|f| f.strip_prefix("spec.nodeName="))
        .map(str::to_owned);
    if query.get("watch").map(String::as_str) != Some("true") {
        s.lists += 1;
        let list = k8s_openapi::List::<Pod> {
            items: s
                .pods
                .values()
                .filter(|p| selects(&node, p))
                .cloned()
                .collect(),
            metadata: ListMeta {
                resource_version: Some(s.rv.to_string()),
                ..ListMeta::default()
            },
        };
        return full(200, line(&list));
    }
    s.watches += 1;
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    if from < s.compacted_before {
        s.gone += 1;
        let status = Status {
            code: Some(410),
            message: Some(format!(
                "too old resource version: {from} ({})",
                s.compacted_before
            )),
            reason: Some("Expired".into()),
            status: Some("Failure".into()),
            ..Status::default()
        };
        let _ = tx.send(line(&WatchEvent::<Pod>::ErrorStatus(status)));
    } else {
        for (rv, ev) in &s.history {
            let pod = match ev {
                WatchEvent::Added(p) | WatchEvent::Modified(p) | WatchEvent::Deleted(p) => p,
                _ => continue,
            };
            if *rv > from && selects(&node, pod) {
                let _ = tx.send(line(ev));
            }
        }
        // As the API server sends it: the object carries apiVersion and
        // kind (k8s-openapi's `WatchEvent::Bookmark` leaves them out, and
        // kube rejects a bookmark without them).
        let bookmark = serde_json::json!({
            "type": "BOOKMARK",
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"resourceVersion": s.rv.to_string()}}
        });
        let _ = tx.send(line(&bookmark));
        s.watchers.push((node, tx));
    }
    streaming(rx)
}
