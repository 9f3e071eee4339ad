//! `builtin:loki` against a receiver of Loki's push API, written from
//! Loki's `pkg/push/push.proto` and its documented answers: snappy
//! protobuf or JSON bodies; `X-Scope-OrgID` required (multi-tenant mode,
//! 401 `no org id` without it); a rate limit answered `429` with nothing
//! taken; entries older than `reject_old_samples_max_age` refused with a
//! `400` naming their stream (`entry for stream '{...}' has timestamp too
//! old: ...`) while the request's other streams are taken.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use prost::Message;

use crate::common::*;

/// `message PushRequest` of push.proto.
#[derive(Clone, PartialEq, prost::Message)]
struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    streams: Vec<StreamAdapter>,
}

/// `message StreamAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
struct StreamAdapter {
    #[prost(string, tag = "1")]
    labels: String,
    #[prost(message, repeated, tag = "2")]
    entries: Vec<EntryAdapter>,
    #[prost(uint64, tag = "3")]
    hash: u64,
}

/// `message EntryAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    timestamp: Option<Timestamp>,
    #[prost(string, tag = "2")]
    line: String,
    #[prost(message, repeated, tag = "3")]
    structured_metadata: Vec<LabelPairAdapter>,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, PartialEq, prost::Message)]
struct Timestamp {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

/// `message LabelPairAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
struct LabelPairAdapter {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    value: String,
}

/// One stored entry.
#[derive(Debug, Clone)]
struct Entry {
    tenant: String,
    labels: String,
    nanos: i64,
    line: String,
    metadata: BTreeMap<String, String>,
}

/// One entry as pushed: time, line, structured metadata.
type Received = (i64, String, BTreeMap<String, String>);

#[derive(Default)]
struct Store {
    entries: Vec<Entry>,
    /// Requests to answer 429 before taking any.
    rate_limited: usize,
    /// Entries older than this are refused.
    oldest: i64,
    /// Every request: (content type, entries in it, entries sorted per stream).
    requests: Vec<(String, usize, bool)>,
}

/// Parses Loki's label text `{a="x", b="y"}` (values Go-quoted).
fn parse_labels(text: &str) -> Option<BTreeMap<String, String>> {
    let inner = text.strip_prefix('{')?.strip_suffix('}')?;
    let mut out = BTreeMap::new();
    let mut rest = inner;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        out.insert(name.trim().to_owned(), value);
        rest = after[end + 1..].trim_start_matches(", ");
    }
    Some(out)
}

fn push(
    store: &mut Store,
    tenant: Option<String>,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    let Some(tenant) = tenant else {
        return (401, "no org id\n".into());
    };
    let streams: Vec<(String, Vec<Received>)> = if content_type == "application/x-protobuf" {
        let raw = snap::raw::Decoder::new()
            .decompress_vec(body)
            .expect("push bodies are snappy");
        let req = PushRequest::decode(&raw[..]).expect("a PushRequest");
        req.streams
            .into_iter()
            .map(|s| {
                let entries = s
                    .entries
                    .into_iter()
                    .map(|e| {
                        let t = e.timestamp.unwrap();
                        let md = e
                            .structured_metadata
                            .into_iter()
                            .map(|p| (p.name, p.value))
                            .collect();
                        (t.seconds * 1_000_000_000 + i64::from(t.nanos), e.line, md)
                    })
                    .collect();
                (s.labels, entries)
            })
            .collect()
    } else {
        let v: serde_json::Value = serde_json::from_slice(body).expect("JSON push");
        v["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let labels: Vec<String> = s["stream"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap()))
                    .collect();
                let entries = s["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| {
                        let md = e
                            .get(2)
                            .and_then(|m| m.as_object())
                            .map(|m| {
                                m.iter()
                                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                                    .collect()
                            })
                            .unwrap_or_default();
                        (
                            e[0].as_str().unwrap().parse().unwrap(),
                            e[1].as_str().unwrap().to_owned(),
                            md,
                        )
                    })
                    .collect();
                (format!("{{{}}}", labels.join(", ")), entries)
            })
            .collect()
    };
    let count = streams.iter().map(|(_, e)| e.len()).sum();
    let sorted = streams
        .iter()
        .all(|(_, e)| e.windows(2).all(|w| w[0].0 <= w[1].0));
    store
        .requests
        .push((content_type.to_owned(), count, sorted));
    if store.rate_limited > 0 {
        store.rate_limited -= 1;
        return (
            429,
            format!(
                "Ingestion rate limit exceeded for user {tenant} (limit: 4194304 bytes/sec) while attempting to ingest '{count}' lines totaling '1000' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased\n"
            ),
        );
    }
    let mut errors = Vec::new();
    for (labels, entries) in streams {
        // Loki re-renders the labels in its canonical form.
        let parsed = parse_labels(&labels).expect("valid label text");
        let canonical: Vec<String> = parsed.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        let canonical = format!("{{{}}}", canonical.join(", "));
        for (nanos, line, metadata) in entries {
            if nanos < store.oldest {
                errors.push(format!(
                    "entry for stream '{canonical}' has timestamp too old: {nanos}, oldest acceptable timestamp is: {}",
                    store.oldest
                ));
                continue;
            }
            store.entries.push(Entry {
                tenant: tenant.clone(),
                labels: canonical.clone(),
                nanos,
                line,
                metadata,
            });
        }
    }
    if errors.is_empty() {
        (204, String::new())
    } else {
        (400, errors.join("\n") + "\n")
    }
}

/// A push endpoint on 127.0.0.1.
struct Loki {
    addr: std::net::SocketAddr,
    store: Arc<Mutex<Store>>,
    _rt: tokio::runtime::Runtime,
}

impl Loki {
    fn start(rate_limited: usize, oldest: i64) -> Loki {
        let store = Arc::new(Mutex::new(Store {
            rate_limited,
            oldest,
            ..Store::default()
        }));
        let s = store.clone();
        let (addr, rt) = crate::http_sink::serve(
            || {},
            move |req: Request<Incoming>| {
                let s = s.clone();
                async move {
                    let header = |n: &str| {
                        req.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    let tenant = header("x-scope-orgid");
                    let content_type = header("content-type").unwrap_or_default();
                    let encoding = header("content-encoding");
                    let path = req.uri().path().to_owned();
                    let raw = req.into_body().collect().await.unwrap().to_bytes();
                    let body = crate::http_sink::decode(encoding.as_deref(), &raw);
                    let (status, text) = if path == "/loki/api/v1/push" {
                        push(&mut s.lock().unwrap(), tenant, &content_type, &body)
                    } else {
                        (404, "404 page not found\n".into())
                    };
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::from(text)))
                            .unwrap(),
                    )
                }
            },
        );
        Loki {
            addr,
            store,
            _rt: rt,
        }
    }
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

#[test]
fn loki_takes_streams_and_dead_letters_only_the_stream_it_refuses() {
    // Loki refuses entries older than a week.
    let loki = Loki::start(1, now_nanos() - 7 * 86_400 * 1_000_000_000);
    let env = Env::new();
    let apps = ["web", "api", "old"];
    let lines: String = (0..600)
        .map(|i| {
            let app = apps[i % 3];
            let ts = if app == "old" {
                r#","ts":"2020-01-01T00:00:00Z""#
            } else {
                ""
            };
            format!("{{\"app\":\"{app}\",\"n\":{i},\"trace\":\"t{i}\"{ts}}}\n")
        })
        .collect();
    env.write("in.log", &lines);
    let config = env.config(&format!(
        r#"
  - name: loki
    batch: {{ max_events: 200, linger: 50ms }}
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    processors:
      - plugin: builtin:parse-json
      - plugin: builtin:parse-time
        config: {{ field: ts, remove: true }}
    flushers:
      - plugin: builtin:loki
        config:
          url: "http://{addr}"
          tenant_id: "${{LOKI_TENANT}}"
          labels: {{ job: gleaner, app: "{{app}}" }}
          remove_label_fields: true
          structured_metadata: [trace]
          max_bytes: 20000
        grants: {{ hosts: ["{addr}"] }}
        on_error: {{ backoff: 20ms }}
"#,
        log = env.path("in.log").display(),
        addr = loki.addr
    ));
    run_with_secret(&config, "LOKI_TENANT", "team-a");
    let store = loki.store.lock().unwrap();
    // web and api: every line once, in its stream, typed values intact.
    let mut seen: Vec<i64> = Vec::new();
    for e in &store.entries {
        assert_eq!(e.tenant, "team-a");
        let doc: serde_json::Value = serde_json::from_str(&e.line).unwrap();
        let n = doc["n"].as_i64().expect("n stays a number");
        let app = apps[n as usize % 3];
        assert_eq!(e.labels, format!("{{app=\"{app}\", job=\"gleaner\"}}"));
        assert!(
            doc.get("app").is_none() && doc.get("trace").is_none(),
            "{doc}"
        );
        assert!(doc.get("timestamp").is_none(), "the time is the entry's");
        assert_eq!(e.metadata["trace"], format!("t{n}"));
        assert!(e.nanos > store.oldest);
        seen.push(n);
    }
    seen.sort();
    let want: Vec<i64> = (0..600).filter(|i| i % 3 != 2).collect();
    assert_eq!(seen, want, "every web and api line exactly once");
    // The 429 was retried whole; every request protobuf, sorted per stream.
    let sizes: Vec<usize> = store.requests.iter().map(|r| r.1).collect();
    assert!(store.requests.len() >= 2, "{sizes:?}");
    assert!(
        store
            .requests
            .iter()
            .all(|(ct, _, sorted)| ct == "application/x-protobuf" && *sorted)
    );
    assert!(
        sizes.iter().all(|&n| n * 60 < 20000 + 60),
        "split: {sizes:?}"
    );
    drop(store);
    // The old stream alone is dead-lettered, with Loki's reason.
    let dead = lines_in(&env.path("state/dead-letter/loki.ndjson"));
    let mut bad: Vec<i64> = dead
        .iter()
        .map(|d| d["fields"]["n"].as_i64().unwrap())
        .collect();
    bad.sort();
    let want: Vec<i64> = (0..600).filter(|i| i % 3 == 2).collect();
    assert_eq!(bad, want);
    for d in &dead {
        let reason = d["reason"].as_str().unwrap();
        assert!(
            reason.contains(
                "entry for stream '{app=\"old\", job=\"gleaner\"}' has timestamp too old"
            ),
            "{reason}"
        );
    }
}

#[test]
fn loki_json_pushes_cap_label_values() {
    let loki = Loki::start(0, 0);
    let env = Env::new();
    let lines: String = (0..40)
        .map(|i| format!("{{\"user\":\"u{i}\",\"msg\":\"hello {i}\"}}\n"))
        .collect();
    env.write("in.log", &lines);
    let config = env.config(&format!(
        r#"
  - name: loki
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    processors: [ {{ plugin: builtin:parse-json }} ]
    flushers:
      - plugin: builtin:loki
        config:
          url: "http://{addr}/loki/api/v1/push"
          tenant_id: t1
          labels: {{ user: "{{user}}" }}
          max_label_values: 5
          line_format: body
          encoding: json
          compression: gzip
        grants: {{ hosts: ["{addr}"] }}
"#,
        log = env.path("in.log").display(),
        addr = loki.addr
    ));
    let out = run_once(&config);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let store = loki.store.lock().unwrap();
    assert_eq!(store.entries.len(), 40);
    let mut per_stream: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &store.entries {
        *per_stream.entry(e.labels.as_str()).or_default() += 1;
        assert!(
            e.line.starts_with("{\"user\":\"u"),
            "the raw line: {}",
            e.line
        );
    }
    assert_eq!(per_stream.len(), 6, "{per_stream:?}");
    assert_eq!(per_stream["{user=\"overflow\"}"], 35);
    assert!(store.requests.iter().all(|r| r.0 == "application/json"));
    assert!(
        log.contains("label `user` reached max_label_values"),
        "{log}"
    );
}
