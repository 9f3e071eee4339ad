//! One event as a JSON object, and back: the form of dead-letter records
//! and of `gleaner tap`'s lines. `timestamp_ns`, `severity` (when set),
//! `tags` (the batch's), `fields` (typed values as JSON values, strings as
//! strings) and `message`. Owns only the mapping; no I/O.

use serde_json::{Map, Value};

use super::{Batch, value};

/// Event `i` of `batch` as a JSON object.
pub fn event_object(batch: &Batch, i: usize) -> Map<String, Value> {
    let mut obj = Map::new();
    obj.insert("timestamp_ns".into(), batch.timestamps[i].into());
    if let Some(&severity) = batch.severities.get(i).filter(|s| **s != 0) {
        obj.insert("severity".into(), severity.into());
    }
    let tags: Map<_, _> = batch
        .tags
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into()))
        .collect();
    obj.insert("tags".into(), tags.into());
    let fields: Map<_, _> = batch
        .fields_of(i)
        .map(|(k, ty, v)| {
            // A typed value is valid JSON (the layout check saw to it).
            let typed = (ty != value::STRING)
                .then(|| serde_json::from_slice::<Value>(v).ok())
                .flatten();
            let v = typed.unwrap_or_else(|| String::from_utf8_lossy(v).into_owned().into());
            (k.to_owned(), v)
        })
        .collect();
    obj.insert("fields".into(), fields.into());
    obj.insert(
        "message".into(),
        String::from_utf8_lossy(batch.body(i)).into_owned().into(),
    );
    obj
}

/// The tags of an object made by [`event_object`], in its order.
pub fn tags_of(obj: &Map<String, Value>) -> Vec<(String, String)> {
    obj.get("tags")
        .and_then(Value::as_object)
        .map(|t| {
            t.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Appends the event of an object made by [`event_object`] to `batch`
/// (its tags are the batch's: see [`tags_of`]). Fails, adding nothing, if
/// the object has no string `message` or no integer `timestamp_ns`.
pub fn push_object(batch: &mut Batch, obj: &Map<String, Value>) -> Result<(), String> {
    let message = obj
        .get("message")
        .and_then(Value::as_str)
        .ok_or("no string `message`")?;
    let timestamp = obj
        .get("timestamp_ns")
        .and_then(Value::as_i64)
        .ok_or("no integer `timestamp_ns`")?;
    let severity = match obj.get("severity") {
        None => 0,
        Some(s) => s
            .as_u64()
            .filter(|s| *s <= 24)
            .ok_or("`severity` is not a number from 0 to 24")? as u8,
    };
    batch.push(timestamp, message.as_bytes());
    if let Some(last) = batch.severities.last_mut() {
        *last = severity;
    }
    for (key, v) in obj
        .get("fields")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        match v {
            Value::String(s) => batch.push_typed(key, value::STRING, s.as_bytes()),
            Value::Number(n) if n.is_i64() || n.is_u64() => {
                batch.push_typed(key, value::INT, n.to_string().as_bytes())
            }
            Value::Number(n) => batch.push_typed(key, value::FLOAT, n.to_string().as_bytes()),
            Value::Bool(b) => batch.push_typed(key, value::BOOL, b.to_string().as_bytes()),
            Value::Null => batch.push_typed(key, value::NULL, b"null"),
            other => batch.push_typed(key, value::JSON, other.to_string().as_bytes()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_survives_the_round_trip_with_its_types() {
        let mut b = Batch::with_tags(vec![("source.path".into(), "/a.log".into())], 2, 64);
        b.push(7, b"first");
        b.push(9, b"second");
        b.severities[1] = 17;
        b.push_field("method", b"GET");
        b.push_typed("status", value::INT, b"503");
        b.push_typed("took", value::FLOAT, b"0.25");
        b.push_typed("ok", value::BOOL, b"false");
        b.push_typed("gone", value::NULL, b"null");
        b.push_typed("user", value::JSON, br#"{"id":1}"#);
        let objects: Vec<_> = (0..2).map(|i| event_object(&b, i)).collect();
        assert_eq!(
            Value::Object(objects[1].clone()),
            serde_json::json!({"timestamp_ns": 9, "severity": 17,
                "tags": {"source.path": "/a.log"},
                "fields": {"method": "GET", "status": 503, "took": 0.25, "ok": false,
                    "gone": null, "user": {"id": 1}},
                "message": "second"})
        );
        let mut back = Batch::with_tags(tags_of(&objects[0]), 2, 64);
        for o in &objects {
            push_object(&mut back, o).unwrap();
        }
        assert!(back.check_layout().is_ok());
        let again: Vec<_> = (0..2).map(|i| event_object(&back, i)).collect();
        assert_eq!(again, objects);
        assert_eq!(
            (back.timestamps, back.severities),
            (b.timestamps, b.severities)
        );
    }

    #[test]
    fn an_object_without_a_message_or_time_adds_nothing() {
        let mut b = Batch::default();
        let no_time = serde_json::json!({"message": "x"});
        let no_message = serde_json::json!({"timestamp_ns": 1});
        assert!(push_object(&mut b, no_time.as_object().unwrap()).is_err());
        assert!(push_object(&mut b, no_message.as_object().unwrap()).is_err());
        assert!(b.is_empty());
    }
}
