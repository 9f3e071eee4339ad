//! `severity`: sets each event's severity (OpenTelemetry's numbers, 1-24)
//! from a field, for the destinations that have one (OTLP's
//! `severity_number`, Loki's `level`, the `severity` of every JSON line).
//!
//! Config:
//! - `field`: the field to read (default `level`);
//! - `map`: more names (or numbers) and what they mean, e.g.
//!   `{"30": info, "W": warn, "audit": "INFO2"}`: a value is a severity name
//!   (`trace`, `debug`, `info`, `warn`, `error`, `fatal`, or OpenTelemetry's
//!   `WARN2`-style names) or a number 1-24; it wins over the usual names;
//! - `remove`: drop the field once it is mapped (default false).
//!
//! Known without a map, in any case: trace, debug, info, information,
//! informational, notice, warn, warning, error, err, fatal, panic, crit,
//! critical, alert, emerg, emergency, and syslog's numbers 0-7 (as
//! OpenTelemetry's data model maps syslog: emergency FATAL4 ... debug
//! DEBUG). A value nobody knows leaves the severity unset and is counted
//! (`unknown`); an event without the field is counted as `missing`.

use std::collections::HashMap;

use gleaner_sdk::{Batch, Processor, severity};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_field")]
    field: String,
    #[serde(default)]
    map: HashMap<String, serde_json::Value>,
    #[serde(default)]
    remove: bool,
}

fn default_field() -> String {
    "level".into()
}

/// The usual names, lower case.
fn usual(name: &str) -> Option<u8> {
    Some(match name {
        "trace" => severity::TRACE,
        "debug" | "7" => severity::DEBUG,
        "info" | "information" | "informational" | "6" => severity::INFO,
        "notice" | "5" => severity::INFO + 1,
        "warn" | "warning" | "4" => severity::WARN,
        "error" | "err" | "3" => severity::ERROR,
        "fatal" | "panic" => severity::FATAL,
        "crit" | "critical" | "2" => severity::FATAL + 1,
        "alert" | "1" => severity::FATAL + 2,
        "emerg" | "emergency" | "0" => severity::FATAL + 3,
        _ => return None,
    })
}

/// A `map:` value: a name (`warn`, `WARN2`) or a number 1-24.
fn severity_of(value: &serde_json::Value) -> Option<u8> {
    match value {
        serde_json::Value::Number(n) => {
            n.as_u64().filter(|n| (1..=24).contains(n)).map(|n| n as u8)
        }
        serde_json::Value::String(s) => {
            let upper = s.to_ascii_uppercase();
            (1..=24).find(|&n| severity::text(n) == Some(upper.as_str()))
        }
        _ => None,
    }
}

/// The processor.
pub struct Severity {
    field: String,
    /// `map:` with lower-case keys.
    map: HashMap<String, u8>,
    remove: bool,
}

impl Severity {
    fn lookup(&self, value: &str) -> Option<u8> {
        let v = value.trim();
        let lower;
        let v = if v.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = v.to_ascii_lowercase();
            lower.as_str()
        } else {
            v
        };
        self.map.get(v).copied().or_else(|| usual(v))
    }
}

impl Processor for Severity {
    fn init(config: &str) -> Result<Self, String> {
        let c: Config = gleaner_sdk::parse_config(config)?;
        let mut map = HashMap::new();
        for (name, value) in &c.map {
            let n = severity_of(value).ok_or_else(|| {
                format!(
                    "map.{name}: `{value}` is not a severity (trace, debug, info, warn, error, \
                     fatal, an OpenTelemetry name such as WARN2, or a number 1-24)"
                )
            })?;
            map.insert(name.trim().to_ascii_lowercase(), n);
        }
        Ok(Severity {
            field: c.field,
            map,
            remove: c.remove,
        })
    }

    fn process(&mut self, input: Batch) -> Result<Batch, String> {
        let mut out = input.builder();
        let (mut unknown, mut missing) = (0u64, 0u64);
        for event in input.events() {
            let mut e = out.push_copy(&event);
            match event.field(&self.field) {
                None => missing += 1,
                Some(v) => match self.lookup(v) {
                    Some(n) => {
                        e.set_severity(n);
                        if self.remove {
                            e.remove(&self.field);
                        }
                    }
                    None => unknown += 1,
                },
            }
        }
        gleaner_sdk::host::counter_add("unknown", unknown);
        gleaner_sdk::host::counter_add("missing", missing);
        Ok(out.finish())
    }
}

gleaner_sdk::export_processor!(Severity);

#[cfg(test)]
mod tests {
    use gleaner_sdk::BatchBuilder;
    use gleaner_sdk::testing::counters;

    use super::*;

    fn run(config: &str, levels: &[Option<&str>]) -> Vec<(u8, usize)> {
        let mut p = Severity::init(config).unwrap();
        let mut b = BatchBuilder::new();
        for l in levels {
            let mut e = b.push(0, b"x");
            if let Some(l) = l {
                e.field("level", l);
            }
        }
        let out = p.process(b.finish()).unwrap();
        out.events()
            .map(|e| (e.severity(), e.field_count()))
            .collect()
    }

    #[test]
    fn usual_names_in_any_case_and_syslog_numbers() {
        let levels = [
            "trace", "DEBUG", "Info", "notice", "WARN", "warning", "error", "ERR", "fatal",
            "CRITICAL", "panic", "0", "3", "7", " info ",
        ];
        let got: Vec<u8> = run("{}", &levels.map(Some))
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(got, [1, 5, 9, 10, 13, 13, 17, 17, 21, 22, 21, 24, 17, 5, 9]);
    }

    #[test]
    fn a_map_adds_names_and_unknown_or_missing_values_are_counted() {
        let config = r#"{"map":{"30":"info","W":"warn","audit":"INFO2","60":21},"remove":true}"#;
        let got = run(
            config,
            &[
                Some("30"),
                Some("w"),
                Some("audit"),
                Some("60"),
                Some("loud"),
                None,
            ],
        );
        assert_eq!(got, [(9, 0), (13, 0), (10, 0), (21, 0), (0, 1), (0, 0)]);
        let c = counters();
        assert_eq!((c.get("unknown"), c.get("missing")), (Some(&1), Some(&1)));
        let err = Severity::init(r#"{"map":{"x":"loud"}}"#).err().unwrap();
        assert!(
            err.starts_with("map.x: `\"loud\"` is not a severity"),
            "{err}"
        );
        let err = Severity::init(r#"{"map":{"x":25}}"#).err().unwrap();
        assert!(err.starts_with("map.x:"), "{err}");
    }
}
