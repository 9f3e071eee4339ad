//! `parse-json`: a JSON object in the body (or a field) becomes fields.
//!
//! Config:
//! - `field`: parse this field instead of the body;
//! - `separator`: nested objects are flattened with it (default `.`:
//!   `{"http":{"status":200}}` → `http.status = 200`);
//! - `max_depth`: deeper values are kept as JSON text (default 8);
//! - `keep_body`: keep the body once it is parsed (default true); `false`
//!   empties it, as Fluent Bit's and LoongCollector's JSON parsers drop the
//!   source by default (a body that is not an object is always kept).
//!
//! Members keep JSON's types: strings, integers (within i64; larger ones
//! are floats), floats, booleans and null, arrays (and objects deeper than
//! `max_depth`) as JSON. A member that is already a field replaces it. A
//! body that is not a JSON object passes unchanged and is counted as
//! `invalid`.

mod flat;

use gleaner_sdk::{Batch, Processor};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    field: Option<String>,
    #[serde(default = "default_separator")]
    separator: String,
    #[serde(default = "default_max_depth")]
    max_depth: usize,
    #[serde(default = "default_keep_body")]
    keep_body: bool,
}

fn default_keep_body() -> bool {
    true
}

fn default_separator() -> String {
    ".".into()
}
fn default_max_depth() -> usize {
    8
}

/// The processor.
pub struct ParseJson {
    config: Config,
    /// Scratch space reused for every event.
    flat: flat::Flat,
}

impl Processor for ParseJson {
    fn init(config: &str) -> Result<Self, String> {
        let c: Config = gleaner_sdk::parse_config(config)?;
        if c.max_depth == 0 {
            return Err("max_depth: must be at least 1".into());
        }
        Ok(ParseJson {
            config: c,
            flat: flat::Flat::default(),
        })
    }

    fn process(&mut self, input: Batch) -> Result<Batch, String> {
        let mut out = input.builder();
        let mut invalid = 0u64;
        let c = &self.config;
        for event in input.events() {
            let subject = match &c.field {
                Some(f) => event.field(f).map(str::as_bytes),
                None => Some(event.body()),
            };
            let parsed = subject.is_some_and(|s| self.flat.parse(s, &c.separator, c.max_depth));
            let mut e = out.push_copy(&event);
            if parsed {
                if !c.keep_body && c.field.is_none() {
                    e.set_body(b"");
                }
                for (name, ty, value) in self.flat.iter() {
                    e.typed(name, ty, value);
                }
            } else {
                invalid += 1;
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
        let typed = p.process(batch_of_lines(&[line])).unwrap();
        use gleaner_sdk::Value::*;
        assert_eq!(
            typed.event(0).values().map(|(_, v)| v).collect::<Vec<_>>(),
            [
                Str("warn"),
                Int(503),
                Bool(false),
                Json(r#"["a","b"]"#),
                Null
            ]
        );
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

    #[test]
    fn the_body_can_be_dropped_once_parsed() {
        let mut p = ParseJson::init(r#"{"keep_body":false}"#).unwrap();
        let out = records(
            &p.process(batch_of_lines(&[r#"{"a":1}"#, "not json"]))
                .unwrap(),
        );
        assert_eq!(
            (out[0].body.as_str(), out[0].fields["a"].as_str()),
            ("", "1")
        );
        assert_eq!(out[1].body, "not json");
    }

    #[test]
    fn escapes_numbers_and_broken_documents() {
        let mut p = ParseJson::init("{}").unwrap();
        let out = records(
            &p.process(batch_of_lines(&[
                r#"{"msg":"a \"quoted\" \u00e9 line","f":1.5,"big":18446744073709551615,"neg":-3}"#,
                r#"{"a":"b","c":"#,
                r#"{"a":"b"} trailing"#,
                r#""a string""#,
            ]))
            .unwrap(),
        );
        let f = &out[0].fields;
        assert_eq!(f["msg"], "a \"quoted\" \u{e9} line");
        assert_eq!(f["f"], "1.5");
        assert_eq!(f["big"], "18446744073709551615");
        assert_eq!(f["neg"], "-3");
        let typed = p
            .process(batch_of_lines(&[
                r#"{"f":1.5,"big":18446744073709551615,"neg":-3,"e":1e2}"#,
            ]))
            .unwrap();
        let types: Vec<u8> = typed.event(0).values().map(|(_, v)| v.type_tag()).collect();
        use gleaner_sdk::value::{FLOAT, INT};
        assert_eq!(types, [FLOAT, FLOAT, INT, FLOAT]);
        for broken in &out[1..] {
            assert!(broken.fields.is_empty(), "{broken:?}");
        }
    }
}
