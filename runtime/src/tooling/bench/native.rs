//! The native baseline of `gleaner bench`: the same work as a pipeline
//! (read, split lines, batch, parse, encode JSON lines, write) in one
//! thread with no Wasm, no queues and no acknowledgements. It is the floor
//! that says what the work itself costs.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use super::NGINX_REGEX;

/// What the native baseline does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NativeMode {
    /// Read, split lines, batch, write JSON lines.
    Raw,
    /// The same plus the nginx regex into fields.
    Regex,
    /// The same, parsing each line as a JSON object into fields.
    Json,
}

/// The native baseline: the work of `file input → [parse-regex |
/// parse-json] → file flusher` in one thread with no Wasm, using the SDK's
/// own batch builder and JSON encoder so the output is the same format.
pub fn native(mode: NativeMode, input: &Path, output: &Path) -> anyhow::Result<u64> {
    use gleaner_sdk::BatchBuilder;
    let re = regex::bytes::Regex::new(NGINX_REGEX)?;
    let names: Vec<(usize, String)> = re
        .capture_names()
        .enumerate()
        .filter_map(|(i, n)| n.map(|n| (i, n.to_owned())))
        .collect();
    // As the bench's parse-regex config: `types: {status: int, body_bytes_sent: int}`.
    let types: Vec<u8> = names
        .iter()
        .map(|(_, n)| match n.as_str() {
            "status" | "body_bytes_sent" => gleaner_sdk::value::INT,
            _ => gleaner_sdk::value::STRING,
        })
        .collect();
    let mut locs = re.capture_locations();
    let mut file = File::open(input)?;
    let mut out = File::create(output)?;
    let source = input.to_string_lossy().into_owned();
    let mut buf = vec![0u8; 256 * 1024];
    let mut carry: Vec<u8> = Vec::new();
    let mut json = Vec::with_capacity(4 << 20);
    let mut events = 0u64;
    let mut batch = BatchBuilder::with_capacity(1024, 1 << 20);
    let mut keys: Vec<(usize, gleaner_sdk::Key)> = Vec::new();
    batch.set_tag("source.path", &source);
    let flush =
        |batch: &mut BatchBuilder, json: &mut Vec<u8>, out: &mut File| -> std::io::Result<()> {
            let full = std::mem::take(batch).finish();
            batch.set_tag("source.path", &source);
            json.clear();
            gleaner_sdk::json::write_ndjson(&full, json);
            out.write_all(json)
        };
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let ts = crate::data::tail::now_nanos();
        let mut data = &buf[..n];
        while let Some(nl) = memchr::memchr(b'\n', data) {
            let line: &[u8] = if carry.is_empty() {
                &data[..nl]
            } else {
                carry.extend_from_slice(&data[..nl]);
                &carry
            };
            if keys.is_empty() && mode == NativeMode::Regex {
                // Interned once per batch, as the parse-regex plugin does.
                keys = names.iter().map(|(g, n)| (*g, batch.key(n))).collect();
            }
            // As parse-json with `keep_body: false`: a parsed line is not kept.
            let parsed = match mode {
                NativeMode::Json => match serde_json::from_slice(line) {
                    Ok(serde_json::Value::Object(map)) => Some(map),
                    _ => None,
                },
                _ => None,
            };
            let mut e = batch.push(ts, if parsed.is_some() { b"" } else { line });
            if mode == NativeMode::Regex && re.captures_read(&mut locs, line).is_some() {
                for ((g, key), &ty) in keys.iter().zip(&types) {
                    if let Some((a, b)) = locs.get(*g) {
                        let text = String::from_utf8_lossy(&line[a..b]);
                        if ty == gleaner_sdk::value::STRING {
                            e.field_by_key(*key, &text);
                        } else {
                            e.convert_by_key(*key, ty, &text);
                        }
                    }
                }
            }
            if let Some(map) = &parsed {
                for (k, v) in map {
                    use gleaner_sdk::value::{BOOL, FLOAT, INT, JSON, NULL};
                    match v {
                        serde_json::Value::String(s) => e.field(k, s),
                        serde_json::Value::Number(n) if n.is_i64() => {
                            e.typed(k, INT, &n.to_string())
                        }
                        serde_json::Value::Number(n) => e.typed(k, FLOAT, &n.to_string()),
                        serde_json::Value::Bool(b) => e.typed(k, BOOL, &b.to_string()),
                        serde_json::Value::Null => e.typed(k, NULL, "null"),
                        other => e.typed(k, JSON, &other.to_string()),
                    };
                }
            }
            events += 1;
            carry.clear();
            data = &data[nl + 1..];
            if batch.len() >= 1024 {
                flush(&mut batch, &mut json, &mut out)?;
                keys.clear();
            }
        }
        carry.extend_from_slice(data);
    }
    if !batch.is_empty() {
        flush(&mut batch, &mut json, &mut out)?;
    }
    Ok(events)
}
