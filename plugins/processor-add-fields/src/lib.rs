//! `add-fields`: adds fixed fields (and optionally tags) to every event.
//!
//! Config: `fields:` a map of name → value added to each event;
//! `overwrite:` (default `true`) replaces a field the event already has,
//! otherwise the existing value is kept.

use std::collections::BTreeMap;

use gleaner_sdk::{Batch, Processor};

/// The plugin's configuration.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Fields to add: name → value.
    pub fields: BTreeMap<String, String>,
    /// Replace an existing field of the same name (default true).
    #[serde(default = "default_true")]
    pub overwrite: bool,
}

fn default_true() -> bool {
    true
}

/// The processor.
pub struct AddFields {
    config: Config,
}

impl Processor for AddFields {
    fn init(config: &str) -> Result<Self, String> {
        let config: Config = gleaner_sdk::parse_config(config)?;
        if config.fields.is_empty() {
            return Err("fields: must name at least one field".into());
        }
        Ok(AddFields { config })
    }

    fn process(&mut self, input: Batch) -> Result<Batch, String> {
        let mut out = input.builder();
        let keys: Vec<_> = self
            .config
            .fields
            .iter()
            .map(|(k, v)| (out.key(k), k.as_str(), v.as_str()))
            .collect();
        for event in input.events() {
            let mut kept = Vec::new();
            for (k, v) in event.fields() {
                let replaced = self.config.overwrite && self.config.fields.contains_key(k);
                if !replaced {
                    kept.push((k, v));
                }
            }
            let mut e = out.push(event.timestamp(), event.body());
            for (k, v) in &kept {
                e.field(k, v);
            }
            for (key, name, value) in &keys {
                if self.config.overwrite || !kept.iter().any(|(k, _)| k == name) {
                    e.field_by_key(*key, value);
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
    fn bad_config_names_the_key() {
        let err = AddFields::init(r#"{"fields":{},"x":1}"#).err().unwrap();
        assert!(err.contains("unknown field `x`"), "{err}");
        let err = AddFields::init(r#"{"fields":{}}"#).err().unwrap();
        assert!(err.starts_with("fields:"), "{err}");
    }
}
