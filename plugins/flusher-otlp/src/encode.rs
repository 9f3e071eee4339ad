//! OTLP logs encoding (`opentelemetry/proto/collector/logs/v1`), protobuf
//! and OTLP/JSON, written straight from a batch, and the reading of the
//! server's answer. Tags map to resource attributes by the semantic
//! conventions; fields become typed attributes. No I/O.

use std::collections::BTreeMap;
use std::ops::Range;

use gleaner_sdk::http::Request;
use gleaner_sdk::json::write_string;
use gleaner_sdk::proto::{self, Field};
use gleaner_sdk::{Batch, Event, FlushError, Value, severity};

/// The request encoding.
#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// `application/x-protobuf`.
    #[default]
    Protobuf,
    /// OTLP/JSON.
    Json,
}

/// A successful answer's partial success.
#[derive(Debug, Default, PartialEq)]
pub struct Answer {
    /// `rejected_log_records`.
    pub rejected: u64,
    /// `error_message`.
    pub message: String,
}

/// The resource attribute a Gleaner tag becomes, if it is one.
fn resource_name(tag: &str, kind: Option<&str>) -> Option<String> {
    Some(match tag {
        "k8s.namespace" => "k8s.namespace.name".into(),
        "k8s.pod.name" | "k8s.pod.uid" | "k8s.container.name" | "k8s.node.name" => tag.into(),
        "k8s.container.image" | "container.image" => "container.image.name".into(),
        "container.id" | "container.name" => tag.into(),
        "k8s.owner.name" => {
            let kind = match kind? {
                "Deployment" => "deployment",
                "StatefulSet" => "statefulset",
                "DaemonSet" => "daemonset",
                "ReplicaSet" => "replicaset",
                "Job" => "job",
                "CronJob" => "cronjob",
                _ => return None,
            };
            format!("k8s.{kind}.name")
        }
        "k8s.owner.kind" | "source.path" => return None,
        t if t.starts_with("k8s.pod.label.")
            || t.starts_with("k8s.pod.annotation.")
            || t.starts_with("k8s.namespace.label.")
            || t.starts_with("container.label.")
            || t.starts_with("container.env.") =>
        {
            t.into()
        }
        t => t.into(),
    })
}

/// Hex digits to bytes, if `text` is exactly `len` bytes of hex and not all zero.
fn hex_id(text: &str, len: usize) -> Option<Vec<u8>> {
    if text.len() != 2 * len || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes: Vec<u8> = (0..len)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect();
    bytes.iter().any(|&b| b != 0).then_some(bytes)
}

/// Builds export requests.
#[derive(Debug)]
pub struct Encoder {
    encoding: Encoding,
    resource: BTreeMap<String, String>,
    scope: String,
    max_bytes: usize,
}

impl Encoder {
    /// An encoder with these settings.
    pub fn new(
        encoding: Encoding,
        resource: BTreeMap<String, String>,
        scope: String,
        max_bytes: usize,
    ) -> Self {
        Encoder {
            encoding,
            resource,
            scope,
            max_bytes,
        }
    }

    /// The encoding.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// The batch's resource attributes: its tags by the conventions, then
    /// the configured ones.
    fn resource_of(&self, batch: &Batch) -> BTreeMap<String, String> {
        let kind = batch.tag("k8s.owner.kind");
        let mut out: BTreeMap<String, String> = batch
            .tags()
            .filter_map(|(k, v)| resource_name(k, kind).map(|n| (n, v.to_owned())))
            .collect();
        out.extend(self.resource.clone());
        out
    }

    /// The requests for `batch`, each at most `max_bytes` unless one
    /// record alone is larger; `observed` is the observed time of all.
    pub fn encode(&self, batch: &Batch, observed: u64) -> Vec<Request> {
        let resource = self.resource_of(batch);
        let file = batch.tag("source.path");
        let mut requests = Vec::new();
        let mut records = Vec::with_capacity(batch.body_bytes() * 2);
        let mut start = 0;
        for event in batch.events() {
            let at = records.len();
            if self.encoding == Encoding::Json && event.index() > start {
                records.push(b',');
            }
            match self.encoding {
                Encoding::Protobuf => record_proto(&event, file, observed, &mut records),
                Encoding::Json => record_json(&event, file, observed, &mut records),
            }
            if records.len() > self.max_bytes && event.index() > start {
                let next = records.split_off(at);
                requests.push(self.request(&resource, &records, start..event.index()));
                records = next;
                if self.encoding == Encoding::Json {
                    records.remove(0);
                }
                start = event.index();
            }
        }
        if !batch.is_empty() {
            requests.push(self.request(&resource, &records, start..batch.len()));
        }
        requests
    }

    fn request(
        &self,
        resource: &BTreeMap<String, String>,
        records: &[u8],
        events: Range<usize>,
    ) -> Request {
        let mut body = Vec::with_capacity(records.len() + 256);
        match self.encoding {
            Encoding::Protobuf => {
                // ExportLogsServiceRequest.resource_logs = 1.
                proto::message(&mut body, 1, |o| {
                    // ResourceLogs.resource = 1: Resource.attributes = 1.
                    proto::message(o, 1, |o| {
                        for (k, v) in resource {
                            key_value_proto(o, 1, k, Value::Str(v));
                        }
                    });
                    // ResourceLogs.scope_logs = 2.
                    proto::message(o, 2, |o| {
                        // ScopeLogs.scope = 1: InstrumentationScope.name = 1.
                        proto::message(o, 1, |o| proto::string(o, 1, self.scope.as_bytes()));
                        o.extend_from_slice(records);
                    });
                });
            }
            Encoding::Json => {
                body.extend_from_slice(b"{\"resourceLogs\":[{\"resource\":{\"attributes\":[");
                for (n, (k, v)) in resource.iter().enumerate() {
                    if n > 0 {
                        body.push(b',');
                    }
                    key_value_json(&mut body, k, Value::Str(v));
                }
                body.extend_from_slice(b"]},\"scopeLogs\":[{\"scope\":{\"name\":");
                write_string(self.scope.as_bytes(), &mut body);
                body.extend_from_slice(b"},\"logRecords\":[");
                body.extend_from_slice(records);
                body.extend_from_slice(b"]}]}]}");
            }
        }
        Request { body, events }
    }
}

/// Trace context from the `trace_id` and `span_id` fields, if valid.
fn trace_context(event: &Event<'_>) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    (
        event.field("trace_id").and_then(|t| hex_id(t, 16)),
        event.field("span_id").and_then(|s| hex_id(s, 8)),
    )
}

/// The record's body: the `message` field a parser made, else the line.
fn body_of<'a>(event: &Event<'a>) -> &'a [u8] {
    event
        .field(BODY_FIELD)
        .map_or_else(|| event.body(), str::as_bytes)
}

/// True for a field that went into the record itself, not its attributes.
fn in_record(key: &str, trace: bool, span: bool) -> bool {
    key == BODY_FIELD || (key == "trace_id" && trace) || (key == "span_id" && span)
}

/// The field that holds the body once a parser has split the line.
const BODY_FIELD: &str = "message";

/// ScopeLogs.log_records = 2: one `LogRecord`.
fn record_proto(event: &Event<'_>, file: Option<&str>, observed: u64, out: &mut Vec<u8>) {
    proto::message(out, 2, |o| {
        proto::fixed64(o, 1, event.timestamp().max(0) as u64);
        let sev = event.severity();
        if let Some(text) = severity::text(sev) {
            proto::varint(o, 2, u64::from(sev));
            proto::string(o, 3, text.as_bytes());
        }
        // body = 5: AnyValue.string_value = 1.
        proto::message(o, 5, |o| proto::string(o, 1, body_of(event)));
        let (trace, span) = trace_context(event);
        for (k, v) in event.values() {
            if in_record(k, trace.is_some(), span.is_some()) {
                continue;
            }
            key_value_proto(o, 6, k, v);
        }
        if let Some(path) = file {
            key_value_proto(o, 6, "log.file.path", Value::Str(path));
        }
        if let Some(t) = trace {
            proto::bytes(o, 9, &t);
        }
        if let Some(s) = span {
            proto::bytes(o, 10, &s);
        }
        proto::fixed64(o, 11, observed);
    });
}

/// A `KeyValue` as field `field`.
fn key_value_proto(out: &mut Vec<u8>, field: u32, key: &str, value: Value<'_>) {
    proto::message(out, field, |o| {
        proto::string(o, 1, key.as_bytes());
        proto::message(o, 2, |o| any_value_proto(o, value));
    });
}

/// The fields of an `AnyValue`.
fn any_value_proto(out: &mut Vec<u8>, value: Value<'_>) {
    match value {
        Value::Str(s) => proto::string(out, 1, s.as_bytes()),
        Value::Bool(b) => proto::varint(out, 2, u64::from(b)),
        Value::Int(n) => proto::varint(out, 3, n as u64),
        Value::Float(f) => proto::double(out, 4, f),
        Value::Null => {}
        Value::Json(text) => match serde_json::from_str(text) {
            Ok(v) => json_value_proto(out, &v),
            Err(_) => proto::string(out, 1, text.as_bytes()),
        },
    }
}

fn json_value_proto(out: &mut Vec<u8>, v: &serde_json::Value) {
    use serde_json::Value as J;
    match v {
        J::Null => {}
        J::Bool(b) => proto::varint(out, 2, u64::from(*b)),
        J::Number(n) => match n.as_i64() {
            Some(i) => proto::varint(out, 3, i as u64),
            None => proto::double(out, 4, n.as_f64().unwrap_or(0.0)),
        },
        J::String(s) => proto::string(out, 1, s.as_bytes()),
        // array_value = 5: ArrayValue.values = 1.
        J::Array(items) => proto::message(out, 5, |o| {
            for item in items {
                proto::message(o, 1, |o| json_value_proto(o, item));
            }
        }),
        // kvlist_value = 6: KeyValueList.values = 1.
        J::Object(members) => proto::message(out, 6, |o| {
            for (k, item) in members {
                proto::message(o, 1, |o| {
                    proto::string(o, 1, k.as_bytes());
                    proto::message(o, 2, |o| json_value_proto(o, item));
                });
            }
        }),
    }
}

/// One OTLP/JSON `LogRecord` object.
fn record_json(event: &Event<'_>, file: Option<&str>, observed: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"timeUnixNano\":\"");
    out.extend_from_slice(event.timestamp().max(0).to_string().as_bytes());
    out.extend_from_slice(b"\",\"observedTimeUnixNano\":\"");
    out.extend_from_slice(observed.to_string().as_bytes());
    out.push(b'"');
    let sev = event.severity();
    if let Some(text) = severity::text(sev) {
        out.extend_from_slice(
            format!(",\"severityNumber\":{sev},\"severityText\":\"{text}\"").as_bytes(),
        );
    }
    out.extend_from_slice(b",\"body\":{\"stringValue\":");
    write_string(body_of(event), out);
    out.extend_from_slice(b"},\"attributes\":[");
    let (trace, span) = trace_context(event);
    let mut first = true;
    let mut attr = |out: &mut Vec<u8>, k: &str, v: Value<'_>| {
        if !first {
            out.push(b',');
        }
        first = false;
        key_value_json(out, k, v);
    };
    for (k, v) in event.values() {
        if in_record(k, trace.is_some(), span.is_some()) {
            continue;
        }
        attr(out, k, v);
    }
    if let Some(path) = file {
        attr(out, "log.file.path", Value::Str(path));
    }
    out.push(b']');
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    if let Some(t) = trace {
        out.extend_from_slice(format!(",\"traceId\":\"{}\"", hex(&t)).as_bytes());
    }
    if let Some(s) = span {
        out.extend_from_slice(format!(",\"spanId\":\"{}\"", hex(&s)).as_bytes());
    }
    out.push(b'}');
}

fn key_value_json(out: &mut Vec<u8>, key: &str, value: Value<'_>) {
    out.extend_from_slice(b"{\"key\":");
    write_string(key.as_bytes(), out);
    out.extend_from_slice(b",\"value\":");
    match value {
        Value::Json(text) => match serde_json::from_str(text) {
            Ok(v) => json_value_json(out, &v),
            Err(_) => any_json(out, "stringValue", text),
        },
        Value::Str(s) => {
            out.extend_from_slice(b"{\"stringValue\":");
            write_string(s.as_bytes(), out);
            out.push(b'}');
        }
        Value::Int(n) => any_json(out, "intValue", &format!("\"{n}\"")),
        Value::Float(f) => any_json(out, "doubleValue", &f.to_string()),
        Value::Bool(b) => any_json(out, "boolValue", if b { "true" } else { "false" }),
        Value::Null => out.extend_from_slice(b"{}"),
    }
    out.push(b'}');
}

fn any_json(out: &mut Vec<u8>, kind: &str, raw: &str) {
    out.extend_from_slice(format!("{{\"{kind}\":{raw}}}").as_bytes());
}

fn json_value_json(out: &mut Vec<u8>, v: &serde_json::Value) {
    use serde_json::Value as J;
    match v {
        J::Null => out.extend_from_slice(b"{}"),
        J::Bool(b) => any_json(out, "boolValue", if *b { "true" } else { "false" }),
        J::Number(n) => match n.as_i64() {
            Some(i) => any_json(out, "intValue", &format!("\"{i}\"")),
            None => any_json(out, "doubleValue", &n.as_f64().unwrap_or(0.0).to_string()),
        },
        J::String(s) => {
            out.extend_from_slice(b"{\"stringValue\":");
            write_string(s.as_bytes(), out);
            out.push(b'}');
        }
        J::Array(items) => {
            out.extend_from_slice(b"{\"arrayValue\":{\"values\":[");
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                json_value_json(out, item);
            }
            out.extend_from_slice(b"]}}");
        }
        J::Object(members) => {
            out.extend_from_slice(b"{\"kvlistValue\":{\"values\":[");
            for (n, (k, item)) in members.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"key\":");
                write_string(k.as_bytes(), out);
                out.extend_from_slice(b",\"value\":");
                json_value_json(out, item);
                out.push(b'}');
            }
            out.extend_from_slice(b"]}}");
        }
    }
}

/// Reads the server's answer: a partial success on 2xx, else the outcome
/// the OTLP specification gives the status, with the server's message.
pub fn read_answer(encoding: Encoding, status: u16, body: &[u8]) -> Result<Answer, FlushError> {
    if (200..300).contains(&status) {
        return Ok(match encoding {
            Encoding::Protobuf => partial_proto(body).unwrap_or_default(),
            Encoding::Json => partial_json(body).unwrap_or_default(),
        });
    }
    let message = status_message(body);
    let msg = format!(
        "HTTP {status}: {}",
        message.chars().take(300).collect::<String>()
    );
    match status {
        401 | 403 | 408 | 429 | 502 | 503 | 504 => Err(FlushError::Retryable(msg)),
        _ => Err(FlushError::Rejected(msg)),
    }
}

/// `ExportLogsServiceResponse.partial_success`.
fn partial_proto(body: &[u8]) -> Option<Answer> {
    let (_, Field::Bytes(partial)) = proto::fields(body)?.into_iter().find(|(n, _)| *n == 1)?
    else {
        return None;
    };
    let mut answer = Answer::default();
    for (n, f) in proto::fields(partial)? {
        match (n, f) {
            (1, Field::Varint(v)) => answer.rejected = v,
            (2, Field::Bytes(m)) => answer.message = String::from_utf8_lossy(m).into_owned(),
            _ => {}
        }
    }
    Some(answer)
}

fn partial_json(body: &[u8]) -> Option<Answer> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let p = v.get("partialSuccess")?;
    let rejected = match &p["rejectedLogRecords"] {
        serde_json::Value::String(s) => s.parse().ok()?,
        n => n.as_u64().unwrap_or(0),
    };
    Some(Answer {
        rejected,
        message: p["errorMessage"].as_str().unwrap_or_default().to_owned(),
    })
}

/// The message of a `google.rpc.Status` (protobuf or JSON), else the text.
fn status_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(m) = v["message"].as_str()
    {
        return m.to_owned();
    }
    if let Some(fields) = proto::fields(body)
        && let Some((_, Field::Bytes(m))) = fields.iter().find(|(n, _)| *n == 2)
        && let Ok(m) = std::str::from_utf8(m)
    {
        return m.to_owned();
    }
    String::from_utf8_lossy(body).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gleaner_sdk::BatchBuilder;

    fn batch() -> Batch {
        let mut b = BatchBuilder::new();
        b.set_tag("k8s.namespace", "shop")
            .set_tag("k8s.owner.kind", "Deployment")
            .set_tag("k8s.owner.name", "cart")
            .set_tag("source.path", "/var/log/x.log");
        b.push(1_700_000_000_000_000_001, b"hello")
            .value("status", 200)
            .value("ok", true)
            .value("tags", Value::Json(r#"["a",{"b":1.5}]"#))
            .field("trace_id", "0102030405060708090a0b0c0d0e0f10")
            .set_severity(severity::WARN);
        b.push(5, b"second");
        b.finish()
    }

    #[test]
    fn json_records_carry_types_resource_and_trace_context() {
        let e = Encoder::new(
            Encoding::Json,
            BTreeMap::from([("service.name".into(), "shop".into())]),
            "gleaner".into(),
            1 << 20,
        );
        let requests = e.encode(&batch(), 42);
        assert_eq!(requests.len(), 1);
        let v: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
        let rl = &v["resourceLogs"][0];
        let attrs: BTreeMap<String, String> = rl["resource"]["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["key"].as_str().unwrap().into(),
                    a["value"]["stringValue"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(
            attrs,
            BTreeMap::from([
                ("k8s.deployment.name".into(), "cart".into()),
                ("k8s.namespace.name".into(), "shop".into()),
                ("service.name".into(), "shop".into()),
            ])
        );
        let r = &rl["scopeLogs"][0]["logRecords"][0];
        assert_eq!(r["timeUnixNano"], "1700000000000000001");
        assert_eq!(r["observedTimeUnixNano"], "42");
        assert_eq!(r["severityNumber"], 13);
        assert_eq!(r["severityText"], "WARN");
        assert_eq!(r["body"]["stringValue"], "hello");
        assert_eq!(r["traceId"], "0102030405060708090a0b0c0d0e0f10");
        assert_eq!(
            r["attributes"],
            serde_json::json!([
                {"key": "status", "value": {"intValue": "200"}},
                {"key": "ok", "value": {"boolValue": true}},
                {"key": "tags", "value": {"arrayValue": {"values": [
                    {"stringValue": "a"},
                    {"kvlistValue": {"values": [{"key": "b", "value": {"doubleValue": 1.5}}]}}]}}},
                {"key": "log.file.path", "value": {"stringValue": "/var/log/x.log"}}
            ])
        );
        assert!(rl["scopeLogs"][0]["logRecords"][1]["severityNumber"].is_null());
    }

    #[test]
    fn protobuf_requests_split_within_max_bytes() {
        let e = Encoder::new(Encoding::Protobuf, BTreeMap::new(), "gleaner".into(), 10);
        let requests = e.encode(&batch(), 1);
        let ranges: Vec<Range<usize>> = requests.iter().map(|r| r.events.clone()).collect();
        assert_eq!(ranges, [0..1, 1..2]);
        // resource_logs = 1, length-delimited.
        assert_eq!(requests[0].body[0], 0x0a);
    }

    #[test]
    fn answers_follow_the_specification() {
        let mut partial = Vec::new();
        proto::message(&mut partial, 1, |o| {
            proto::varint(o, 1, 2);
            proto::string(o, 2, b"2 records too large");
        });
        assert_eq!(
            read_answer(Encoding::Protobuf, 200, &partial),
            Ok(Answer {
                rejected: 2,
                message: "2 records too large".into()
            })
        );
        assert_eq!(
            read_answer(Encoding::Protobuf, 200, b""),
            Ok(Answer::default())
        );
        assert_eq!(
            read_answer(
                Encoding::Json,
                200,
                br#"{"partialSuccess":{"rejectedLogRecords":"3","errorMessage":"x"}}"#
            ),
            Ok(Answer {
                rejected: 3,
                message: "x".into()
            })
        );
        assert!(matches!(
            read_answer(Encoding::Json, 503, b""),
            Err(FlushError::Retryable(_))
        ));
        let mut status = Vec::new();
        proto::varint(&mut status, 1, 3);
        proto::string(&mut status, 2, b"bad body");
        assert_eq!(
            read_answer(Encoding::Protobuf, 400, &status),
            Err(FlushError::Rejected("HTTP 400: bad body".into()))
        );
    }
}
