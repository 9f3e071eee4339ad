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
    out.reserve(batch.body_bytes() * 2 + batch.len() * 64);
    // Events read together share a timestamp: format it once.
    let mut cached: Option<(i64, [u8; 30])> = None;
    for event in batch.events() {
        let ts = event.timestamp();
        let text = match cached {
            Some((t, text)) if t == ts => text,
            _ => {
                let text = rfc3339(ts);
                cached = Some((ts, text));
                text
            }
        };
        write_event(&tags, &text, &event, out);
        out.push(b'\n');
    }
}

fn write_event(tags: &[(&str, &str)], timestamp: &[u8; 30], event: &Event<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"timestamp\":\"");
    out.extend_from_slice(timestamp);
    out.push(b'"');
    let has_fields = event.field_count() > 0;
    for (k, v) in tags {
        if !has_fields || !event.fields().any(|(f, _)| f == *k) {
            write_member(k, v, out);
        }
    }
    let mut message_field = false;
    for (k, v) in event.fields() {
        message_field |= k == "message";
        write_member(k, v, out);
    }
    if !message_field {
        out.extend_from_slice(b",\"message\":");
        write_string(event.body(), out);
    }
    out.push(b'}');
}

/// `,"key":"value"` for text that is valid UTF-8 already.
fn write_member(key: &str, value: &str, out: &mut Vec<u8>) {
    out.push(b',');
    write_valid(key.as_bytes(), out);
    out.push(b':');
    write_valid(value.as_bytes(), out);
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// True if any byte of `w` needs escaping: `"`, `\\` or below 0x20.
#[inline]
fn needs_escape(w: u64) -> bool {
    let has_zero = |x: u64| x.wrapping_sub(LO) & !x & HI;
    let below_space = w.wrapping_sub(LO * 0x20) & !w & HI;
    (below_space | has_zero(w ^ (LO * b'"' as u64)) | has_zero(w ^ (LO * b'\\' as u64))) != 0
}

/// Index of the first byte of `b` at or after `from` that needs escaping.
#[inline]
fn next_escape(b: &[u8], mut from: usize) -> Option<usize> {
    while from + 8 <= b.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&b[from..from + 8]);
        if needs_escape(u64::from_le_bytes(word)) {
            break;
        }
        from += 8;
    }
    b[from..]
        .iter()
        .position(|&c| c < 0x20 || c == b'"' || c == b'\\')
        .map(|i| from + i)
}

/// Writes `bytes` as a JSON string; invalid UTF-8 becomes U+FFFD.
pub fn write_string(bytes: &[u8], out: &mut Vec<u8>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => write_valid(text.as_bytes(), out),
        Err(_) => write_valid(String::from_utf8_lossy(bytes).as_bytes(), out),
    }
}

fn write_valid(b: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    let mut start = 0;
    while let Some(i) = next_escape(b, start) {
        out.extend_from_slice(&b[start..i]);
        match b[i] {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            c => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(c >> 4) as usize],
                    HEX[(c & 15) as usize],
                ]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

/// Writes `nanos` since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
pub fn write_rfc3339(nanos: i64, out: &mut Vec<u8>) {
    out.extend_from_slice(&rfc3339(nanos));
}

/// `nanos` since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`
/// (years 0 to 9999; others are clamped).
fn rfc3339(nanos: i64) -> [u8; 30] {
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000) as u64;
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400) as u64;
    let (y, m, d) = civil_from_days(days);
    let mut t = *b"0000-00-00T00:00:00.000000000Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            t[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y.clamp(0, 9999) as u64);
    put(5, 2, u64::from(m));
    put(8, 2, u64::from(d));
    put(11, 2, tod / 3600);
    put(14, 2, (tod % 3600) / 60);
    put(17, 2, tod % 60);
    put(20, 9, frac);
    t
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
    fn escapes_are_found_at_every_position_of_a_word() {
        for len in 0..20 {
            for at in 0..len {
                for special in [b'"', b'\\', b'\n', 0x1f, 0x00] {
                    let mut input = vec![b'a'; len];
                    input[at] = special;
                    let mut out = Vec::new();
                    write_string(&input, &mut out);
                    let back: String = serde_json::from_slice(&out).unwrap();
                    assert_eq!(back.as_bytes(), &input[..], "len {len} at {at}");
                }
            }
        }
        let mut out = Vec::new();
        write_string("naïve ☃ \u{7f}".as_bytes(), &mut out);
        assert_eq!(
            serde_json::from_slice::<String>(&out).unwrap(),
            "naïve ☃ \u{7f}"
        );
    }

    #[test]
    fn control_bytes_and_invalid_utf8_stay_valid_json() {
        let mut out = Vec::new();
        write_string(b"a\x01b\xffc", &mut out);
        let v: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, "a\u{1}b\u{fffd}c");
    }
}
