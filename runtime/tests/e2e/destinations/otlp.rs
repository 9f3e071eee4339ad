//! `builtin:otlp` against an OTLP/HTTP logs receiver that decodes with the
//! official protobufs (`opentelemetry-proto`) and answers as the OTLP
//! specification says: `503` while unavailable (retryable), and a `200`
//! with `partial_success` for records it refuses (never to be resent).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;

use crate::common::*;

#[derive(Default)]
struct Collector {
    /// (resource attributes, record) of every record taken.
    records: Vec<(Vec<(String, String)>, LogRecord)>,
    unavailable: usize,
    /// Every request's content type and encoding.
    requests: Vec<(String, String)>,
}

/// The text of a string `AnyValue`.
fn text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        other => panic!("not a string: {other:?}"),
    }
}

fn export(c: &mut Collector, body: &[u8]) -> (u16, Vec<u8>) {
    let req = ExportLogsServiceRequest::decode(body).expect("an ExportLogsServiceRequest");
    if c.unavailable > 0 {
        c.unavailable -= 1;
        return (503, b"unavailable".to_vec());
    }
    let mut rejected = 0;
    for rl in req.resource_logs {
        let resource: Vec<(String, String)> = rl
            .resource
            .unwrap_or_default()
            .attributes
            .iter()
            .map(|kv| (kv.key.clone(), text(&kv.value)))
            .collect();
        for sl in rl.scope_logs {
            assert_eq!(sl.scope.unwrap().name, "gleaner");
            for r in sl.log_records {
                // This collector refuses records without a body.
                if text(&r.body).is_empty() {
                    rejected += 1;
                    continue;
                }
                c.records.push((resource.clone(), r));
            }
        }
    }
    let answer = ExportLogsServiceResponse {
        partial_success: (rejected > 0).then(|| ExportLogsPartialSuccess {
            rejected_log_records: rejected,
            error_message: format!("{rejected} records without a body"),
        }),
    };
    (200, answer.encode_to_vec())
}

#[test]
fn otlp_records_carry_typed_attributes_severity_time_and_resource() {
    let collector = Arc::new(Mutex::new(Collector {
        unavailable: 1,
        ..Collector::default()
    }));
    let c = collector.clone();
    let (addr, _rt) = crate::http_sink::serve(
        || {},
        move |req: Request<Incoming>| {
            let c = c.clone();
            async move {
                let header = |n: &str| {
                    req.headers()
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                let (ct, enc) = (header("content-type"), header("content-encoding"));
                assert_eq!(req.uri().path(), "/v1/logs");
                let raw = req.into_body().collect().await.unwrap().to_bytes();
                let body = crate::http_sink::decode(Some(enc.as_str()), &raw);
                let mut c = c.lock().unwrap();
                c.requests.push((ct, enc));
                let (status, answer) = export(&mut c, &body);
                Ok::<_, Infallible>(
                    Response::builder()
                        .status(status)
                        .header("content-type", "application/x-protobuf")
                        .body(Full::new(Bytes::from(answer)))
                        .unwrap(),
                )
            }
        },
    );
    let env = Env::new();
    let mut lines = String::new();
    for i in 0..100 {
        lines.push_str(&format!(
            "{{\"time\":\"2026-11-29T10:00:{:02}.5Z\",\"level\":\"{}\",\"status\":{},\"ratio\":0.5,\"ok\":true,\"tags\":[\"a\",{i}],\"message\":\"request {i}\"}}\n",
            i % 60,
            if i % 2 == 0 { "info" } else { "error" },
            200 + i
        ));
    }
    lines.push_str("{\"time\":\"2026-11-29T10:00:00Z\",\"message\":\"\"}\n");
    env.write("in.log", &lines);
    let config = env.config(&format!(
        r#"
  - name: otlp
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    processors:
      - plugin: builtin:parse-json
      - plugin: builtin:parse-time
        config: {{ field: time, remove: true }}
      - plugin: builtin:severity
        config: {{ remove: true }}
    flushers:
      - plugin: builtin:otlp
        config:
          url: "http://{addr}"
          resource: {{ service.name: checkout }}
        grants: {{ hosts: ["{addr}"] }}
        on_error: {{ backoff: 20ms }}
"#,
        log = env.path("in.log").display(),
    ));
    let out = run_once(&config);
    let log = String::from_utf8_lossy(&out.stderr);
    let c = collector.lock().unwrap();
    assert_eq!(c.records.len(), 100, "each record once after the 503");
    assert!(c.requests.len() >= 2);
    assert!(
        c.requests
            .iter()
            .all(|(ct, enc)| ct == "application/x-protobuf" && enc == "gzip")
    );
    for (resource, r) in &c.records {
        assert_eq!(
            resource,
            &[("service.name".to_owned(), "checkout".to_owned())]
        );
        let body = text(&r.body);
        let i: i64 = body.strip_prefix("request ").unwrap().parse().unwrap();
        let secs = 1_795_946_400 + (i % 60) as u64;
        assert_eq!(
            r.time_unix_nano,
            secs * 1_000_000_000 + 500_000_000,
            "{body}"
        );
        assert!(r.observed_time_unix_nano > r.time_unix_nano);
        let (num, name) = if i % 2 == 0 {
            (9, "INFO")
        } else {
            (17, "ERROR")
        };
        assert_eq!((r.severity_number, r.severity_text.as_str()), (num, name));
        let attr = |k: &str| {
            r.attributes
                .iter()
                .find(|kv| kv.key == k)
                .and_then(|kv| kv.value.clone())
                .and_then(|v| v.value)
        };
        assert_eq!(attr("status"), Some(any_value::Value::IntValue(200 + i)));
        assert_eq!(attr("ratio"), Some(any_value::Value::DoubleValue(0.5)));
        assert_eq!(attr("ok"), Some(any_value::Value::BoolValue(true)));
        let Some(any_value::Value::ArrayValue(tags)) = attr("tags") else {
            panic!("tags is an array")
        };
        assert_eq!(
            tags.values
                .iter()
                .map(|v| v.value.clone().unwrap())
                .collect::<Vec<_>>(),
            [
                any_value::Value::StringValue("a".into()),
                any_value::Value::IntValue(i)
            ]
        );
        assert_eq!(
            attr("log.file.path"),
            Some(any_value::Value::StringValue(
                env.path("in.log").display().to_string()
            ))
        );
        assert!(attr("level").is_none() && attr("time").is_none());
    }
    assert!(
        log.contains("rejected 1 records: 1 records without a body"),
        "{log}"
    );
}
