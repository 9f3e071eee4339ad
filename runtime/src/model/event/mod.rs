//! The host's batch of events, laid out like the WIT `batch` record so
//! that crossing into a plugin moves buffers instead of converting events.
//! Owns the layout checks; knows nothing of where events come from or go.

/// One field of one event: a span into [`Batch::values`].
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
}

/// A batch of events from one source, in flat encoding (see `wit/plugin.wit`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Tags shared by all events.
    pub tags: Vec<(String, String)>,
    /// Timestamps, ns since the epoch.
    pub timestamps: Vec<i64>,
    /// Bodies, concatenated.
    pub bodies: Vec<u8>,
    /// End offset of each body.
    pub body_ends: Vec<u32>,
    /// Interned field names.
    pub keys: Vec<String>,
    /// Field values, concatenated.
    pub values: Vec<u8>,
    /// Fields, in event order.
    pub fields: Vec<Field>,
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

    /// Appends an event without fields.
    pub fn push(&mut self, timestamp: i64, body: &[u8]) {
        self.bodies.extend_from_slice(body);
        self.timestamps.push(timestamp);
        self.body_ends.push(self.bodies.len() as u32);
    }

    /// Adds the field `key` = `value` to the last event pushed (the key is
    /// interned). Does nothing in an empty batch.
    pub fn push_field(&mut self, key: &str, value: &[u8]) {
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
        self.fields.push(Field {
            event: event as u32,
            key: key as u32,
            start: self.values.len() as u32,
            len: value.len() as u32,
        });
        self.values.extend_from_slice(value);
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

    /// The fields of event `i` as (key, value) pairs.
    pub fn fields_of(&self, i: usize) -> impl Iterator<Item = (&str, &[u8])> {
        self.fields
            .iter()
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
                (key, value)
            })
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
        if self.timestamps.len() != self.body_ends.len() {
            return err(format!(
                "{} timestamps but {} body ends",
                self.timestamps.len(),
                self.body_ends.len()
            ));
        }
        if let Err(i) = gleaner_kernels::check_ends(self.bodies.len(), &self.body_ends) {
            return err(format!(
                "body end {} of event {i} is out of order or past {} bytes",
                self.body_ends[i],
                self.bodies.len()
            ));
        }
        for f in &self.fields {
            if f.event as usize >= self.len()
                || f.key as usize >= self.keys.len()
                || (f.start as u64 + f.len as u64) > self.values.len() as u64
            {
                return err(format!("field {f:?} points outside the batch"));
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
        bad.fields.push(Field {
            event: 0,
            key: 0,
            start: 0,
            len: 1,
        });
        assert!(bad.check_layout().is_err());
        bad.values.push(b'x');
        assert!(bad.check_layout().is_ok());
        bad.fields[0].event = 5;
        assert!(bad.check_layout().is_err());
    }
}
