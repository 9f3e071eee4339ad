//! Conversions between the host's [`Batch`] and the generated WIT records.
//! For the current version buffers are moved, not copied; for 0.2.0 plugins
//! only the field spans are mapped (to records, without types) and the
//! severities stay behind.

use super::bindings::{v0_2, wit};
use crate::model::event::{Batch, value};

/// Moves the buffers of `batch` into a WIT record (leaving `batch` empty).
pub fn take_into_wit(batch: &mut Batch) -> wit::Batch {
    let b = std::mem::take(batch);
    wit::Batch {
        tags: b.tags,
        timestamps: b.timestamps,
        severities: b.severities,
        bodies: b.bodies,
        body_ends: b.body_ends,
        keys: b.keys,
        values: b.values,
        fields: b.fields,
        field_types: b.field_types,
    }
}

/// Moves a WIT record's buffers into a host batch.
pub fn from_wit(raw: wit::Batch) -> Batch {
    Batch {
        tags: raw.tags,
        timestamps: raw.timestamps,
        severities: raw.severities,
        bodies: raw.bodies,
        body_ends: raw.body_ends,
        keys: raw.keys,
        values: raw.values,
        fields: raw.fields,
        field_types: raw.field_types,
    }
}

/// Lends the buffers of `batch` to a 0.2.0 call: every value reads as a
/// string. Its fields, types and severities stay in `batch`.
pub fn lend_to_v0_2(batch: &mut Batch) -> v0_2::types::Batch {
    v0_2::types::Batch {
        tags: std::mem::take(&mut batch.tags),
        timestamps: std::mem::take(&mut batch.timestamps),
        bodies: std::mem::take(&mut batch.bodies),
        body_ends: std::mem::take(&mut batch.body_ends),
        keys: std::mem::take(&mut batch.keys),
        values: std::mem::take(&mut batch.values),
        fields: fields_v0_2(&batch.fields),
    }
}

/// Flat fields (four `u32` each) as 0.2.0's records.
pub fn fields_v0_2(flat: &[u32]) -> Vec<v0_2::types::Field> {
    flat.chunks_exact(4)
        .map(|f| v0_2::types::Field {
            event: f[0],
            key: f[1],
            start: f[2],
            len: f[3],
        })
        .collect()
}

/// Takes back what [`lend_to_v0_2`] lent.
pub fn give_back_v0_2(batch: &mut Batch, raw: v0_2::types::Batch) {
    batch.tags = raw.tags;
    batch.timestamps = raw.timestamps;
    batch.bodies = raw.bodies;
    batch.body_ends = raw.body_ends;
    batch.keys = raw.keys;
    batch.values = raw.values;
}

/// A 0.2.0 processor's output: string fields, no severities.
pub fn from_v0_2(raw: v0_2::types::Batch) -> Batch {
    let events = raw.timestamps.len();
    Batch {
        tags: raw.tags,
        timestamps: raw.timestamps,
        severities: vec![0; events],
        bodies: raw.bodies,
        body_ends: raw.body_ends,
        keys: raw.keys,
        values: raw.values,
        field_types: vec![value::STRING; raw.fields.len()],
        fields: raw
            .fields
            .into_iter()
            .flat_map(|f| [f.event, f.key, f.start, f.len])
            .collect(),
    }
}
