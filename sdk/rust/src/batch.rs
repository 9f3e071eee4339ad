//! The typed batch API: read events with [`Batch::events`], build output with
//! [`BatchBuilder`]. It hides the flat wire encoding of `wit/plugin.wit`
//! (bodies and field values in two byte buffers, spans into them as flat
//! `u32` columns, a type tag per field, keys interned once per batch); it
//! owns no I/O and calls no host function.

use std::collections::HashMap;
use std::ops::Range;

use crate::bindings::wit;
use crate::value::{STRING, Value};

/// A batch of events as the host sent it: shared tags plus events.
///
/// Cheap to read: bodies and field values are borrowed from one buffer each.
#[derive(Debug, Clone)]
pub struct Batch {
    raw: wit::Batch,
    /// For each event, the range of its fields (indices of fields, not of
    /// `raw.fields` entries; fields are in event order); built once when
    /// the batch is received.
    field_ranges: Vec<Range<u32>>,
}

impl Batch {
    /// Wraps a batch received from the host. Fields out of event order are
    /// sorted (stably) so each event's fields are contiguous.
    pub(crate) fn from_wit(mut raw: wit::Batch) -> Self {
        let in_order = raw
            .fields
            .chunks_exact(4)
            .zip(raw.fields.chunks_exact(4).skip(1))
            .all(|(a, b)| a[0] <= b[0]);
        if !in_order {
            let mut order: Vec<usize> = (0..raw.fields.len() / 4).collect();
            order.sort_by_key(|&i| raw.fields[4 * i]);
            let fields = order
                .iter()
                .flat_map(|&i| raw.fields[4 * i..4 * i + 4].to_vec())
                .collect();
            raw.field_types = order.iter().map(|&i| raw.field_types[i]).collect();
            raw.fields = fields;
        }
        let count = raw.fields.len() / 4;
        let mut field_ranges = Vec::with_capacity(raw.timestamps.len());
        let mut at = 0usize;
        for event in 0..raw.timestamps.len() as u32 {
            let start = at as u32;
            while at < count && raw.fields[4 * at] == event {
                at += 1;
            }
            field_ranges.push(start..at as u32);
        }
        Batch { raw, field_ranges }
    }

    pub(crate) fn into_wit(self) -> wit::Batch {
        self.raw
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.raw.timestamps.len()
    }

    /// True when the batch has no events.
    pub fn is_empty(&self) -> bool {
        self.raw.timestamps.is_empty()
    }

    /// Total bytes of all event bodies.
    pub fn body_bytes(&self) -> usize {
        self.raw.bodies.len()
    }

    /// The tags shared by every event of the batch, e.g. `("source.path", "/var/log/nginx/access.log")`.
    pub fn tags(&self) -> impl Iterator<Item = (&str, &str)> {
        self.raw.tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The body column as the wire carries it: all bodies concatenated,
    /// and each event's end offset. What the [`crate::kernels`] take.
    pub fn body_column(&self) -> (&[u8], &[u32]) {
        (&self.raw.bodies, &self.raw.body_ends)
    }

    /// The field names interned in this batch (fields refer to them by index).
    pub(crate) fn keys(&self) -> &[String] {
        &self.raw.keys
    }

    /// The value of one tag.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The event at `index` (panics if out of range; see [`Batch::len`]).
    pub fn event(&self, index: usize) -> Event<'_> {
        Event { batch: self, index }
    }

    /// All events in order.
    pub fn events(&self) -> impl ExactSizeIterator<Item = Event<'_>> {
        (0..self.len()).map(move |index| Event { batch: self, index })
    }

    /// A builder for the output batch that starts with this batch's tags.
    pub fn builder(&self) -> BatchBuilder {
        let mut out = BatchBuilder::with_capacity(self.len(), self.raw.bodies.len());
        out.tags.clone_from(&self.raw.tags);
        out
    }

    /// Keeps only the events for which `keep` returns true, in place: no
    /// body or field is copied for the events kept when none is dropped.
    pub fn retain(self, mut keep: impl FnMut(&Event<'_>) -> bool) -> Batch {
        let decisions: Vec<bool> = self.events().map(|e| keep(&e)).collect();
        if decisions.iter().all(|k| *k) {
            return self;
        }
        let mut out = self.builder();
        for event in self.events().filter(|e| decisions[e.index]) {
            out.push_copy(&event);
        }
        out.finish()
    }
}

/// One event of a [`Batch`].
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    batch: &'a Batch,
    index: usize,
}

impl<'a> Event<'a> {
    /// Position of the event in its batch.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Timestamp in nanoseconds since the Unix epoch.
    pub fn timestamp(&self) -> i64 {
        self.batch.raw.timestamps[self.index]
    }

    /// Severity: OpenTelemetry's number (see [`crate::severity`]), 0 if unset.
    pub fn severity(&self) -> u8 {
        self.batch
            .raw
            .severities
            .get(self.index)
            .copied()
            .unwrap_or(0)
    }

    /// The raw body bytes.
    pub fn body(&self) -> &'a [u8] {
        let raw = &self.batch.raw;
        let end = raw.body_ends[self.index] as usize;
        let start = if self.index == 0 {
            0
        } else {
            raw.body_ends[self.index - 1] as usize
        };
        raw.bodies.get(start..end).unwrap_or_default()
    }

    /// The body as text; invalid UTF-8 sequences are replaced by U+FFFD.
    pub fn body_str(&self) -> std::borrow::Cow<'a, str> {
        String::from_utf8_lossy(self.body())
    }

    /// The event's fields as `(key, text)` pairs, in the order they were
    /// added; a typed value reads as its text (`200`, `true`), a value that
    /// is not UTF-8 as empty.
    pub fn fields(&self) -> impl Iterator<Item = (&'a str, &'a str)> + use<'a> {
        let keys = &self.batch.raw.keys;
        self.raw_fields().map(move |(k, _, v)| {
            let key = keys.get(k).map(String::as_str).unwrap_or_default();
            (key, std::str::from_utf8(v).unwrap_or_default())
        })
    }

    /// The event's fields with their types.
    pub fn values(&self) -> impl Iterator<Item = (&'a str, Value<'a>)> + use<'a> {
        let keys = &self.batch.raw.keys;
        self.raw_fields().map(move |(k, ty, v)| {
            let key = keys.get(k).map(String::as_str).unwrap_or_default();
            (key, Value::decode(ty, v))
        })
    }

    /// The fields as (index into the batch's keys, type, raw value bytes),
    /// without UTF-8 checks: for encoders that validate as they copy.
    pub(crate) fn raw_fields(&self) -> impl Iterator<Item = (usize, u8, &'a [u8])> + use<'a> {
        let raw = &self.batch.raw;
        let range = self.batch.field_ranges[self.index].clone();
        (range.start as usize..range.end as usize).map(move |i| {
            let f = &raw.fields[4 * i..4 * i + 4];
            let value = raw
                .values
                .get(f[2] as usize..(f[2] as usize + f[3] as usize))
                .unwrap_or_default();
            let ty = raw.field_types.get(i).copied().unwrap_or(STRING);
            (f[1] as usize, ty, value)
        })
    }

    /// The text of field `key` (the last one if the event has it twice).
    pub fn field(&self, key: &str) -> Option<&'a str> {
        self.fields()
            .filter(|(k, _)| *k == key)
            .last()
            .map(|(_, v)| v)
    }

    /// The typed value of field `key`.
    pub fn value(&self, key: &str) -> Option<Value<'a>> {
        self.values()
            .filter(|(k, _)| *k == key)
            .last()
            .map(|(_, v)| v)
    }

    /// Number of fields.
    pub fn field_count(&self) -> usize {
        self.batch.field_ranges[self.index].len()
    }
}

/// An interned field name of a [`BatchBuilder`]: intern once per batch, then
/// add fields without hashing the key again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(u32);

/// Builds a batch, event by event.
#[derive(Debug, Default)]
pub struct BatchBuilder {
    tags: Vec<(String, String)>,
    timestamps: Vec<i64>,
    severities: Vec<u8>,
    bodies: Vec<u8>,
    body_ends: Vec<u32>,
    keys: Vec<String>,
    key_index: HashMap<String, u32>,
    /// The key after the one interned last: events of a batch usually get
    /// the same fields in the same order, so it is checked first.
    key_hint: usize,
    values: Vec<u8>,
    fields: Vec<u32>,
    field_types: Vec<u8>,
    /// The first field of the last event pushed (fields are in event order).
    last_event_fields: usize,
}

impl BatchBuilder {
    /// An empty builder without tags.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty builder with room for `events` events and `body_bytes` bytes of bodies.
    pub fn with_capacity(events: usize, body_bytes: usize) -> Self {
        BatchBuilder {
            timestamps: Vec::with_capacity(events),
            severities: Vec::with_capacity(events),
            bodies: Vec::with_capacity(body_bytes),
            body_ends: Vec::with_capacity(events),
            ..Self::default()
        }
    }

    /// Sets tag `key` to `value` for the whole batch (replacing an existing value).
    pub fn set_tag(&mut self, key: &str, value: &str) -> &mut Self {
        match self.tags.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value.to_owned(),
            None => self.tags.push((key.to_owned(), value.to_owned())),
        }
        self
    }

    /// Interns a field name for this batch.
    pub fn key(&mut self, name: &str) -> Key {
        let hint = match self.keys.get(self.key_hint) {
            Some(k) if k == name => Some(self.key_hint as u32),
            // The first field of the next event.
            _ => self.keys.first().filter(|k| *k == name).map(|_| 0),
        };
        if let Some(id) = hint.or_else(|| self.key_index.get(name).copied()) {
            self.key_hint = id as usize + 1;
            return Key(id);
        }
        let id = self.keys.len() as u32;
        self.key_hint = id as usize + 1;
        self.keys.push(name.to_owned());
        self.key_index.insert(name.to_owned(), id);
        Key(id)
    }

    /// Number of events so far.
    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// True when no event was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// Appends an event with `timestamp` (ns since the epoch) and `body`;
    /// add its fields through the returned [`EventBuilder`].
    pub fn push(&mut self, timestamp: i64, body: &[u8]) -> EventBuilder<'_> {
        self.bodies.extend_from_slice(body);
        self.timestamps.push(timestamp);
        self.severities.push(0);
        self.body_ends.push(self.bodies.len() as u32);
        self.last_event_fields = self.field_types.len();
        let event = self.timestamps.len() as u32 - 1;
        EventBuilder { batch: self, event }
    }

    /// Appends a copy of `event`: timestamp, severity, body and typed fields.
    pub fn push_copy(&mut self, event: &Event<'_>) -> EventBuilder<'_> {
        let keys = event.batch.keys();
        let mut ids = Vec::with_capacity(event.field_count());
        for (k, _, _) in event.raw_fields() {
            ids.push(self.key(keys.get(k).map(String::as_str).unwrap_or_default()));
        }
        let mut out = self.push(event.timestamp(), event.body());
        out.set_severity(event.severity());
        for ((_, ty, v), key) in event.raw_fields().zip(ids) {
            out.batch.append_field(out.event, key, ty, v);
        }
        out
    }

    /// Adds a field to the last event, after its others.
    fn append_field(&mut self, event: u32, key: Key, ty: u8, value: &[u8]) {
        let start = self.values.len() as u32;
        self.values.extend_from_slice(value);
        self.fields
            .extend_from_slice(&[event, key.0, start, value.len() as u32]);
        self.field_types.push(ty);
    }

    /// Sets a field of the last event: replaces the value of `key` if the
    /// event has it, else appends it.
    fn set_field(&mut self, event: u32, key: Key, ty: u8, value: &[u8]) {
        let existing = (self.last_event_fields..self.field_types.len())
            .find(|&i| self.fields[4 * i + 1] == key.0);
        match existing {
            Some(i) => {
                let start = self.values.len() as u32;
                self.values.extend_from_slice(value);
                self.fields[4 * i + 2] = start;
                self.fields[4 * i + 3] = value.len() as u32;
                self.field_types[i] = ty;
            }
            None => self.append_field(event, key, ty, value),
        }
    }

    /// Finishes the batch.
    pub fn finish(self) -> Batch {
        Batch::from_wit(wit::Batch {
            tags: self.tags,
            timestamps: self.timestamps,
            severities: self.severities,
            bodies: self.bodies,
            body_ends: self.body_ends,
            keys: self.keys,
            values: self.values,
            fields: self.fields,
            field_types: self.field_types,
        })
    }
}

/// Sets the fields, severity and body of the event just pushed.
#[derive(Debug)]
pub struct EventBuilder<'b> {
    batch: &'b mut BatchBuilder,
    event: u32,
}

impl EventBuilder<'_> {
    /// Sets string field `key` = `value` (replacing the event's value of
    /// `key` if it has one).
    pub fn field(&mut self, key: &str, value: &str) -> &mut Self {
        let key = self.batch.key(key);
        self.field_by_key(key, value)
    }

    /// Sets a string field by interned key: the fast path for plugins that
    /// add the same fields to every event.
    pub fn field_by_key(&mut self, key: Key, value: &str) -> &mut Self {
        self.batch
            .set_field(self.event, key, STRING, value.as_bytes());
        self
    }

    /// Sets field `key` to a typed value (`200`, `0.5`, `true`, ...).
    pub fn value<'v>(&mut self, key: &str, value: impl Into<Value<'v>>) -> &mut Self {
        let key = self.batch.key(key);
        self.value_by_key(key, value)
    }

    /// Sets a typed field by interned key.
    pub fn value_by_key<'v>(&mut self, key: Key, value: impl Into<Value<'v>>) -> &mut Self {
        let value = value.into();
        let ty = value.type_tag();
        self.batch
            .set_field(self.event, key, ty, value.text().as_bytes());
        self
    }

    /// Sets field `key` from a type tag and its wire text (see
    /// [`EventBuilder::typed_by_key`]).
    pub fn typed(&mut self, key: &str, ty: u8, text: &str) -> &mut Self {
        let key = self.batch.key(key);
        self.typed_by_key(key, ty, text)
    }

    /// Sets a field from its type tag and wire text, as parsers do after
    /// [`crate::value::convert`]. The text must be what the tag says (the
    /// host refuses a batch where it is not).
    pub fn typed_by_key(&mut self, key: Key, ty: u8, text: &str) -> &mut Self {
        self.batch.set_field(self.event, key, ty, text.as_bytes());
        self
    }

    /// Sets a field to `text` converted to type `ty` (see
    /// [`crate::value::convert`]); text that does not convert is set as a
    /// string, and `false` returned (parsers count it).
    pub fn convert_by_key(&mut self, key: Key, ty: u8, text: &str) -> bool {
        match crate::value::convert(ty, text) {
            Some(canonical) => {
                self.typed_by_key(key, ty, &canonical);
                true
            }
            None => {
                self.field_by_key(key, text);
                false
            }
        }
    }

    /// Removes field `key` from the event, if it has it.
    pub fn remove(&mut self, key: &str) -> &mut Self {
        let b = &mut *self.batch;
        let Some(id) = b.keys.iter().position(|k| k == key) else {
            return self;
        };
        let mut i = b.last_event_fields;
        while i < b.field_types.len() {
            if b.fields[4 * i + 1] == id as u32 {
                b.fields.drain(4 * i..4 * i + 4);
                b.field_types.remove(i);
            } else {
                i += 1;
            }
        }
        self
    }

    /// Sets the event's time, in nanoseconds since the Unix epoch.
    pub fn set_timestamp(&mut self, timestamp: i64) -> &mut Self {
        self.batch.timestamps[self.event as usize] = timestamp;
        self
    }

    /// Sets the event's severity: OpenTelemetry's number, 1-24 (see
    /// [`crate::severity`]), or 0 for unset. Numbers above 24 become 24.
    pub fn set_severity(&mut self, severity: u8) -> &mut Self {
        self.batch.severities[self.event as usize] = severity.min(24);
        self
    }

    /// Replaces the event's body with `body`. Only valid on the last event
    /// pushed (always the case for a fresh `EventBuilder`).
    pub fn set_body(&mut self, body: &[u8]) -> &mut Self {
        let start = if self.event == 0 {
            0
        } else {
            self.batch.body_ends[self.event as usize - 1] as usize
        };
        self.batch.bodies.truncate(start);
        self.batch.bodies.extend_from_slice(body);
        self.batch.body_ends[self.event as usize] = self.batch.bodies.len() as u32;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_interned_once_whatever_order_they_come_in() {
        let mut b = BatchBuilder::new();
        let ids: Vec<u32> = ["a", "b", "c", "a", "b", "c", "c", "x", "b", "a", "x"]
            .iter()
            .map(|k| b.key(k).0)
            .collect();
        assert_eq!(ids, vec![0, 1, 2, 0, 1, 2, 2, 3, 1, 0, 3]);
        assert_eq!(b.keys, vec!["a", "b", "c", "x"]);
    }

    #[test]
    fn built_batch_reads_back_bodies_fields_and_tags() {
        let mut b = BatchBuilder::new();
        b.set_tag("source.path", "/x.log");
        b.push(1, b"first").field("a", "1").field("b", "two");
        b.push(2, b"").field("a", "3");
        b.push(3, b"third");
        let batch = b.finish();
        assert_eq!(batch.len(), 3);
        assert_eq!(batch.tag("source.path"), Some("/x.log"));
        let events: Vec<_> = batch.events().collect();
        assert_eq!(events[0].body(), b"first");
        assert_eq!(events[1].body(), b"");
        assert_eq!(events[2].body(), b"third");
        assert_eq!(
            events[0].fields().collect::<Vec<_>>(),
            vec![("a", "1"), ("b", "two")]
        );
        assert_eq!(events[1].field("a"), Some("3"));
        assert_eq!(events[2].field_count(), 0);
        assert_eq!(events[2].timestamp(), 3);
    }

    #[test]
    fn retain_drops_events_and_keeps_their_fields_aligned() {
        let mut b = BatchBuilder::new();
        for i in 0..5 {
            b.push(i, format!("line {i}").as_bytes())
                .field("n", &i.to_string());
        }
        let kept = b.finish().retain(|e| e.index() % 2 == 0);
        let got: Vec<_> = kept
            .events()
            .map(|e| (e.body_str().into_owned(), e.field("n").map(str::to_owned)))
            .collect();
        assert_eq!(
            got,
            vec![
                ("line 0".to_owned(), Some("0".to_owned())),
                ("line 2".to_owned(), Some("2".to_owned())),
                ("line 4".to_owned(), Some("4".to_owned())),
            ]
        );
    }

    #[test]
    fn set_body_replaces_only_the_last_event() {
        let mut b = BatchBuilder::new();
        b.push(0, b"keep");
        b.push(0, b"secret").set_body(b"***");
        let batch = b.finish();
        assert_eq!(batch.event(0).body(), b"keep");
        assert_eq!(batch.event(1).body(), b"***");
    }

    #[test]
    fn fields_out_of_event_order_are_grouped_per_event() {
        let raw = wit::Batch {
            tags: vec![],
            timestamps: vec![0, 0],
            severities: vec![0, 0],
            bodies: b"ab".to_vec(),
            body_ends: vec![1, 2],
            keys: vec!["k".into()],
            values: b"x7".to_vec(),
            fields: vec![1, 0, 1, 1, 0, 0, 0, 1],
            field_types: vec![crate::value::INT, STRING],
        };
        let batch = Batch::from_wit(raw);
        assert_eq!(batch.event(0).field("k"), Some("x"));
        assert_eq!(batch.event(1).value("k"), Some(Value::Int(7)));
    }

    #[test]
    fn setting_a_field_again_replaces_it_and_types_severity_survive_a_copy() {
        let mut b = BatchBuilder::new();
        b.push(1, b"a")
            .field("greeting", "hi")
            .value("status", 200)
            .field("greeting", "hello")
            .value("status", "200")
            .value("ratio", 0.5)
            .value("ok", true)
            .set_severity(13);
        b.push(2, b"b").field("x", "1").remove("x").field("y", "2");
        let batch = b.finish();
        let e = batch.event(0);
        assert_eq!(
            e.fields().collect::<Vec<_>>(),
            [
                ("greeting", "hello"),
                ("status", "200"),
                ("ratio", "0.5"),
                ("ok", "true")
            ]
        );
        assert_eq!(e.value("status"), Some(Value::Str("200")));
        assert_eq!(e.value("ratio"), Some(Value::Float(0.5)));
        assert_eq!(batch.event(1).fields().collect::<Vec<_>>(), [("y", "2")]);
        let mut copy = BatchBuilder::new();
        copy.push_copy(&e).value("status", 404i64);
        let copy = copy.finish();
        let c = copy.event(0);
        assert_eq!(c.severity(), 13);
        assert_eq!(c.value("status"), Some(Value::Int(404)));
        assert_eq!(c.value("ok"), Some(Value::Bool(true)));
        assert_eq!(c.field_count(), 4);
    }
}
