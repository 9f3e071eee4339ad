//! `builtin:elasticsearch`. No server is packaged here, so [`Bulk`] implements the
//! `_bulk` API from its reference: NDJSON action/document pairs, dynamic
//! mapping (the first value of a field fixes its type; a later document
//! that does not fit is refused with `400 mapper_parsing_exception`), `create`
//! of an existing `_id` refused with `409`, per-item `429
//! es_rejected_execution_exception` when its queue is full, all in a `200`
//! answer with `"errors": true`; and whole-request `503`s.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::io::Read;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use serde_json::{Value, json};

use crate::common::*;

/// What the receiver holds and how it misbehaves.
#[derive(Default)]
struct Cluster {
    /// index → documents (with `_id` if given).
    docs: BTreeMap<String, Vec<(Option<String>, Value)>>,
    /// index → field → mapped type.
    mappings: HashMap<String, HashMap<String, &'static str>>,
    /// Whole requests to answer 503 before any work.
    unavailable: usize,
    /// Items still to throttle (429), counted across requests.
    throttle: usize,
    /// Every request: (authorization, documents in it).
    requests: Vec<(Option<String>, usize)>,
}

fn mapped_type(v: &Value) -> &'static str {
    match v {
        Value::Number(n) if n.is_i64() || n.is_u64() => "long",
        Value::Number(_) => "float",
        Value::Bool(_) => "boolean",
        Value::Null => "null",
        Value::Object(_) => "object",
        _ => "text",
    }
}

impl Cluster {
    /// One bulk item: the item's answer.
    fn item(&mut self, verb: &str, meta: &Value, doc: Value) -> Value {
        let index = meta["_index"].as_str().unwrap_or("default").to_owned();
        let id = meta["_id"].as_str().map(str::to_owned);
        if self.throttle > 0 {
            self.throttle -= 1;
            return json!({verb: {"_index": index, "status": 429, "error": {
                "type": "es_rejected_execution_exception",
                "reason": "rejected execution of coordinating operation"}}});
        }
        let mapping = self.mappings.entry(index.clone()).or_default();
        if let Value::Object(fields) = &doc {
            for (k, v) in fields {
                let (want, got) = (mapping.get(k.as_str()).copied(), mapped_type(v));
                if v.is_null() {
                    continue;
                }
                match want {
                    Some(want) if want != got && !(want == "float" && got == "long") => {
                        return json!({verb: {"_index": index, "status": 400, "error": {
                            "type": "mapper_parsing_exception",
                            "reason": format!("failed to parse field [{k}] of type [{want}]")}}});
                    }
                    Some(_) => {}
                    None => {
                        mapping.insert(k.clone(), got);
                    }
                }
            }
        }
        let docs = self.docs.entry(index.clone()).or_default();
        if verb == "create" && id.is_some() && docs.iter().any(|(d, _)| *d == id) {
            return json!({verb: {"_index": index, "status": 409, "error": {
                "type": "version_conflict_engine_exception",
                "reason": "document already exists"}}});
        }
        docs.push((id, doc));
        json!({verb: {"_index": index, "status": 201, "result": "created"}})
    }
}

/// A `_bulk` endpoint on 127.0.0.1.
struct Bulk {
    addr: std::net::SocketAddr,
    cluster: Arc<Mutex<Cluster>>,
    _rt: tokio::runtime::Runtime,
}

impl Bulk {
    fn start(unavailable: usize, throttle: usize) -> Bulk {
        let cluster = Arc::new(Mutex::new(Cluster {
            unavailable,
            throttle,
            ..Cluster::default()
        }));
        let c = cluster.clone();
        let (addr, rt) = crate::http_sink::serve(
            || {},
            move |req: Request<Incoming>| {
                let c = c.clone();
                async move {
                    let path = req.uri().path().to_owned();
                    let header = |n: &str| {
                        req.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    let (auth, encoding) = (header("authorization"), header("content-encoding"));
                    let raw = req.into_body().collect().await.unwrap().to_bytes();
                    let mut body = Vec::new();
                    if encoding.as_deref() == Some("gzip") {
                        flate2::read::GzDecoder::new(&raw[..])
                            .read_to_end(&mut body)
                            .unwrap();
                    } else {
                        body = raw.to_vec();
                    }
                    let (status, answer) = bulk(&mut c.lock().unwrap(), &path, auth, &body);
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(answer.to_string())))
                            .unwrap(),
                    )
                }
            },
        );
        Bulk {
            addr,
            cluster,
            _rt: rt,
        }
    }
}

fn bulk(c: &mut Cluster, path: &str, auth: Option<String>, body: &[u8]) -> (u16, Value) {
    if path != "/_bulk" {
        return (404, json!({"error": "no handler"}));
    }
    let lines: Vec<Value> = String::from_utf8_lossy(body)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).expect("bulk line is JSON"))
        .collect();
    c.requests.push((auth, lines.len() / 2));
    if c.unavailable > 0 {
        c.unavailable -= 1;
        return (
            503,
            json!({"error": {"type": "unavailable_shards_exception"}, "status": 503}),
        );
    }
    let mut items = Vec::new();
    for pair in lines.chunks(2) {
        let (verb, meta) = pair[0].as_object().unwrap().iter().next().unwrap();
        items.push(c.item(verb, meta, pair[1].clone()));
    }
    let errors = items.iter().any(|i| {
        i.as_object()
            .unwrap()
            .values()
            .any(|v| v["status"].as_u64() != Some(201))
    });
    (200, json!({"took": 3, "errors": errors, "items": items}))
}

#[test]
fn elasticsearch_bulk_retries_and_dead_letters_item_by_item() {
    let es = Bulk::start(1, 3);
    let env = Env::new();
    // Every 50th document has a text `n` where the index mapped a long.
    let lines: String = (0..300)
        .map(|i| {
            if i % 50 == 25 {
                format!("{{\"n\":\"bad-{i}\",\"level\":\"info\"}}\n")
            } else {
                format!("{{\"n\":{i},\"level\":\"info\"}}\n")
            }
        })
        .collect();
    env.write("in.log", &lines);
    let config = env.config(&format!(
        r#"
  - name: es
    batch: {{ max_events: 100, linger: 50ms }}
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    processors: [ {{ plugin: builtin:parse-json }} ]
    flushers:
      - plugin: builtin:elasticsearch
        config: {{ url: "http://{addr}", index: "logs-{{level}}-%Y.%m", api_key: "${{ES_API_KEY}}", compression: gzip }}
        grants: {{ hosts: ["{addr}"] }}
        on_error: {{ backoff: 20ms }}
"#,
        log = env.path("in.log").display(),
        addr = es.addr
    ));
    run_with_secret(&config, "ES_API_KEY", "c2VjcmV0OmtleQ==");
    let c = es.cluster.lock().unwrap();
    // Every good document once, in the index of its level and month;
    // none of the refused ones.
    let mut ns: Vec<i64> = Vec::new();
    for (index, docs) in &c.docs {
        for (_, d) in docs {
            let month = d["@timestamp"].as_str().unwrap()[..7].replace('-', ".");
            assert_eq!(index, &format!("logs-info-{month}"));
            ns.push(d["n"].as_i64().unwrap());
        }
    }
    ns.sort();
    let want: Vec<i64> = (0..300).filter(|i| i % 50 != 25).collect();
    assert_eq!(ns, want, "every accepted document exactly once");
    // The 503 was retried whole; then the 3 throttled items alone; nothing
    // accepted was sent twice.
    let sizes: Vec<usize> = c.requests.iter().map(|(_, n)| *n).collect();
    assert_eq!(sizes[0], sizes[1], "{sizes:?}");
    assert_eq!(sizes[2], 3, "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 300 + sizes[0] + 3, "{sizes:?}");
    assert!(
        c.requests
            .iter()
            .all(|(a, _)| a.as_deref() == Some("ApiKey c2VjcmV0OmtleQ=="))
    );
    drop(c);
    // The refused documents are in the dead-letter file with ES's reason.
    let dead = lines_in(&env.path("state/dead-letter/es.ndjson"));
    let bad: Vec<&str> = dead
        .iter()
        .map(|d| d["fields"]["n"].as_str().unwrap())
        .collect();
    assert_eq!(
        bad,
        [
            "bad-25", "bad-75", "bad-125", "bad-175", "bad-225", "bad-275"
        ]
    );
    for d in &dead {
        let reason = d["reason"].as_str().unwrap();
        assert!(
            reason.contains("mapper_parsing_exception: failed to parse field [n] of type [long]"),
            "{reason}"
        );
    }
}
