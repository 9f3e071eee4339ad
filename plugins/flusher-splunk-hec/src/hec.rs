//! HEC event objects written straight from a batch, requests cut within
//! `max_bytes`, and HEC's answer read into a [`Report`]. No I/O.

use gleaner_sdk::http::{Request, split};
use gleaner_sdk::json::{Layout, write_string, write_with};
use gleaner_sdk::time::{Template, TimeFormat};
use gleaner_sdk::{Batch, Event, FlushError, Report};

/// What `event` holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventFormat {
    /// The event as a JSON object.
    #[default]
    Json,
    /// The raw line, as a string.
    Body,
}

/// The metadata keys, each a template or unset.
#[derive(Debug, Default)]
pub struct Meta {
    pub index: Option<Template>,
    pub sourcetype: Option<Template>,
    pub source: Option<Template>,
    pub host: Option<Template>,
}

/// Builds requests.
#[derive(Debug)]
pub struct Encoder {
    meta: Meta,
    format: EventFormat,
    indexed: Vec<String>,
    max_bytes: usize,
}

impl Encoder {
    /// An encoder with these settings.
    pub fn new(meta: Meta, format: EventFormat, indexed: Vec<String>, max_bytes: usize) -> Self {
        Encoder {
            meta,
            format,
            indexed,
            max_bytes,
        }
    }

    /// `{"time":...,"host":...,"event":` for event `i`.
    fn open(&self, batch: &Batch, event: &Event<'_>, text: &mut String, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"time\":");
        TimeFormat::UnixFraction.write_json(event.timestamp(), out);
        for (key, template) in [
            ("host", &self.meta.host),
            ("source", &self.meta.source),
            ("sourcetype", &self.meta.sourcetype),
            ("index", &self.meta.index),
        ] {
            let Some(template) = template else { continue };
            template.render(batch, event, text);
            // A source from a tag the batch lacks is left to HEC's default.
            if text == "unknown" && key == "source" {
                continue;
            }
            out.extend_from_slice(b",\"");
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
            write_string(text.as_bytes(), out);
        }
        out.extend_from_slice(b",\"event\":");
    }

    /// `,"fields":{...}}` for `event`.
    fn close(&self, event: &Event<'_>, out: &mut Vec<u8>) {
        let mut first = true;
        for name in &self.indexed {
            if let Some(v) = event.field(name) {
                out.extend_from_slice(if first { b",\"fields\":{" } else { b"," });
                first = false;
                write_string(name.as_bytes(), out);
                out.push(b':');
                write_string(v.as_bytes(), out);
            }
        }
        if !first {
            out.push(b'}');
        }
        out.extend_from_slice(b"}\n");
    }

    /// The requests for `batch`.
    pub fn encode(&self, batch: &Batch) -> Vec<Request> {
        let mut all = Vec::with_capacity(batch.body_bytes() * 2 + batch.len() * 96);
        let mut ends = Vec::with_capacity(batch.len());
        let mut text = String::new();
        match self.format {
            EventFormat::Body => {
                for event in batch.events() {
                    self.open(batch, &event, &mut text, &mut all);
                    write_string(event.body(), &mut all);
                    self.close(&event, &mut all);
                    ends.push(all.len());
                }
            }
            EventFormat::Json => {
                let skip: Vec<&str> = self.indexed.iter().map(String::as_str).collect();
                let layout = Layout {
                    time: None,
                    skip: &skip,
                    ..Layout::default()
                };
                write_with(batch, &mut all, &layout, |i, out| {
                    if i > 0 {
                        out.pop();
                        self.close(&batch.event(i - 1), out);
                        ends.push(out.len());
                    }
                    self.open(batch, &batch.event(i), &mut text, out);
                });
                if !batch.is_empty() {
                    all.pop();
                    self.close(&batch.event(batch.len() - 1), &mut all);
                    ends.push(all.len());
                }
            }
        }
        split(&all, &ends, self.max_bytes)
    }
}

#[derive(serde::Deserialize)]
struct Answer {
    #[serde(default)]
    text: String,
    code: i64,
    #[serde(rename = "invalid-event-number")]
    invalid: Option<usize>,
}

/// Reads HEC's answer to `request` into `report`; `Err` is for the whole
/// request.
pub fn read_answer(
    status: u16,
    body: &str,
    request: &Request,
    report: &mut Report,
) -> Result<(), FlushError> {
    let Ok(answer) = serde_json::from_str::<Answer>(body) else {
        // Not HEC's JSON (a proxy's page): by the status alone.
        return gleaner_sdk::http::outcome(status, body);
    };
    let msg = format!("HEC code {}: {}", answer.code, answer.text);
    match answer.code {
        0 if (200..300).contains(&status) => Ok(()),
        // Token missing, disabled or invalid; internal error; busy; unhealthy.
        1..=4 | 8 | 9 | 18..=20 => Err(FlushError::Retryable(msg)),
        6 | 7 | 12 | 13 | 15 => match answer.invalid {
            Some(n) if n < request.events.len() => {
                // HEC indexed the events before the invalid one.
                let bad = request.events.start + n;
                report.reject(bad, msg);
                for i in bad + 1..request.events.end {
                    report.retry(i);
                }
                Ok(())
            }
            _ => Err(FlushError::Rejected(msg)),
        },
        _ if gleaner_sdk::http::retryable(status) => Err(FlushError::Retryable(msg)),
        _ => Err(FlushError::Rejected(msg)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gleaner_sdk::BatchBuilder;

    fn batch() -> Batch {
        let mut b = BatchBuilder::new();
        b.set_tag("source.path", "/var/log/app.log");
        for i in 0..4 {
            b.push(1_700_000_000_500_000_000, format!("line {i}").as_bytes())
                .value("n", i)
                .field("team", "web");
        }
        b.finish()
    }

    fn encoder(format: EventFormat, max_bytes: usize) -> Encoder {
        let meta = Meta {
            index: Some(Template::parse("logs-{team}").unwrap()),
            source: Some(Template::parse("{source.path}").unwrap()),
            ..Meta::default()
        };
        Encoder::new(meta, format, vec!["team".into()], max_bytes)
    }

    #[test]
    fn events_are_hec_objects_with_typed_json_and_indexed_fields() {
        let requests = encoder(EventFormat::Json, 1 << 20).encode(&batch());
        assert_eq!(requests.len(), 1);
        let text = String::from_utf8(requests[0].body.clone()).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(
            first,
            serde_json::json!({"time": 1700000000.5, "source": "/var/log/app.log",
                "index": "logs-web", "event": {"source.path": "/var/log/app.log", "n": 0,
                "message": "line 0"}, "fields": {"team": "web"}})
        );
        let body = encoder(EventFormat::Body, 1 << 20).encode(&batch());
        let v: serde_json::Value =
            serde_json::from_slice(body[0].body.split(|&b| b == b'\n').next().unwrap()).unwrap();
        assert_eq!(v["event"], "line 0");
    }

    #[test]
    fn invalid_event_numbers_reject_one_and_retry_the_rest() {
        let requests = encoder(EventFormat::Json, 400).encode(&batch());
        assert_eq!(requests.len(), 2);
        let r = &requests[1];
        assert_eq!(r.events, 2..4);
        let mut report = Report::default();
        read_answer(
            400,
            r#"{"text":"Event field cannot be blank","code":13,"invalid-event-number":0}"#,
            r,
            &mut report,
        )
        .unwrap();
        assert_eq!(report.rejections()[0].0, 2);
        assert_eq!(report.retried(), [3]);
        let busy = read_answer(503, r#"{"text":"Server is busy","code":9}"#, r, &mut report);
        assert!(matches!(busy, Err(FlushError::Retryable(_))));
        let index = read_answer(
            400,
            r#"{"text":"Incorrect index","code":7}"#,
            r,
            &mut report,
        );
        assert_eq!(
            index,
            Err(FlushError::Rejected("HEC code 7: Incorrect index".into()))
        );
        assert_eq!(
            read_answer(200, r#"{"text":"Success","code":0}"#, r, &mut report),
            Ok(())
        );
    }
}
