//! JSON lines encoding of events, shared by the first-party flushers so that
//! `stdout`, `file` and `http` write the same document for the same event.
//!
//! One event becomes one object: `timestamp` (RFC 3339, UTC, nanoseconds),
//! the batch tags, the event's fields, and `message` (the body) unless a
//! field is itself named `message`. A field wins over a tag of the same name.

use crate::batch::{Batch, Event};

/// Appends one JSON document per event of `batch` to `out`, each ending with `\n`.
pub fn write_ndjson(batch: &Batch, out: &mut Vec<u8>) {
    let tags: Vec<(&str, &str)> = batch.tags().collect();
    for event in batch.events() {
        write_event(&tags, &event, out);
        out.push(b'\n');
    }
}

fn write_event(tags: &[(&str, &str)], event: &Event<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"timestamp\":\"");
    write_rfc3339(event.timestamp(), out);
    out.push(b'"');
    let has_field = |key: &str| event.fields().any(|(k, _)| k == key);
    for (k, v) in tags {
        if !has_field(k) {
            write_member(k, v.as_bytes(), out);
        }
    }
    let mut message_field = false;
    for (k, v) in event.fields() {
        message_field |= k == "message";
        write_member(k, v.as_bytes(), out);
    }
    if !message_field {
        write_member("message", event.body(), out);
    }
    out.push(b'}');
}

fn write_member(key: &str, value: &[u8], out: &mut Vec<u8>) {
    out.push(b',');
    write_string(key.as_bytes(), out);
    out.push(b':');
    write_string(value, out);
}

/// Writes `bytes` as a JSON string; invalid UTF-8 becomes U+FFFD.
pub fn write_string(bytes: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    let text = String::from_utf8_lossy(bytes);
    let b = text.as_bytes();
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let escape: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&b[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(format!("\\u{c:04x}").as_bytes());
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

/// Writes `nanos` since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
pub fn write_rfc3339(nanos: i64, out: &mut Vec<u8>) {
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        tod / 3600,
        (tod % 3600) / 60,
        tod % 60
    );
    out.extend_from_slice(s.as_bytes());
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchBuilder;

    #[test]
    fn timestamps_are_rfc3339_utc_with_nanoseconds() {
        let mut out = Vec::new();
        write_rfc3339(1_700_000_000_123_456_789, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2023-11-14T22:13:20.123456789Z"
        );
        let mut out = Vec::new();
        write_rfc3339(951_782_400_000_000_000, &mut out); // leap day 2000
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2000-02-29T00:00:00.000000000Z"
        );
    }

    #[test]
    fn events_become_one_json_object_per_line_with_tags_and_fields() {
        let mut b = BatchBuilder::new();
        b.set_tag("source.path", "/a \"quoted\".log");
        b.push(0, b"GET /\tok\n").field("status", "200");
        b.push(0, b"raw")
            .field("source.path", "override")
            .field("message", "from field");
        let mut out = Vec::new();
        write_ndjson(&b.finish(), &mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["message"], "GET /\tok\n");
        assert_eq!(lines[0]["status"], "200");
        assert_eq!(lines[0]["source.path"], "/a \"quoted\".log");
        assert_eq!(lines[1]["source.path"], "override");
        assert_eq!(lines[1]["message"], "from field");
        assert_eq!(lines[1].as_object().unwrap().len(), 3);
    }

    #[test]
    fn control_bytes_and_invalid_utf8_stay_valid_json() {
        let mut out = Vec::new();
        write_string(b"a\x01b\xffc", &mut out);
        let v: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, "a\u{1}b\u{fffd}c");
    }
}
