//! `parse-delimiter`: delimited bodies (CSV, TSV, `|`-separated) become
//! fields named by position.
//!
//! Config:
//! - `fields` (required): the names of the columns, in order;
//! - `delimiter`: the separator (default `,`; any non-empty string);
//! - `quote`: a quote character that may wrap a value containing the
//!   delimiter, doubled inside to escape it (default `"`; `""` disables);
//! - `trim`: strip spaces around values (default false);
//! - `types`: a type per column, e.g. `{status: int, ratio: float}`
//!   (`string`, `int`, `float`, `bool`); a value that does not convert
//!   stays a string and is counted (`unconverted`).
//!
//! Missing trailing columns are absent; extra columns are ignored and
//! counted as `extra_columns`.

use std::collections::BTreeMap;

use gleaner_sdk::value::{FieldTypes, STRING};
use gleaner_sdk::{Batch, Processor};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    fields: Vec<String>,
    #[serde(default = "default_delimiter")]
    delimiter: String,
    #[serde(default = "default_quote")]
    quote: String,
    #[serde(default)]
    trim: bool,
    #[serde(default)]
    types: BTreeMap<String, String>,
}

fn default_delimiter() -> String {
    ",".into()
}
fn default_quote() -> String {
    "\"".into()
}

/// The processor.
pub struct ParseDelimiter {
    config: Config,
    quote: Option<char>,
    /// Each column's type.
    types: Vec<u8>,
}

/// Splits `line` into values.
fn split(line: &str, delim: &str, quote: Option<char>) -> Vec<String> {
    let mut values = Vec::new();
    let mut rest = line;
    loop {
        if let Some(q) = quote.filter(|q| rest.starts_with(*q)) {
            // Quoted value: up to the closing quote; doubled quotes escape.
            let mut value = String::new();
            let mut chars = rest[q.len_utf8()..].char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c == q {
                    let after = &rest[q.len_utf8() + i + c.len_utf8()..];
                    if after.starts_with(q) {
                        value.push(q);
                        chars.next();
                    } else {
                        end = Some(after);
                        break;
                    }
                } else {
                    value.push(c);
                }
            }
            match end {
                Some(after) => {
                    values.push(value);
                    match after.strip_prefix(delim) {
                        Some(next) => rest = next,
                        None => return values,
                    }
                }
                None => {
                    // Unterminated quote: take the rest as it is.
                    values.push(rest.to_owned());
                    return values;
                }
            }
        } else {
            match rest.find(delim) {
                Some(i) => {
                    values.push(rest[..i].to_owned());
                    rest = &rest[i + delim.len()..];
                }
                None => {
                    values.push(rest.to_owned());
                    return values;
                }
            }
        }
    }
}

impl Processor for ParseDelimiter {
    fn init(config: &str) -> Result<Self, String> {
        let c: Config = gleaner_sdk::parse_config(config)?;
        if c.fields.is_empty() {
            return Err("fields: name at least one column".into());
        }
        if c.delimiter.is_empty() {
            return Err("delimiter: must not be empty".into());
        }
        let mut q = c.quote.chars();
        let quote = match (q.next(), q.next()) {
            (None, _) => None,
            (Some(ch), None) => Some(ch),
            _ => return Err("quote: must be one character or empty".into()),
        };
        let types = FieldTypes::from_config(&c.types)?;
        types.check_known(|f| c.fields.iter().any(|n| n == f), "not one of `fields`")?;
        let types = c.fields.iter().map(|f| types.of(f)).collect();
        Ok(ParseDelimiter {
            config: c,
            quote,
            types,
        })
    }

    fn process(&mut self, input: Batch) -> Result<Batch, String> {
        let mut out = input.builder();
        let keys: Vec<_> = self.config.fields.iter().map(|f| out.key(f)).collect();
        let (mut extra, mut unconverted) = (0u64, 0u64);
        for event in input.events() {
            let body = event.body_str();
            let values = split(&body, &self.config.delimiter, self.quote);
            if values.len() > keys.len() {
                extra += 1;
            }
            let mut e = out.push_copy(&event);
            for ((key, value), &ty) in keys.iter().zip(&values).zip(&self.types) {
                let v = if self.config.trim {
                    value.trim()
                } else {
                    value.as_str()
                };
                if ty == STRING {
                    e.field_by_key(*key, v);
                } else if !e.convert_by_key(*key, ty, v) {
                    unconverted += 1;
                }
            }
        }
        gleaner_sdk::host::counter_add("extra_columns", extra);
        gleaner_sdk::host::counter_add("unconverted", unconverted);
        Ok(out.finish())
    }
}

gleaner_sdk::export_processor!(ParseDelimiter);

#[cfg(test)]
mod tests {
    use gleaner_sdk::testing::{batch_of_lines, records};

    use super::*;

    #[test]
    fn quoted_values_may_hold_the_delimiter_and_escaped_quotes() {
        assert_eq!(
            split(r#"a,"b,c","say ""hi""",d"#, ",", Some('"')),
            vec!["a", "b,c", r#"say "hi""#, "d"]
        );
        assert_eq!(split("a||b||", "||", None), vec!["a", "b", ""]);
        assert_eq!(split(r#""open,x"#, ",", Some('"')), vec![r#""open,x"#]);
    }

    #[test]
    fn columns_become_named_fields() {
        let mut p =
            ParseDelimiter::init(r#"{"fields":["ts","level","msg"],"delimiter":"|","trim":true}"#)
                .unwrap();
        let out = records(
            &p.process(batch_of_lines(&["2026 | INFO | started", "2026|WARN"]))
                .unwrap(),
        );
        assert_eq!(out[0].fields["level"], "INFO");
        assert_eq!(out[0].fields["msg"], "started");
        assert_eq!(out[1].fields.len(), 2);
    }

    #[test]
    fn typed_columns_convert_and_values_that_do_not_stay_strings() {
        let mut p = ParseDelimiter::init(
            r#"{"fields":["code","bytes","ok"],"types":{"code":"int","ok":"bool"}}"#,
        )
        .unwrap();
        let out = p
            .process(batch_of_lines(&["200,12,true", "x,3,no"]))
            .unwrap();
        use gleaner_sdk::Value::*;
        let e = out.event(0);
        assert_eq!(
            (e.value("code"), e.value("bytes"), e.value("ok")),
            (Some(Int(200)), Some(Str("12")), Some(Bool(true)))
        );
        let e = out.event(1);
        assert_eq!(
            (e.value("code"), e.value("ok")),
            (Some(Str("x")), Some(Bool(false)))
        );
        assert_eq!(
            gleaner_sdk::testing::counters().get("unconverted"),
            Some(&1)
        );
        assert_eq!(
            ParseDelimiter::init(r#"{"fields":["a"],"types":{"b":"int"}}"#)
                .err()
                .as_deref(),
            Some("types.b: not one of `fields`")
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        assert!(
            ParseDelimiter::init(r#"{"fields":[]}"#)
                .err()
                .unwrap()
                .starts_with("fields:")
        );
        assert!(
            ParseDelimiter::init(r#"{"fields":["a"],"quote":"ab"}"#)
                .err()
                .unwrap()
                .starts_with("quote:")
        );
    }
}
