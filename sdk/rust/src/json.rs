//! JSON lines encoding of events, shared by the first-party flushers so that
//! `stdout`, `file` and `http` write the same document for the same event.
//!
//! One event becomes one object: `timestamp` (RFC 3339, UTC, nanoseconds),
//! `severity` (OpenTelemetry's short name, `WARN`) when the event has one,
//! the batch tags, the event's fields with their types (`"status":200`),
//! and `message` (the body) unless a field is itself named `message`. A
//! field wins over a tag, or the severity, of the same name.

use crate::batch::Batch;
use crate::time::TimeFormat;
pub use crate::time::write_rfc3339;
use crate::value::{STRING, severity};

/// Appends one JSON document per event of `batch` to `out`, each ending with `\n`.
pub fn write_ndjson(batch: &Batch, out: &mut Vec<u8>) {
    write_documents(batch, out, "timestamp", |_, _| {});
}

/// [`write_ndjson`] with the time under `timestamp_key` (Elasticsearch
/// wants `@timestamp`), and `before(i, out)` called before event `i`'s
/// document (a bulk action line, say).
pub fn write_documents(
    batch: &Batch,
    out: &mut Vec<u8>,
    timestamp_key: &str,
    before: impl FnMut(usize, &mut Vec<u8>),
) {
    let layout = Layout {
        time: Some((timestamp_key, TimeFormat::Rfc3339)),
        ..Layout::default()
    };
    write_with(batch, out, &layout, before);
}

/// Which members a document has besides the event's fields.
#[derive(Debug, Clone)]
pub struct Layout<'a> {
    /// The time's member name and format; `None` leaves the time out.
    pub time: Option<(&'a str, TimeFormat)>,
    /// The body's member name, unless a field has that name; `None`
    /// leaves the body out.
    pub body_key: Option<&'a str>,
    /// The batch tags as members.
    pub tags: bool,
    /// Field and tag names left out (sent elsewhere, as Loki labels say).
    pub skip: &'a [&'a str],
}

impl Default for Layout<'_> {
    /// `timestamp` (RFC 3339), tags, fields and `message`.
    fn default() -> Self {
        Layout {
            time: Some(("timestamp", TimeFormat::Rfc3339)),
            body_key: Some("message"),
            tags: true,
            skip: &[],
        }
    }
}

/// Appends one JSON document per event, laid out as `layout` says, each
/// ending with `\n`; `before(i, out)` is called before event `i`'s.
pub fn write_with(
    batch: &Batch,
    out: &mut Vec<u8>,
    layout: &Layout<'_>,
    mut before: impl FnMut(usize, &mut Vec<u8>),
) {
    let skipped = |name: &str| layout.skip.contains(&name);
    let mut open = vec![b'{'];
    if let Some((key, _)) = layout.time {
        write_string(key.as_bytes(), &mut open);
        open.push(b':');
    }
    let tags: Vec<(&str, &str)> = if layout.tags {
        batch.tags().filter(|(k, _)| !skipped(k)).collect()
    } else {
        Vec::new()
    };
    // The tag members, encoded once for the events that do not override a tag.
    let mut tag_json = Vec::new();
    for (k, v) in &tags {
        write_member(k, v, &mut tag_json);
    }
    // Every field name, encoded once as `,"name":`; which names override a
    // tag, which are left out, and which one is the body's.
    let keys = batch.keys();
    let key_json: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| {
            let mut v = vec![b','];
            write_string(k.as_bytes(), &mut v);
            v.push(b':');
            v
        })
        .collect();
    let overrides: Vec<bool> = keys
        .iter()
        .map(|k| tags.iter().any(|(t, _)| t == k))
        .collect();
    let left_out: Vec<bool> = keys.iter().map(|k| skipped(k)).collect();
    let message_key = layout
        .body_key
        .and_then(|b| keys.iter().position(|k| k == b));
    let severity_key = keys.iter().position(|k| k == "severity");
    let write_severity = !skipped("severity");
    out.reserve(batch.body_bytes() * 2 + batch.len() * (64 + tag_json.len()));
    // Events read together share a timestamp: format it once.
    let mut time_text = Vec::new();
    let mut time_of = None;
    for event in batch.events() {
        before(event.index(), out);
        let start = out.len();
        out.extend_from_slice(&open);
        if let Some((_, format)) = layout.time {
            let ts = event.timestamp();
            if time_of != Some(ts) {
                time_text.clear();
                format.write_json(ts, &mut time_text);
                time_of = Some(ts);
            }
            out.extend_from_slice(&time_text);
        }
        let has_fields = event.field_count() > 0;
        if let Some(name) = severity::text(event.severity()).filter(|_| write_severity) {
            let shadowed = severity_key.is_some_and(|s| event.raw_fields().any(|(k, ..)| k == s));
            if !shadowed {
                write_member("severity", name, out);
            }
        }
        if has_fields && event.raw_fields().any(|(k, ..)| overrides[k]) {
            for (name, value) in &tags {
                if !event.raw_fields().any(|(k, ..)| keys[k] == *name) {
                    write_member(name, value, out);
                }
            }
        } else {
            out.extend_from_slice(&tag_json);
        }
        let mut message_field = false;
        if has_fields {
            for (k, ty, value) in event.raw_fields() {
                if left_out[k] {
                    continue;
                }
                message_field |= Some(k) == message_key;
                out.extend_from_slice(&key_json[k]);
                if ty == STRING {
                    write_string(value, out);
                } else {
                    // The host lets a typed value through only as valid JSON.
                    out.extend_from_slice(value);
                }
            }
        }
        if let Some(body_key) = layout.body_key
            && !message_field
        {
            out.push(b',');
            write_string(body_key.as_bytes(), out);
            out.push(b':');
            write_string(event.body(), out);
        }
        // Without a time first, the first member came with a comma.
        if layout.time.is_none() && out.get(start + 1) == Some(&b',') {
            out.remove(start + 1);
        }
        out.extend_from_slice(b"}\n");
    }
}

/// `,"key":"value"`.
fn write_member(key: &str, value: &str, out: &mut Vec<u8>) {
    out.push(b',');
    write_string(key.as_bytes(), out);
    out.push(b':');
    write_string(value.as_bytes(), out);
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// A mask with the high bit set in each byte of `w` (little-endian) that
/// is not plain ASCII text: `"`, `\\`, below 0x20, or 0x80 and above. Bytes
/// above the first special one may be flagged too (a borrow carries), so
/// only the lowest flag is exact, which is the one used.
#[inline]
fn special(w: u64) -> u64 {
    let has_zero = |x: u64| x.wrapping_sub(LO) & !x & HI;
    let below_space = w.wrapping_sub(LO * 0x20) & !w;
    (below_space | w) & HI | has_zero(w ^ (LO * b'"' as u64)) | has_zero(w ^ (LO * b'\\' as u64))
}

#[inline]
fn plain(c: u8) -> bool {
    (0x20..0x80).contains(&c) && c != b'"' && c != b'\\'
}

/// The index of the first byte at or after `i` that is not plain text
/// (`bytes.len()` if none), 8 bytes a step.
#[inline]
fn next_special(bytes: &[u8], mut i: usize) -> usize {
    let n = bytes.len();
    while i + 8 <= n {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[i..i + 8]);
        let m = special(u64::from_le_bytes(word));
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && plain(bytes[i]) {
        i += 1;
    }
    i
}

/// Appends the run of plain text that starts at `start` to `out`; returns
/// where it ends (a byte to escape, or `bytes.len()`).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline]
fn copy_plain(bytes: &[u8], start: usize, out: &mut Vec<u8>) -> usize {
    let end = next_special(bytes, start);
    out.extend_from_slice(&bytes[start..end]);
    end
}

/// Appends the run of plain text that starts at `start` to `out`; returns
/// where it ends (a byte to escape, or `bytes.len()`).
///
/// With Wasm SIMD (plugins are built with simd128): 16 bytes are scanned
/// and stored a step, straight into `out`'s spare room, so a run costs no
/// `memory.copy` call (a call out of the sandbox per run of every string).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline]
fn copy_plain(bytes: &[u8], start: usize, out: &mut Vec<u8>) -> usize {
    use core::arch::wasm32::{
        i8x16_eq, u8x16_bitmask, u8x16_ge, u8x16_lt, u8x16_splat, v128, v128_load, v128_or,
        v128_store,
    };
    let mask = |v: v128| {
        u8x16_bitmask(v128_or(
            v128_or(
                u8x16_lt(v, u8x16_splat(0x20)),
                u8x16_ge(v, u8x16_splat(0x80)),
            ),
            v128_or(
                i8x16_eq(v, u8x16_splat(b'"')),
                i8x16_eq(v, u8x16_splat(b'\\')),
            ),
        ))
    };
    let n = bytes.len();
    // Room for the whole run plus one 16-byte store past its end.
    out.reserve(n - start + 16);
    let base = out.len();
    let mut i = start;
    while i + 16 <= n {
        // SAFETY: `i + 16 <= n` keeps the load inside `bytes`; the store is
        // at `base + (i - start) + 16 <= base + (n - start) + 16`, inside
        // the room reserved above. `v128_load`/`v128_store` need no
        // alignment. Only bytes up to the first special one are kept
        // (`set_len`), and they are initialised by the store.
        unsafe {
            let v = v128_load(bytes.as_ptr().add(i).cast::<v128>());
            v128_store(out.as_mut_ptr().add(base + (i - start)).cast::<v128>(), v);
            let bits = mask(v);
            if bits != 0 {
                let end = i + bits.trailing_zeros() as usize;
                out.set_len(base + (end - start));
                return end;
            }
        }
        i += 16;
    }
    // SAFETY: bytes `start..i` were stored above.
    unsafe { out.set_len(base + (i - start)) };
    let end = next_special(bytes, i);
    out.extend_from_slice(&bytes[i..end]);
    end
}

/// Writes `bytes` as a JSON string in one pass; invalid UTF-8 becomes U+FFFD.
///
/// Plain ASCII is scanned and copied in runs; escapes are written as they
/// are met; only a non-ASCII byte makes the rest go through UTF-8
/// validation.
pub fn write_string(bytes: &[u8], out: &mut Vec<u8>) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let n = bytes.len();
    let mut i = 0;
    loop {
        i = copy_plain(bytes, i, out);
        if i >= n {
            break;
        }
        match bytes[i] {
            b'"' => {
                out.push(b'\\');
                out.push(b'"');
            }
            b'\\' => {
                out.push(b'\\');
                out.push(b'\\');
            }
            c if c >= 0x80 => {
                // Bytes before `i` are ASCII, so a multi-byte sequence starts here.
                match std::str::from_utf8(&bytes[i..]) {
                    Ok(rest) => write_escaped(rest.as_bytes(), out),
                    Err(_) => write_escaped(String::from_utf8_lossy(&bytes[i..]).as_bytes(), out),
                }
                out.push(b'"');
                return;
            }
            c => escape(c, out),
        }
        i += 1;
    }
    out.push(b'"');
}

fn escape(c: u8, out: &mut Vec<u8>) {
    match c {
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
}

/// Escapes valid UTF-8 (no quotes around it).
fn write_escaped(b: &[u8], out: &mut Vec<u8>) {
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        if c < 0x20 || c == b'"' || c == b'\\' {
            out.extend_from_slice(&b[start..i]);
            escape(c, out);
            start = i + 1;
        }
    }
    out.extend_from_slice(&b[start..]);
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
    fn typed_values_and_severity_are_written_as_json_types() {
        let mut b = BatchBuilder::new();
        b.push(0, b"x")
            .value("status", 200)
            .value("ratio", 0.5)
            .value("cached", false)
            .value("gone", crate::Value::Null)
            .value("tags", crate::Value::Json(r#"["a",1]"#))
            .field("text", "200")
            .set_severity(crate::severity::WARN);
        b.push(0, b"y").field("severity", "custom").set_severity(17);
        let mut out = Vec::new();
        write_ndjson(&b.finish(), &mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines[0],
            serde_json::json!({"timestamp": "1970-01-01T00:00:00.000000000Z",
                "severity": "WARN", "status": 200, "ratio": 0.5, "cached": false,
                "gone": null, "tags": ["a", 1], "text": "200", "message": "x"})
        );
        assert_eq!(lines[1]["severity"], "custom");
        assert!(
            text.contains(r#""status":200,"ratio":0.5,"cached":false"#),
            "{text}"
        );
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
    fn several_escapes_in_one_word_are_each_written() {
        let specials = [b'"', b'\\', b'\n', 0x01, b'a', 0xc3];
        for a in 0..12 {
            for b in a + 1..12 {
                for &x in &specials {
                    for &y in &specials {
                        let mut input = vec![b'z'; 12];
                        input[a] = x;
                        input[b] = y;
                        let mut out = Vec::new();
                        write_string(&input, &mut out);
                        let back: String = serde_json::from_slice(&out).unwrap();
                        assert_eq!(back, String::from_utf8_lossy(&input), "{input:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn control_bytes_and_invalid_utf8_stay_valid_json() {
        let mut out = Vec::new();
        write_string(b"a\x01b\xffc", &mut out);
        let v: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, "a\u{1}b\u{fffd}c");
    }

    #[test]
    fn layouts_leave_out_the_time_tags_names_and_body() {
        let mut b = BatchBuilder::new();
        b.set_tag("host", "h1").set_tag("app", "web");
        b.push(1_700_000_000_500_000_000, b"line")
            .value("status", 200)
            .field("app", "api");
        let b = b.finish();
        let doc = |layout: &Layout<'_>| {
            let mut out = Vec::new();
            write_with(&b, &mut out, layout, |_, _| {});
            String::from_utf8(out).unwrap()
        };
        let skip = ["app"];
        assert_eq!(
            doc(&Layout {
                time: None,
                skip: &skip,
                ..Layout::default()
            }),
            "{\"host\":\"h1\",\"status\":200,\"message\":\"line\"}\n"
        );
        assert_eq!(
            doc(&Layout {
                time: Some(("time", TimeFormat::Unix)),
                body_key: None,
                tags: false,
                skip: &[],
            }),
            "{\"time\":1700000000,\"status\":200,\"app\":\"api\"}\n"
        );
    }
}
