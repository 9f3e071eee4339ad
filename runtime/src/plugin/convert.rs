//! Conversions between the host's [`Batch`] and the generated WIT record.
//! Buffers are moved, not copied; only the small field records are mapped.

use super::bindings::wit;
use crate::model::event::{Batch, Field};

/// Moves the buffers of `batch` into a WIT record (leaving `batch` empty).
pub fn take_into_wit(batch: &mut Batch) -> wit::Batch {
    wit::Batch {
        tags: std::mem::take(&mut batch.tags),
        timestamps: std::mem::take(&mut batch.timestamps),
        bodies: std::mem::take(&mut batch.bodies),
        body_ends: std::mem::take(&mut batch.body_ends),
        keys: std::mem::take(&mut batch.keys),
        values: std::mem::take(&mut batch.values),
        fields: batch
            .fields
            .drain(..)
            .map(|f| wit::Field {
                event: f.event,
                key: f.key,
                start: f.start,
                len: f.len,
            })
            .collect(),
    }
}

/// Moves a WIT record's buffers into a host batch.
pub fn from_wit(raw: wit::Batch) -> Batch {
    Batch {
        tags: raw.tags,
        timestamps: raw.timestamps,
        bodies: raw.bodies,
        body_ends: raw.body_ends,
        keys: raw.keys,
        values: raw.values,
        fields: raw
            .fields
            .into_iter()
            .map(|f| Field {
                event: f.event,
                key: f.key,
                start: f.start,
                len: f.len,
            })
            .collect(),
    }
}
