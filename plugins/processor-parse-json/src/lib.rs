//! `parse-json`: a JSON object in the body (or a field) becomes fields.
//!
//! Config:
//! - `field`: parse this field instead of the body;
//! - `separator`: nested objects are flattened with it (default `.`:
//!   `{"http":{"status":200}}` → `http.status = 200`);
//! - `max_depth`: deeper values are kept as JSON text (default 8).
//!
//! Strings become their text; numbers, booleans and null their JSON text;
//! arrays their JSON text. A body that is not a JSON object passes
//! unchanged and is counted as `invalid`.

use gleaner_sdk::{Batch, EventBuilder, Processor};
use serde_json::Value;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    field: Option<String>,
    #[serde(default = "default_separator")]
    separator: String,
    #[serde(default = "default_max_depth")]
    max_depth: usize,
}

fn default_separator() -> String {
    ".".into()
}
fn default_max_depth() -> usize {
    8
}

/// The processor.
pub struct ParseJson(Config);

fn add(out: &mut EventBuilder<'_>, prefix: &str, value: &Value, cfg: &Config, depth: usize) {
    match value {
        Value::String(s) => {
            out.field(prefix, s);
        }
        Value::Object(map) if depth < cfg.max_depth => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}{}{k}", cfg.separator)
                };
                add(out, &key, v, cfg, depth + 1);
            }
        }
        other => {
            out.field(prefix, &other.to_string());
        }
    }
}

impl Processor for ParseJson {
    fn init(config: &str) -> Result<Self, String> {
        let c: Config = gleaner_sdk::parse_config(config)?;
        if c.max_depth == 0 {
            return Err("max_depth: must be at least 1".into());
        }
        Ok(ParseJson(c))
    }

    fn process(&mut self, input: Batch) -> Result<Batch, String> {
        let mut out = input.builder();
        let mut invalid = 0u64;
        for event in input.events() {
            let subject = match &self.0.field {
                Some(f) => event.field(f).map(str::as_bytes),
                None => Some(event.body()),
            };
            let parsed = subject
                .and_then(|s| serde_json::from_slice::<Value>(s).ok())
                .filter(Value::is_object);
            let mut e = out.push_copy(&event);
            match parsed {
                Some(v) => add(&mut e, "", &v, &self.0, 0),
                None => invalid += 1,
            }
        }
        gleaner_sdk::host::counter_add("invalid", invalid);
        Ok(out.finish())
    }
}

gleaner_sdk::export_processor!(ParseJson);

#[cfg(test)]
mod tests {
    use gleaner_sdk::testing::{batch_of_lines, records};

    use super::*;

    #[test]
    fn nested_objects_flatten_and_scalars_become_text() {
        let mut p = ParseJson::init("{}").unwrap();
        let line = r#"{"level":"warn","http":{"status":503,"ok":false},"tags":["a","b"],"n":null}"#;
        let out = records(&p.process(batch_of_lines(&[line])).unwrap());
        let f = &out[0].fields;
        assert_eq!(f["level"], "warn");
        assert_eq!(f["http.status"], "503");
        assert_eq!(f["http.ok"], "false");
        assert_eq!(f["tags"], r#"["a","b"]"#);
        assert_eq!(f["n"], "null");
        assert_eq!(f.len(), 5);
    }

    #[test]
    fn non_objects_pass_unchanged() {
        let mut p = ParseJson::init("{}").unwrap();
        let out = records(
            &p.process(batch_of_lines(&["not json", "[1,2]", "{\"a\":\"b\"}"]))
                .unwrap(),
        );
        assert_eq!(out.len(), 3);
        assert!(out[0].fields.is_empty() && out[1].fields.is_empty());
        assert_eq!(out[2].fields["a"], "b");
    }

    #[test]
    fn depth_limit_keeps_deep_values_as_json() {
        let mut p = ParseJson::init(r#"{"max_depth":1,"separator":"_"}"#).unwrap();
        let out = records(
            &p.process(batch_of_lines(&[r#"{"a":{"b":{"c":1}}}"#]))
                .unwrap(),
        );
        assert_eq!(out[0].fields["a"], r#"{"b":{"c":1}}"#);
    }
}
