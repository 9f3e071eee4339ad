//! `builtin:splunk-hec` against a receiver of Splunk's HTTP Event Collector
//! written from its documentation: `Authorization: Splunk <token>` (401
//! code 2 without, 403 code 4 for a wrong one), `503` code 9 while busy,
//! and a request with an invalid event answered `400` with the event's
//! `invalid-event-number`, the events before it indexed (code 7 for an
//! index the token may not write, code 13 for a blank event).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use serde_json::{Value, json};

use crate::common::*;

#[derive(Default)]
struct Indexer {
    events: Vec<Value>,
    busy: usize,
    requests: usize,
}

fn collect(ix: &mut Indexer, auth: Option<&str>, body: &[u8]) -> (u16, Value) {
    match auth {
        None => return (401, json!({"text": "Token is required", "code": 2})),
        Some("Splunk hec-secret") => {}
        Some(_) => return (403, json!({"text": "Invalid token", "code": 4})),
    }
    ix.requests += 1;
    if ix.busy > 0 {
        ix.busy -= 1;
        return (503, json!({"text": "Server is busy", "code": 9}));
    }
    let events = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    for (n, event) in events.enumerate() {
        let Ok(event) = event else {
            return (
                400,
                json!({"text": "Invalid data format", "code": 6, "invalid-event-number": n}),
            );
        };
        match &event["event"] {
            Value::Null => {
                return (
                    400,
                    json!({"text": "Event field is required", "code": 12, "invalid-event-number": n}),
                );
            }
            Value::String(s) if s.is_empty() => {
                return (
                    400,
                    json!({"text": "Event field cannot be blank", "code": 13, "invalid-event-number": n}),
                );
            }
            _ => {}
        }
        if !matches!(event["index"].as_str(), None | Some("main" | "web")) {
            return (
                400,
                json!({"text": "Incorrect index", "code": 7, "invalid-event-number": n}),
            );
        }
        ix.events.push(event);
    }
    (200, json!({"text": "Success", "code": 0}))
}

#[test]
fn splunk_hec_indexes_up_to_an_invalid_event_and_retries_the_rest() {
    let indexer = Arc::new(Mutex::new(Indexer {
        busy: 1,
        ..Indexer::default()
    }));
    let ix = indexer.clone();
    let (addr, _rt) = crate::http_sink::serve(
        || {},
        move |req: Request<Incoming>| {
            let ix = ix.clone();
            async move {
                assert_eq!(req.uri().path(), "/services/collector/event");
                let auth = req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let raw = req.into_body().collect().await.unwrap().to_bytes();
                let (status, answer) = collect(&mut ix.lock().unwrap(), auth.as_deref(), &raw);
                Ok::<_, Infallible>(
                    Response::builder()
                        .status(status)
                        .body(Full::new(Bytes::from(answer.to_string())))
                        .unwrap(),
                )
            }
        },
    );
    let env = Env::new();
    let lines: String = (0..200)
        .map(|i| {
            let team = if i % 25 == 7 { "secret" } else { "web" };
            format!("{{\"n\":{i},\"team\":\"{team}\",\"ok\":true}}\n")
        })
        .collect();
    env.write("in.log", &lines);
    let config = env.config(&format!(
        r#"
  - name: hec
    batch: {{ max_events: 100, linger: 50ms }}
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    processors: [ {{ plugin: builtin:parse-json }} ]
    flushers:
      - plugin: builtin:splunk-hec
        config:
          url: "http://{addr}"
          token: "${{HEC_TOKEN}}"
          index: "{{team}}"
          sourcetype: gleaner
          indexed_fields: [team]
        grants: {{ hosts: ["{addr}"] }}
        on_error: {{ backoff: 20ms }}
"#,
        log = env.path("in.log").display(),
    ));
    run_with_secret(&config, "HEC_TOKEN", "hec-secret");
    let ix = indexer.lock().unwrap();
    let mut ns: Vec<i64> = ix
        .events
        .iter()
        .map(|e| {
            assert_eq!(e["index"], "web");
            assert_eq!(e["sourcetype"], "gleaner");
            assert_eq!(e["source"], env.path("in.log").display().to_string());
            assert_eq!(e["fields"], json!({"team": "web"}));
            assert_eq!(e["event"]["ok"], true);
            assert!(e["event"].get("team").is_none());
            assert!(e["time"].as_f64().unwrap() > 1.7e9);
            e["event"]["n"].as_i64().expect("n stays a number")
        })
        .collect();
    ns.sort();
    let want: Vec<i64> = (0..200).filter(|i| i % 25 != 7).collect();
    assert_eq!(ns, want, "every indexable event exactly once");
    drop(ix);
    let dead = lines_in(&env.path("state/dead-letter/hec.ndjson"));
    let bad: Vec<i64> = dead
        .iter()
        .map(|d| d["fields"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(bad, [7, 32, 57, 82, 107, 132, 157, 182]);
    assert!(
        dead.iter().all(|d| d["reason"]
            .as_str()
            .unwrap()
            .ends_with("HEC code 7: Incorrect index")),
        "{dead:?}"
    );
}
