//! The `_bulk` wire format: index templates, action lines, requests split
//! within `max_bytes`, and reading Elasticsearch's answer item by item into
//! a [`Report`]. No I/O: the flusher posts what this builds.

use gleaner_sdk::http::{Request, split};
use gleaner_sdk::json::{write_documents, write_string};
use gleaner_sdk::time::Template;
use gleaner_sdk::{Batch, Event, FlushError, Report};

/// The bulk action of every document.
#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `index`: create or replace.
    #[default]
    Index,
    /// `create`: only if new (what data streams take).
    Create,
}

/// The index of an event: a [`Template`] in lower case (as Elasticsearch
/// wants index names).
#[derive(Debug, Clone, PartialEq)]
pub struct IndexTemplate(Template);

impl IndexTemplate {
    /// Parses a template; the error says what is wrong.
    pub fn parse(text: &str) -> Result<IndexTemplate, String> {
        Template::parse(text).map(IndexTemplate)
    }

    /// The index of `event`.
    pub fn render(&self, batch: &Batch, event: &Event<'_>, out: &mut String) {
        self.0.render(batch, event, out);
        out.make_ascii_lowercase();
    }
}

/// Builds bulk requests.
#[derive(Debug)]
pub struct Encoder {
    index: IndexTemplate,
    action: Action,
    id_field: Option<String>,
    max_bytes: usize,
}

impl Encoder {
    /// An encoder with these settings.
    pub fn new(
        index: IndexTemplate,
        action: Action,
        id_field: Option<String>,
        max_bytes: usize,
    ) -> Self {
        Encoder {
            index,
            action,
            id_field,
            max_bytes,
        }
    }

    /// The requests for `batch`: each at most `max_bytes` unless one event
    /// alone is larger.
    pub fn encode(&self, batch: &Batch) -> Vec<Request> {
        let mut all = Vec::with_capacity(batch.body_bytes() * 2 + batch.len() * 96);
        let mut ends = Vec::with_capacity(batch.len());
        let mut index = String::new();
        let verb: &[u8] = match self.action {
            Action::Index => b"{\"index\":{\"_index\":",
            Action::Create => b"{\"create\":{\"_index\":",
        };
        write_documents(batch, &mut all, "@timestamp", |i, out| {
            if i > 0 {
                ends.push(out.len());
            }
            let event = batch.event(i);
            self.index.render(batch, &event, &mut index);
            out.extend_from_slice(verb);
            write_string(index.as_bytes(), out);
            if let Some(id) = self.id_field.as_deref().and_then(|f| event.field(f)) {
                out.extend_from_slice(b",\"_id\":");
                write_string(id.as_bytes(), out);
            }
            out.extend_from_slice(b"}}\n");
        });
        if !batch.is_empty() {
            ends.push(all.len());
        }
        split(&all, &ends, self.max_bytes)
    }
}

/// One item of a bulk answer: `{"index": {"status": 201, "error": {...}}}`.
#[derive(Debug, serde::Deserialize)]
struct Item {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Debug, serde::Deserialize)]
struct Answer {
    #[serde(default)]
    errors: bool,
    #[serde(default)]
    items: Vec<std::collections::HashMap<String, Item>>,
}

/// Reads the answer to `request` into `report`, or says why the whole
/// request failed (retryable or rejected).
pub fn read_answer(
    status: u16,
    text: &str,
    request: &Request,
    report: &mut Report,
) -> Result<(), FlushError> {
    gleaner_sdk::http::outcome(status, text)?;
    let answer: Answer = serde_json::from_str(text).map_err(|e| {
        FlushError::Retryable(format!(
            "unreadable _bulk answer ({e}): HTTP {status}: {}",
            text.chars().take(300).collect::<String>()
        ))
    })?;
    if !answer.errors {
        return Ok(());
    }
    if answer.items.len() != request.events.len() {
        return Err(FlushError::Retryable(format!(
            "the _bulk answer has {} items for {} documents",
            answer.items.len(),
            request.events.len()
        )));
    }
    for (item, event) in answer.items.iter().zip(request.events.clone()) {
        let Some(item) = item.values().next() else {
            report.retry(event);
            continue;
        };
        match item.status {
            200..=299 => {}
            // `create` of a document that exists: an earlier try took it.
            409 => {}
            429 | 500..=599 => {
                report.retry(event);
            }
            s => {
                let reason = match &item.error {
                    Some(e) => format!(
                        "{} {}: {}",
                        s,
                        e["type"].as_str().unwrap_or("error"),
                        e["reason"].as_str().unwrap_or_default()
                    ),
                    None => format!("{s}"),
                };
                report.reject(event, reason);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use gleaner_sdk::BatchBuilder;

    use super::*;

    fn batch() -> Batch {
        let mut b = BatchBuilder::new();
        b.set_tag("k8s.namespace.name", "Shop");
        // 2023-11-14T22:13:20Z
        b.push(1_700_000_000_000_000_000, b"one")
            .field("id", "a1")
            .value("n", 1);
        b.push(1_700_000_000_000_000_000, b"two")
            .field("team", "web");
        b.push(1_700_000_000_000_000_000, b"three");
        b.finish()
    }

    #[test]
    fn templates_take_time_fields_and_tags() {
        let b = batch();
        let t = IndexTemplate::parse("logs-{k8s.namespace.name}-{team}-%Y.%m.%d-%H%%").unwrap();
        let mut out = String::new();
        t.render(&b, &b.event(1), &mut out);
        assert_eq!(out, "logs-shop-web-2023.11.14-22%");
        t.render(&b, &b.event(0), &mut out);
        assert_eq!(out, "logs-shop-unknown-2023.11.14-22%");
        assert!(IndexTemplate::parse("x-%Q").unwrap_err().contains("%Q"));
        assert!(IndexTemplate::parse("").is_err());
    }

    #[test]
    fn actions_documents_and_splitting() {
        let b = batch();
        let e = Encoder::new(
            IndexTemplate::parse("logs").unwrap(),
            Action::Create,
            Some("id".into()),
            1 << 20,
        );
        let r = e.encode(&b);
        assert_eq!(r.len(), 1);
        let text = String::from_utf8(r[0].body.clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(
            lines[0],
            serde_json::json!({"create": {"_index": "logs", "_id": "a1"}})
        );
        assert_eq!(lines[1]["@timestamp"], "2023-11-14T22:13:20.000000000Z");
        assert_eq!(lines[1]["n"], 1);
        assert_eq!(lines[2], serde_json::json!({"create": {"_index": "logs"}}));
        // A small limit: one event per request.
        let small = Encoder::new(
            IndexTemplate::parse("logs").unwrap(),
            Action::Index,
            None,
            10,
        );
        let r = small.encode(&b);
        assert_eq!(
            r.iter().map(|r| r.events.clone()).collect::<Vec<_>>(),
            [0..1, 1..2, 2..3]
        );
        assert!(small.encode(&BatchBuilder::new().finish()).is_empty());
    }

    #[test]
    fn answers_are_read_item_by_item() {
        let request = Request {
            body: Vec::new(),
            events: 10..14,
        };
        let text = r#"{"errors":true,"items":[
            {"index":{"status":201}},
            {"index":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"index":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [n]"}}},
            {"create":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"exists"}}}]}"#;
        let mut report = Report::default();
        read_answer(200, text, &request, &mut report).unwrap();
        assert_eq!(report.retried(), [11]);
        assert_eq!(
            report.rejections(),
            [(
                12,
                "400 mapper_parsing_exception: failed to parse field [n]".to_owned()
            )]
        );
        let mut report = Report::default();
        assert!(matches!(
            read_answer(503, "busy", &request, &mut report),
            Err(FlushError::Retryable(_))
        ));
        assert!(matches!(
            read_answer(400, "bad", &request, &mut report),
            Err(FlushError::Rejected(_))
        ));
        read_answer(200, r#"{"errors":false,"items":[]}"#, &request, &mut report).unwrap();
        assert!(report.is_empty());
    }
}
