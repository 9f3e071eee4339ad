//! `add-fields`: adds fixed fields (and optionally tags) to every event.
//!
//! Config: `fields:` a map of name → value added to each event, typed as
//! written (`port: 8080` is an integer, `canary: true` a boolean, `"8080"`
//! a string; lists and maps become JSON); `overwrite:` (default `true`)
//! replaces a field the event already has, otherwise the existing value is
//! kept.

use std::collections::BTreeMap;

use gleaner_sdk::value::{BOOL, FLOAT, INT, JSON, NULL, STRING};
use gleaner_sdk::{Batch, Processor};

/// The plugin's configuration.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Fields to add: name → value.
    pub fields: BTreeMap<String, serde_json::Value>,
    /// Replace an existing field of the same name (default true).
    #[serde(default = "default_true")]
    pub overwrite: bool,
}

fn default_true() -> bool {
    true
}

/// The processor.
pub struct AddFields {
    /// (name, type, wire text) of each field to add.
    fields: Vec<(String, u8, String)>,
    overwrite: bool,
}

/// A config value as a typed field.
fn typed(value: &serde_json::Value) -> (u8, String) {
    use serde_json::Value as V;
    match value {
        V::String(s) => (STRING, s.clone()),
        V::Number(n) if n.is_i64() => (INT, n.to_string()),
        V::Number(n) => (FLOAT, n.to_string()),
        V::Bool(b) => (BOOL, b.to_string()),
        V::Null => (NULL, "null".into()),
        other => (JSON, other.to_string()),
    }
}

impl Processor for AddFields {
    fn init(config: &str) -> Result<Self, String> {
        let config: Config = gleaner_sdk::parse_config(config)?;
        if config.fields.is_empty() {
            return Err("fields: must name at least one field".into());
        }
        let fields = config
            .fields
            .iter()
            .map(|(k, v)| {
                let (ty, text) = typed(v);
                (k.clone(), ty, text)
            })
            .collect();
        Ok(AddFields {
            fields,
            overwrite: config.overwrite,
        })
    }

    fn process(&mut self, input: Batch) -> Result<Batch, String> {
        let mut out = input.builder();
        let keys: Vec<_> = self.fields.iter().map(|(k, ..)| out.key(k)).collect();
        for event in input.events() {
            let mut e = out.push_copy(&event);
            for (key, (name, ty, text)) in keys.iter().zip(&self.fields) {
                if self.overwrite || event.field(name).is_none() {
                    e.typed_by_key(*key, *ty, text);
                }
            }
        }
        Ok(out.finish())
    }
}

gleaner_sdk::export_processor!(AddFields);

#[cfg(test)]
mod tests {
    use gleaner_sdk::testing::{batch_of_lines, records};

    use super::*;

    #[test]
    fn adds_fields_to_every_event() {
        let mut p = AddFields::init(r#"{"fields":{"env":"prod","team":"web"}}"#).unwrap();
        let out = records(&p.process(batch_of_lines(&["a", "b"])).unwrap());
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].body, "b");
        assert_eq!(out[1].fields.get("env").map(String::as_str), Some("prod"));
        assert_eq!(out[1].fields.get("team").map(String::as_str), Some("web"));
    }

    #[test]
    fn overwrite_false_keeps_existing_values() {
        let mut b = gleaner_sdk::BatchBuilder::new();
        b.push(0, b"x").field("env", "dev");
        let mut p = AddFields::init(r#"{"fields":{"env":"prod"},"overwrite":false}"#).unwrap();
        let out = records(&p.process(b.finish()).unwrap());
        assert_eq!(out[0].fields.get("env").map(String::as_str), Some("dev"));
        let mut p = AddFields::init(r#"{"fields":{"env":"prod"}}"#).unwrap();
        let mut b = gleaner_sdk::BatchBuilder::new();
        b.push(0, b"x").field("env", "dev");
        let out = p.process(b.finish()).unwrap();
        assert_eq!(
            out.event(0).fields().collect::<Vec<_>>(),
            vec![("env", "prod")]
        );
    }

    #[test]
    fn values_are_typed_as_written_and_the_severity_stays() {
        let mut p = AddFields::init(
            r#"{"fields":{"port":8080,"ratio":0.5,"canary":true,"id":"8080","tags":["a"]}}"#,
        )
        .unwrap();
        let mut b = gleaner_sdk::BatchBuilder::new();
        b.push(0, b"x").set_severity(9);
        let out = p.process(b.finish()).unwrap();
        let e = out.event(0);
        use gleaner_sdk::Value::*;
        assert_eq!(
            e.values().collect::<Vec<_>>(),
            [
                ("canary", Bool(true)),
                ("id", Str("8080")),
                ("port", Int(8080)),
                ("ratio", Float(0.5)),
                ("tags", Json(r#"["a"]"#)),
            ]
        );
        assert_eq!(e.severity(), 9);
    }

    #[test]
    fn bad_config_names_the_key() {
        let err = AddFields::init(r#"{"fields":{},"x":1}"#).err().unwrap();
        assert!(err.contains("unknown field `x`"), "{err}");
        let err = AddFields::init(r#"{"fields":{}}"#).err().unwrap();
        assert!(err.starts_with("fields:"), "{err}");
    }
}
