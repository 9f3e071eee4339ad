//! `mask`: redacts sensitive text with regexes, in the body and in fields.
//!
//! Config:
//! - `presets`: any of `card` (payment card numbers of 13–19 digits,
//!   optionally grouped by spaces or dashes, that pass the Luhn check; all
//!   digits but the last four become `*`) and `email` (the local part
//!   becomes `***`);
//! - `rules`: custom `{ regex: RE, replace: TEXT }` (`$1`/`${name}`
//!   refer to groups);
//! - `fields`: also mask these fields (the body is always masked).
//!
//! Counters: `masked` (number of replacements).

use std::borrow::Cow;

use gleaner_sdk::{Batch, Processor};
use regex::{Captures, Regex};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    regex: String,
    replace: String,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    presets: Vec<Preset>,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    fields: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Preset {
    Card,
    Email,
}

enum Rule {
    Card(Regex),
    Replace(Regex, String),
}

/// The processor.
pub struct Mask {
    rules: Vec<Rule>,
    fields: Vec<String>,
}

/// True if `digits` passes the Luhn checksum.
fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

fn mask_card(m: &str) -> Option<String> {
    let digits: Vec<u8> = m.bytes().filter(u8::is_ascii_digit).collect();
    if !(13..=19).contains(&digits.len()) || !luhn(&digits) {
        return None;
    }
    let keep_from = digits.len() - 4;
    let mut seen = 0;
    Some(
        m.chars()
            .map(|c| {
                if c.is_ascii_digit() {
                    seen += 1;
                    if seen > keep_from { c } else { '*' }
                } else {
                    c
                }
            })
            .collect(),
    )
}

/// The rule of a preset.
fn preset_rule(preset: Preset) -> Result<Rule, String> {
    Ok(match preset {
        Preset::Card => {
            Rule::Card(Regex::new(r"\b\d(?:[ -]?\d){12,18}\b").map_err(|e| e.to_string())?)
        }
        Preset::Email => Rule::Replace(
            Regex::new(r"[A-Za-z0-9._%+-]+@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})")
                .map_err(|e| e.to_string())?,
            "***@$1".into(),
        ),
    })
}

impl Mask {
    /// Masks `text`; returns the new text and the number of replacements.
    fn apply<'t>(&self, text: &'t str) -> (Cow<'t, str>, u64) {
        let mut out = Cow::Borrowed(text);
        let mut count = 0;
        for rule in &self.rules {
            let replaced = match rule {
                Rule::Card(re) => re.replace_all(&out, |c: &Captures<'_>| match mask_card(&c[0]) {
                    Some(m) => {
                        count += 1;
                        m
                    }
                    None => c[0].to_owned(),
                }),
                Rule::Replace(re, with) => {
                    count += re.find_iter(&out).count() as u64;
                    re.replace_all(&out, with.as_str())
                }
            };
            if let Cow::Owned(s) = replaced {
                out = Cow::Owned(s);
            }
        }
        (out, count)
    }
}

impl Processor for Mask {
    fn init(config: &str) -> Result<Self, String> {
        let c: Config = gleaner_sdk::parse_config(config)?;
        let mut rules = Vec::new();
        for p in &c.presets {
            rules.push(preset_rule(*p)?);
        }
        for (i, r) in c.rules.into_iter().enumerate() {
            let re = Regex::new(&r.regex)
                .map_err(|e| format!("rules[{i}].regex: invalid regex: {e}"))?;
            rules.push(Rule::Replace(re, r.replace));
        }
        if rules.is_empty() {
            return Err("presets, rules: give at least one preset or rule".into());
        }
        Ok(Mask {
            rules,
            fields: c.fields,
        })
    }

    fn process(&mut self, input: Batch) -> Result<Batch, String> {
        let mut out = input.builder();
        let mut masked = 0;
        for event in input.events() {
            let body = event.body_str();
            let (new_body, n) = self.apply(&body);
            masked += n;
            let mut e = out.push_copy(&event);
            if n > 0 {
                e.set_body(new_body.as_bytes());
            }
            for (k, v) in event.fields() {
                if self.fields.iter().any(|f| f == k) {
                    let (nv, n) = self.apply(v);
                    if n > 0 {
                        // A masked value is text, whatever it was.
                        masked += n;
                        e.field(k, &nv);
                    }
                }
            }
        }
        gleaner_sdk::host::counter_add("masked", masked);
        Ok(out.finish())
    }
}

gleaner_sdk::export_processor!(Mask);

#[cfg(test)]
mod tests {
    use gleaner_sdk::BatchBuilder;
    use gleaner_sdk::testing::{batch_of_lines, records};

    use super::*;

    #[test]
    fn card_numbers_that_pass_luhn_keep_only_their_last_four_digits() {
        let mut p = Mask::init(r#"{"presets":["card"]}"#).unwrap();
        let lines = [
            "paid with 4111 1111 1111 1111 ok",
            "card 5500-0000-0000-0004",
            "order 1234567890123 not a card",
        ];
        let out = records(&p.process(batch_of_lines(&lines)).unwrap());
        assert_eq!(out[0].body, "paid with **** **** **** 1111 ok");
        assert_eq!(out[1].body, "card ****-****-****-0004");
        assert_eq!(out[2].body, "order 1234567890123 not a card");
    }

    #[test]
    fn emails_lose_their_local_part_in_body_and_chosen_fields() {
        let mut b = BatchBuilder::new();
        b.push(0, b"from alice.smith@example.com to bob@mail.example.org")
            .field("user", "carol@x.io")
            .field("other", "dan@x.io");
        let mut p = Mask::init(r#"{"presets":["email"],"fields":["user"]}"#).unwrap();
        let out = records(&p.process(b.finish()).unwrap());
        assert_eq!(out[0].body, "from ***@example.com to ***@mail.example.org");
        assert_eq!(out[0].fields["user"], "***@x.io");
        assert_eq!(out[0].fields["other"], "dan@x.io");
    }

    #[test]
    fn custom_rules_use_capture_groups() {
        let mut p =
            Mask::init(r#"{"rules":[{"regex":"token=(\\w{4})\\w+","replace":"token=$1…"}]}"#)
                .unwrap();
        let out = records(
            &p.process(batch_of_lines(&["GET /?token=abcdef123456"]))
                .unwrap(),
        );
        assert_eq!(out[0].body, "GET /?token=abcd…");
    }

    #[test]
    fn luhn_checksum() {
        assert!(luhn(b"4111111111111111"));
        assert!(!luhn(b"4111111111111112"));
    }
}
