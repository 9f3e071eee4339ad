//! `filter`: keeps or drops events by regex on a field or the body.
//!
//! Config: `include` and `exclude`, each a list of rules
//! `{ field: NAME, regex: RE }` (without `field`, the body is matched; an
//! event without the field does not match). An event is kept when it
//! matches at least one `include` rule (or there are none) and no `exclude`
//! rule. Dropped events are counted as `dropped`; they count as delivered
//! for checkpoints.

use gleaner_sdk::{Batch, Event, Processor};
use regex::bytes::Regex;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    field: Option<String>,
    regex: String,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    include: Vec<RawRule>,
    #[serde(default)]
    exclude: Vec<RawRule>,
}

struct Rule {
    field: Option<String>,
    re: Regex,
}

impl Rule {
    fn matches(&self, event: &Event<'_>) -> bool {
        match &self.field {
            Some(f) => event
                .field(f)
                .is_some_and(|v| self.re.is_match(v.as_bytes())),
            None => self.re.is_match(event.body()),
        }
    }
}

/// The processor.
pub struct Filter {
    include: Vec<Rule>,
    exclude: Vec<Rule>,
}

fn compile(list: &str, rules: Vec<RawRule>) -> Result<Vec<Rule>, String> {
    rules
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            Regex::new(&r.regex)
                .map(|re| Rule { field: r.field, re })
                .map_err(|e| format!("{list}[{i}].regex: invalid regex: {e}"))
        })
        .collect()
}

impl Processor for Filter {
    fn init(config: &str) -> Result<Self, String> {
        let c: Config = gleaner_sdk::parse_config(config)?;
        if c.include.is_empty() && c.exclude.is_empty() {
            return Err("include, exclude: give at least one rule".into());
        }
        Ok(Filter {
            include: compile("include", c.include)?,
            exclude: compile("exclude", c.exclude)?,
        })
    }

    fn process(&mut self, input: Batch) -> Result<Batch, String> {
        let before = input.len();
        let out = input.retain(|e| {
            (self.include.is_empty() || self.include.iter().any(|r| r.matches(e)))
                && !self.exclude.iter().any(|r| r.matches(e))
        });
        gleaner_sdk::host::counter_add("dropped", (before - out.len()) as u64);
        Ok(out)
    }
}

gleaner_sdk::export_processor!(Filter);

#[cfg(test)]
mod tests {
    use gleaner_sdk::BatchBuilder;
    use gleaner_sdk::testing::{batch_of_lines, records};

    use super::*;

    #[test]
    fn include_and_exclude_combine() {
        let mut p =
            Filter::init(r#"{"include":[{"regex":"ERROR|WARN"}],"exclude":[{"regex":"healthz"}]}"#)
                .unwrap();
        let out = records(
            &p.process(batch_of_lines(&[
                "INFO a",
                "ERROR b",
                "WARN /healthz",
                "WARN c",
            ]))
            .unwrap(),
        );
        assert_eq!(
            out.iter().map(|r| r.body.as_str()).collect::<Vec<_>>(),
            vec!["ERROR b", "WARN c"]
        );
    }

    #[test]
    fn field_rules_do_not_match_events_without_the_field() {
        let mut b = BatchBuilder::new();
        b.push(0, b"a").field("status", "500");
        b.push(0, b"b").field("status", "200");
        b.push(0, b"c");
        let mut p = Filter::init(r#"{"exclude":[{"field":"status","regex":"^2"}]}"#).unwrap();
        let out = records(&p.process(b.finish()).unwrap());
        assert_eq!(
            out.iter().map(|r| r.body.as_str()).collect::<Vec<_>>(),
            vec!["a", "c"]
        );
    }

    #[test]
    fn config_errors_name_the_rule() {
        let e = Filter::init(r#"{"exclude":[{"regex":"ok"},{"regex":"("}]}"#)
            .err()
            .unwrap();
        assert!(e.starts_with("exclude[1].regex: invalid regex"), "{e}");
        assert!(Filter::init("{}").is_err());
    }
}
