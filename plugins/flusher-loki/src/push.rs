//! The push request: events grouped into streams by their rendered labels
//! (with the cardinality guard), entries sorted by time per stream, lines
//! as JSON documents or raw bodies, encoded as Loki's `push.proto` or its
//! JSON form, split within `max_bytes`; and Loki's answer read stream by
//! stream. No I/O: the flusher posts what this builds.

use std::collections::{BTreeMap, HashMap, HashSet};

use gleaner_sdk::json::{Layout, write_string, write_with};
use gleaner_sdk::proto;
use gleaner_sdk::time::Template;
use gleaner_sdk::{Batch, FlushError, Report};

/// The value a label gets once it has `max_label_values` distinct ones.
pub const OVERFLOW: &str = "overflow";

/// The request encoding.
#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// `push.proto`, snappy-compressed.
    #[default]
    Protobuf,
    /// `{"streams": [{"stream": {...}, "values": [[ns, line], ...]}]}`.
    Json,
}

/// What an entry's line holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineFormat {
    /// The event as a JSON document, without its time.
    #[default]
    Json,
    /// The raw body.
    Body,
}

/// A label: its name, its template, the values it has had.
#[derive(Debug)]
struct Label {
    name: String,
    template: Template,
    seen: HashSet<String>,
    capped: bool,
}

/// Labels that reached their limit during one `encode`.
#[derive(Debug, Default)]
pub struct Capped {
    /// Labels capped for the first time.
    pub newly_capped: Vec<String>,
    /// Values sent as [`OVERFLOW`].
    pub values: u64,
}

/// One stream of a request: its label set (Loki's canonical text) and
/// its events, sorted by time.
#[derive(Debug, Clone)]
pub struct Stream {
    /// `{job="x", pod="y"}`.
    pub labels: String,
    /// Batch indices.
    pub events: Vec<u32>,
}

/// One push request.
#[derive(Debug, Clone)]
pub struct Request {
    /// Uncompressed body.
    pub body: Vec<u8>,
    /// Its streams.
    pub streams: Vec<Stream>,
}

impl Request {
    /// Every event in the request.
    pub fn events(&self) -> impl Iterator<Item = u32> + '_ {
        self.streams.iter().flat_map(|s| s.events.iter().copied())
    }
}

/// Builds push requests.
#[derive(Debug)]
pub struct Encoder {
    labels: Vec<Label>,
    max_values: usize,
    metadata: Vec<String>,
    line_format: LineFormat,
    /// Names left out of JSON lines.
    skip: Vec<String>,
    encoding: Encoding,
    max_bytes: usize,
    capped: Capped,
}

/// True for a valid Prometheus/Loki label name.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Encoder {
    /// An encoder; the error names the config key that is wrong.
    pub fn new(
        labels: &BTreeMap<String, String>,
        max_values: usize,
        metadata: Vec<String>,
        line_format: LineFormat,
        remove_label_fields: bool,
        encoding: Encoding,
        max_bytes: usize,
    ) -> Result<Encoder, String> {
        if labels.is_empty() {
            return Err("labels: Loki needs at least one label".into());
        }
        let mut skip = metadata.clone();
        let labels = labels
            .iter()
            .map(|(name, text)| {
                if !valid_name(name) {
                    return Err(format!(
                        "labels.{name}: a label name is letters, digits and `_`, not starting with a digit"
                    ));
                }
                let template = Template::parse(text).map_err(|e| format!("labels.{name}: {e}"))?;
                if remove_label_fields
                    && let Some(field) = text.strip_prefix('{').and_then(|t| t.strip_suffix('}'))
                {
                    skip.push(field.to_owned());
                }
                Ok(Label {
                    name: name.clone(),
                    template,
                    seen: HashSet::new(),
                    capped: false,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Encoder {
            labels,
            max_values,
            metadata,
            line_format,
            skip,
            encoding,
            max_bytes,
            capped: Capped::default(),
        })
    }

    /// What the guard capped since the last call.
    pub fn take_capped(&mut self) -> Capped {
        std::mem::take(&mut self.capped)
    }

    /// The label set of `event`, in Loki's canonical text (names sorted,
    /// values quoted as Go's `strconv.Quote` does).
    fn label_set(&mut self, batch: &Batch, i: usize, value: &mut String, out: &mut String) {
        out.clear();
        out.push('{');
        let event = batch.event(i);
        for (n, label) in self.labels.iter_mut().enumerate() {
            label.template.render(batch, &event, value);
            if !label.seen.contains(value.as_str()) {
                if label.seen.len() < self.max_values {
                    label.seen.insert(value.clone());
                } else {
                    if !label.capped {
                        label.capped = true;
                        self.capped.newly_capped.push(label.name.clone());
                    }
                    self.capped.values += 1;
                    value.clear();
                    value.push_str(OVERFLOW);
                }
            }
            if n > 0 {
                out.push_str(", ");
            }
            out.push_str(&label.name);
            out.push('=');
            quote(value, out);
        }
        out.push('}');
    }

    /// The requests for `batch`: each at most `max_bytes` (before
    /// compression) unless one entry alone is larger.
    pub fn encode(&mut self, batch: &Batch) -> Vec<Request> {
        // Streams in order of first appearance.
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut streams: Vec<Stream> = Vec::new();
        let (mut value, mut set) = (String::new(), String::new());
        for i in 0..batch.len() {
            self.label_set(batch, i, &mut value, &mut set);
            match index.get(&set) {
                Some(&s) => streams[s].events.push(i as u32),
                None => {
                    index.insert(set.clone(), streams.len());
                    streams.push(Stream {
                        labels: set.clone(),
                        events: vec![i as u32],
                    });
                }
            }
        }
        for s in &mut streams {
            s.events
                .sort_by_key(|&i| (batch.event(i as usize).timestamp(), i));
        }
        let lines = self.lines(batch);
        // Cut into requests at entry boundaries.
        let mut requests = Vec::new();
        let mut current: Vec<Stream> = Vec::new();
        let mut size = 0;
        for stream in streams {
            let mut part = Stream {
                labels: stream.labels.clone(),
                events: Vec::new(),
            };
            for &e in &stream.events {
                let entry = lines.get(e as usize).len() + 32;
                if size + entry + part.labels.len() > self.max_bytes
                    && (!part.events.is_empty() || !current.is_empty())
                {
                    if !part.events.is_empty() {
                        current.push(std::mem::replace(
                            &mut part,
                            Stream {
                                labels: stream.labels.clone(),
                                events: Vec::new(),
                            },
                        ));
                    }
                    requests.push(self.request(batch, &lines, std::mem::take(&mut current)));
                    size = 0;
                }
                if part.events.is_empty() {
                    size += part.labels.len() + 8;
                }
                size += entry;
                part.events.push(e);
            }
            if !part.events.is_empty() {
                current.push(part);
            }
        }
        if !current.is_empty() {
            requests.push(self.request(batch, &lines, current));
        }
        requests
    }

    /// Every event's line.
    fn lines(&self, batch: &Batch) -> Lines {
        let mut bytes = Vec::with_capacity(batch.body_bytes() * 2);
        let mut ends = Vec::with_capacity(batch.len());
        match self.line_format {
            LineFormat::Body => {
                for event in batch.events() {
                    bytes.extend_from_slice(event.body());
                    ends.push(bytes.len());
                }
            }
            LineFormat::Json => {
                let skip: Vec<&str> = self.skip.iter().map(String::as_str).collect();
                let layout = Layout {
                    time: None,
                    skip: &skip,
                    ..Layout::default()
                };
                write_with(batch, &mut bytes, &layout, |i, out| {
                    if i > 0 {
                        // Drop the previous document's newline.
                        out.pop();
                        ends.push(out.len());
                    }
                });
                if !batch.is_empty() {
                    bytes.pop();
                    ends.push(bytes.len());
                }
            }
        }
        Lines { bytes, ends }
    }

    fn request(&self, batch: &Batch, lines: &Lines, streams: Vec<Stream>) -> Request {
        let mut body = Vec::new();
        match self.encoding {
            Encoding::Protobuf => {
                for s in &streams {
                    // PushRequest.streams = 1: StreamAdapter.
                    proto::message(&mut body, 1, |out| {
                        proto::string(out, 1, s.labels.as_bytes());
                        for &e in &s.events {
                            let event = batch.event(e as usize);
                            // StreamAdapter.entries = 2: EntryAdapter.
                            proto::message(out, 2, |out| {
                                let ts = event.timestamp();
                                // EntryAdapter.timestamp = 1: google.protobuf.Timestamp.
                                proto::message(out, 1, |out| {
                                    proto::varint(out, 1, ts.div_euclid(1_000_000_000) as u64);
                                    proto::varint(out, 2, ts.rem_euclid(1_000_000_000) as u64);
                                });
                                proto::string(out, 2, lines.get(e as usize));
                                for name in &self.metadata {
                                    if let Some(v) = event.field(name) {
                                        // EntryAdapter.structuredMetadata = 3.
                                        proto::message(out, 3, |out| {
                                            proto::string(out, 1, name.as_bytes());
                                            proto::string(out, 2, v.as_bytes());
                                        });
                                    }
                                }
                            });
                        }
                    });
                }
            }
            Encoding::Json => {
                body.extend_from_slice(b"{\"streams\":[");
                for (n, s) in streams.iter().enumerate() {
                    if n > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(b"{\"stream\":{");
                    let event = batch.event(s.events[0] as usize);
                    let mut value = String::new();
                    for (k, label) in self.labels.iter().enumerate() {
                        if k > 0 {
                            body.push(b',');
                        }
                        write_string(label.name.as_bytes(), &mut body);
                        body.push(b':');
                        label.template.render(batch, &event, &mut value);
                        if !label.seen.contains(&value) {
                            value = OVERFLOW.into();
                        }
                        write_string(value.as_bytes(), &mut body);
                    }
                    body.extend_from_slice(b"},\"values\":[");
                    for (k, &e) in s.events.iter().enumerate() {
                        if k > 0 {
                            body.push(b',');
                        }
                        let event = batch.event(e as usize);
                        body.extend_from_slice(b"[\"");
                        body.extend_from_slice(event.timestamp().to_string().as_bytes());
                        body.extend_from_slice(b"\",");
                        write_string(lines.get(e as usize), &mut body);
                        let mut first = true;
                        for name in &self.metadata {
                            if let Some(v) = event.field(name) {
                                body.extend_from_slice(if first { b",{" } else { b"," });
                                first = false;
                                write_string(name.as_bytes(), &mut body);
                                body.push(b':');
                                write_string(v.as_bytes(), &mut body);
                            }
                        }
                        if !first {
                            body.push(b'}');
                        }
                        body.push(b']');
                    }
                    body.extend_from_slice(b"]}");
                }
                body.extend_from_slice(b"]}");
            }
        }
        Request { body, streams }
    }
}

/// Every event's line, in one buffer.
struct Lines {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Lines {
    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }
}

/// Appends `value` quoted as Go's `strconv.Quote` (what Loki writes in
/// its messages): `"`, `\` and control characters escaped.
fn quote(value: &str, out: &mut String) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Reads Loki's answer to `request` into `report`; `Err` is for the whole
/// request. A `400` names the streams whose entries Loki refused
/// (`entry for stream '{...}' has timestamp too old: ...`): those are
/// rejected with the line naming them, the request's other streams were
/// taken. A `400` that names none of them refuses the whole request.
pub fn read_answer(
    status: u16,
    text: &str,
    request: &Request,
    report: &mut Report,
) -> Result<(), FlushError> {
    if status != 400 {
        return gleaner_sdk::http::outcome(status, text);
    }
    let mut named = false;
    for stream in &request.streams {
        let Some(line) = text.lines().find(|l| l.contains(stream.labels.as_str())) else {
            continue;
        };
        named = true;
        let reason = gleaner_sdk::http::describe(400, line);
        for &e in &stream.events {
            report.reject(e as usize, reason.clone());
        }
    }
    if named {
        Ok(())
    } else {
        gleaner_sdk::http::outcome(status, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gleaner_sdk::BatchBuilder;

    fn encoder(labels: &[(&str, &str)], encoding: Encoding, max_bytes: usize) -> Encoder {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Encoder::new(
            &labels,
            2,
            vec!["trace".into()],
            LineFormat::Json,
            true,
            encoding,
            max_bytes,
        )
        .unwrap()
    }

    fn batch() -> Batch {
        let mut b = BatchBuilder::new();
        b.set_tag("host", "n1");
        b.push(3_000_000_000, b"c").field("app", "web");
        b.push(1_000_000_000, b"a")
            .field("app", "web")
            .field("trace", "t1");
        b.push(2_000_000_000, b"b").field("app", "db\"x");
        b.push(5_000_000_000, b"d").field("app", "api");
        b.finish()
    }

    #[test]
    fn streams_are_grouped_sorted_and_capped() {
        let mut e = encoder(
            &[("job", "gleaner"), ("app", "{app}")],
            Encoding::Json,
            1 << 20,
        );
        let b = batch();
        let requests = e.encode(&b);
        assert_eq!(requests.len(), 1);
        let r = &requests[0];
        let sets: Vec<(&str, &[u32])> = r
            .streams
            .iter()
            .map(|s| (s.labels.as_str(), &s.events[..]))
            .collect();
        assert_eq!(
            sets,
            [
                ("{app=\"web\", job=\"gleaner\"}", &[1u32, 0][..]),
                ("{app=\"db\\\"x\", job=\"gleaner\"}", &[2][..]),
                // The third value of `app` is over the limit of 2.
                ("{app=\"overflow\", job=\"gleaner\"}", &[3][..]),
            ]
        );
        let capped = e.take_capped();
        assert_eq!(
            (capped.newly_capped, capped.values),
            (vec!["app".into()], 1)
        );
        let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            json["streams"][0],
            serde_json::json!({"stream": {"job": "gleaner", "app": "web"}, "values": [
                ["1000000000", "{\"host\":\"n1\",\"message\":\"a\"}", {"trace": "t1"}],
                ["3000000000", "{\"host\":\"n1\",\"message\":\"c\"}"]]})
        );
        assert_eq!(json["streams"][2]["stream"]["app"], "overflow");
    }

    #[test]
    fn requests_are_split_within_max_bytes() {
        let mut e = encoder(&[("app", "{app}")], Encoding::Protobuf, 100);
        let b = batch();
        let requests = e.encode(&b);
        let events: Vec<Vec<u32>> = requests.iter().map(|r| r.events().collect()).collect();
        assert!(requests.len() > 1, "{events:?}");
        let mut all: Vec<u32> = events.concat();
        all.sort();
        assert_eq!(all, [0, 1, 2, 3]);
        // Protobuf: field 1 (streams), length-delimited, labels first.
        assert_eq!(requests[0].body[0], 0x0a);
    }

    #[test]
    fn a_400_rejects_only_the_streams_it_names() {
        let mut e = encoder(&[("app", "{app}")], Encoding::Protobuf, 1 << 20);
        let b = batch();
        let r = &e.encode(&b)[0];
        let mut report = Report::default();
        let text = "entry for stream '{app=\"web\"}' has timestamp too old: 1970-01-01T00:00:01Z, oldest acceptable timestamp is: 2026-11-22T00:00:00Z\n";
        read_answer(400, text, r, &mut report).unwrap();
        let rejected: Vec<u32> = report.rejections().iter().map(|(i, _)| *i).collect();
        assert_eq!(rejected, [0, 1]);
        assert!(report.rejections()[0].1.contains("timestamp too old"));
        let mut report = Report::default();
        assert!(matches!(
            read_answer(400, "error parsing labels", r, &mut report),
            Err(FlushError::Rejected(_))
        ));
        assert!(matches!(
            read_answer(429, "Ingestion rate limit exceeded", r, &mut report),
            Err(FlushError::Retryable(_))
        ));
        assert_eq!(read_answer(204, "", r, &mut report), Ok(()));
    }

    #[test]
    fn label_names_are_checked() {
        let labels = BTreeMap::from([("bad-name".to_string(), "x".to_string())]);
        let err = Encoder::new(
            &labels,
            1,
            vec![],
            LineFormat::Json,
            false,
            Encoding::Json,
            1,
        )
        .unwrap_err();
        assert!(err.starts_with("labels.bad-name:"), "{err}");
    }
}
