//! The host's batch of events, laid out like the WIT `batch` record so
//! that crossing into a plugin moves buffers instead of converting events.
//! Owns the layout checks; knows nothing of where events come from or go.

pub mod json;

pub use gleaner_kernels::value;

/// One field of one event: a span into [`Batch::values`] and its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Event index.
    pub event: u32,
    /// Index into [`Batch::keys`].
    pub key: u32,
    /// Start of the value in [`Batch::values`].
    pub start: u32,
    /// Length of the value in bytes.
    pub len: u32,
    /// Type of the value (see [`value`]).
    pub ty: u8,
}

/// A batch of events from one source, in flat encoding (see `wit/plugin.wit`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Tags shared by all events.
    pub tags: Vec<(String, String)>,
    /// Timestamps, ns since the epoch.
    pub timestamps: Vec<i64>,
    /// Severity of each event (OpenTelemetry's numbers, 0 = unset).
    pub severities: Vec<u8>,
    /// Bodies, concatenated.
    pub bodies: Vec<u8>,
    /// End offset of each body.
    pub body_ends: Vec<u32>,
    /// Interned field names.
    pub keys: Vec<String>,
    /// Field values, concatenated.
    pub values: Vec<u8>,
    /// Fields, in event order, four numbers each: event, key, start, len.
    pub fields: Vec<u32>,
    /// The type of each field.
    pub field_types: Vec<u8>,
}

/// A batch that breaks the layout rules (from a faulty plugin).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed batch: {0}")]
pub struct LayoutError(pub String);

impl Batch {
    /// An empty batch with these tags and room for `events` events.
    pub fn with_tags(tags: Vec<(String, String)>, events: usize, bytes: usize) -> Self {
        Batch {
            tags,
            timestamps: Vec::with_capacity(events),
            severities: Vec::with_capacity(events),
            bodies: Vec::with_capacity(bytes),
            body_ends: Vec::with_capacity(events),
            ..Batch::default()
        }
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// True if there are no events.
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// Appends an event without fields or severity.
    pub fn push(&mut self, timestamp: i64, body: &[u8]) {
        self.bodies.extend_from_slice(body);
        self.timestamps.push(timestamp);
        self.severities.push(0);
        self.body_ends.push(self.bodies.len() as u32);
    }

    /// Adds the string field `key` = `value` to the last event pushed (the
    /// key is interned). Does nothing in an empty batch.
    pub fn push_field(&mut self, key: &str, value: &[u8]) {
        self.push_typed(key, value::STRING, value);
    }

    /// Adds a field of type `ty` (see [`value`]) to the last event pushed.
    pub fn push_typed(&mut self, key: &str, ty: u8, value: &[u8]) {
        let Some(event) = self.len().checked_sub(1) else {
            return;
        };
        let key = match self.keys.iter().position(|k| k == key) {
            Some(k) => k,
            None => {
                self.keys.push(key.to_owned());
                self.keys.len() - 1
            }
        };
        self.fields.extend_from_slice(&[
            event as u32,
            key as u32,
            self.values.len() as u32,
            value.len() as u32,
        ]);
        self.field_types.push(ty);
        self.values.extend_from_slice(value);
    }

    /// Number of fields of all events.
    pub fn field_count(&self) -> usize {
        self.field_types.len()
    }

    /// Field `i` of the batch (in the order of [`Batch::fields`]).
    pub fn field(&self, i: usize) -> Field {
        let f = &self.fields[4 * i..4 * i + 4];
        Field {
            event: f[0],
            key: f[1],
            start: f[2],
            len: f[3],
            ty: self.field_types[i],
        }
    }

    /// The body of event `i`.
    pub fn body(&self, i: usize) -> &[u8] {
        let start = if i == 0 {
            0
        } else {
            self.body_ends[i - 1] as usize
        };
        &self.bodies[start..self.body_ends[i] as usize]
    }

    /// The fields of event `i` as (key, type, value).
    pub fn fields_of(&self, i: usize) -> impl Iterator<Item = (&str, u8, &[u8])> {
        (0..self.field_count())
            .map(|n| self.field(n))
            .filter(move |f| f.event as usize == i)
            .map(|f| {
                let key = self
                    .keys
                    .get(f.key as usize)
                    .map(String::as_str)
                    .unwrap_or("");
                let value = self
                    .values
                    .get(f.start as usize..(f.start + f.len) as usize)
                    .unwrap_or(&[]);
                (key, f.ty, value)
            })
    }

    /// A batch of events `events` (ascending indices) of this one, with
    /// their fields, types and severities, and the same tags and keys.
    pub fn select(&self, events: &[u32]) -> Batch {
        let mut out = Batch::with_tags(self.tags.clone(), events.len(), 0);
        out.keys.clone_from(&self.keys);
        // Fields are in event order; walk them alongside.
        let mut f = 0;
        for (new, &old) in events.iter().enumerate() {
            let old = old as usize;
            out.bodies.extend_from_slice(self.body(old));
            out.body_ends.push(out.bodies.len() as u32);
            out.timestamps.push(self.timestamps[old]);
            out.severities
                .push(self.severities.get(old).copied().unwrap_or(0));
            while f < self.field_count() && (self.fields[4 * f] as usize) < old {
                f += 1;
            }
            while f < self.field_count() && self.fields[4 * f] as usize == old {
                let field = self.field(f);
                let value = &self.values[field.start as usize..(field.start + field.len) as usize];
                out.fields.extend_from_slice(&[
                    new as u32,
                    field.key,
                    out.values.len() as u32,
                    field.len,
                ]);
                out.field_types.push(field.ty);
                out.values.extend_from_slice(value);
                f += 1;
            }
        }
        out
    }

    /// The value of tag `key`.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Checks the invariants documented on the WIT `batch` record.
    pub fn check_layout(&self) -> Result<(), LayoutError> {
        let err = |m: String| Err(LayoutError(m));
        let n = self.len();
        if self.body_ends.len() != n || self.severities.len() != n {
            return err(format!(
                "{n} timestamps but {} body ends and {} severities",
                self.body_ends.len(),
                self.severities.len()
            ));
        }
        if let Err(i) = gleaner_kernels::check_ends(self.bodies.len(), &self.body_ends) {
            return err(format!(
                "body end {} of event {i} is out of order or past {} bytes",
                self.body_ends[i],
                self.bodies.len()
            ));
        }
        if let Some(i) = self.severities.iter().position(|&s| s > 24) {
            return err(format!(
                "event {i} has severity {}; the highest is 24",
                self.severities[i]
            ));
        }
        if self.fields.len() != 4 * self.field_types.len() {
            return err(format!(
                "{} numbers in fields for {} field types (4 per field)",
                self.fields.len(),
                self.field_types.len()
            ));
        }
        for i in 0..self.field_count() {
            let f = self.field(i);
            if f.event as usize >= n
                || f.key as usize >= self.keys.len()
                || (f.start as u64 + f.len as u64) > self.values.len() as u64
            {
                return err(format!("field {f:?} points outside the batch"));
            }
            if f.ty != value::STRING {
                let text = &self.values[f.start as usize..(f.start + f.len) as usize];
                if !value::is_valid(f.ty, text, true) {
                    return err(format!(
                        "field `{}` of event {} is typed {} but holds {:?}",
                        self.keys[f.key as usize],
                        f.event,
                        value::name(f.ty),
                        String::from_utf8_lossy(&text[..text.len().min(64)])
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_check_catches_spans_outside_the_buffers() {
        let mut b = Batch::default();
        b.push(1, b"abc");
        b.push(2, b"de");
        assert_eq!(b.body(1), b"de");
        assert!(b.check_layout().is_ok());
        let mut bad = b.clone();
        bad.body_ends[1] = 99;
        assert!(bad.check_layout().is_err());
        let mut bad = b.clone();
        bad.keys.push("k".into());
        bad.fields.extend([0, 0, 0, 1]);
        bad.field_types.push(value::STRING);
        assert!(bad.check_layout().is_err());
        bad.values.push(b'x');
        assert!(bad.check_layout().is_ok());
        bad.fields[0] = 5;
        assert!(bad.check_layout().is_err());
        let mut bad = b.clone();
        bad.severities[1] = 25;
        assert!(bad.check_layout().is_err());
        bad.severities.pop();
        assert!(bad.check_layout().is_err());
    }

    #[test]
    fn a_selection_keeps_bodies_fields_types_and_severities() {
        let mut b = Batch::with_tags(vec![("t".into(), "v".into())], 3, 0);
        for i in 0..4 {
            b.push(i, format!("e{i}").as_bytes());
            b.push_typed("n", value::INT, i.to_string().as_bytes());
            b.severities[i as usize] = i as u8;
        }
        let s = b.select(&[1, 3]);
        assert!(s.check_layout().is_ok());
        assert_eq!((s.body(0), s.body(1)), (&b"e1"[..], &b"e3"[..]));
        assert_eq!(s.timestamps, [1, 3]);
        assert_eq!(s.severities, [1, 3]);
        assert_eq!(
            s.fields_of(1).collect::<Vec<_>>(),
            [("n", value::INT, &b"3"[..])]
        );
        assert_eq!(s.tag("t"), Some("v"));
        assert!(b.select(&[]).is_empty());
    }

    #[test]
    fn typed_values_are_checked_against_their_type() {
        let mut b = Batch::default();
        b.push(1, b"x");
        b.push_typed("status", value::INT, b"200");
        b.push_typed("ratio", value::FLOAT, b"0.5");
        b.push_typed("tags", value::JSON, b"[1,2]");
        assert!(b.check_layout().is_ok());
        assert_eq!(
            b.fields_of(0).collect::<Vec<_>>(),
            [
                ("status", value::INT, &b"200"[..]),
                ("ratio", value::FLOAT, b"0.5"),
                ("tags", value::JSON, b"[1,2]")
            ]
        );
        b.push_typed("bad", value::INT, b"2x");
        let e = b.check_layout().unwrap_err().to_string();
        assert!(
            e.contains("`bad` of event 0 is typed int but holds \"2x\""),
            "{e}"
        );
        b.field_types[3] = 6;
        assert!(b.check_layout().is_err());
        b.field_types.pop();
        assert!(b.check_layout().is_err());
    }
}
