//! The masking processor (`examples/mask/README.md`) with the Rust SDK:
//! emails and card numbers are replaced, and a `redactions` field is
//! added. The same algorithm as the C and Python versions, byte for byte.

use gleaner_sdk::kernels::Regex;
use gleaner_sdk::{Batch, Processor};

/// Config: the replacement texts.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_email")]
    email: String,
    #[serde(default = "default_card")]
    card: String,
}

fn default_email() -> String {
    "[email]".into()
}

fn default_card() -> String {
    "[card]".into()
}

/// The processor.
pub struct Mask {
    config: Config,
    /// Every email has a local-part character right before its `@`, and
    /// every card number 13 digits in a row with at most one space or `-`
    /// between two: a body with neither cannot change. The host finds the
    /// bodies that might, natively, in one call per batch.
    candidates: Regex,
}

/// The candidate pattern (see [`Mask::candidates`]); the C and Python
/// versions use the same.
const CANDIDATES: &str = "[A-Za-z0-9._%+-]@|[0-9](?:[ -]?[0-9]){12}";

fn is_local(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-')
}

/// (start, end) of the email whose `@` is at `at`.
fn email_at(s: &[u8], at: usize) -> Option<(usize, usize)> {
    let start = s[..at]
        .iter()
        .rposition(|&c| !is_local(c))
        .map_or(0, |p| p + 1);
    if start == at {
        return None;
    }
    let mut end = at + 1 + s[at + 1..].iter().take_while(|&&c| is_domain(c)).count();
    while end > at + 1 && matches!(s[end - 1], b'.' | b'-') {
        end -= 1;
    }
    let dot = (at + 2..end).rev().find(|&i| s[i] == b'.')?;
    let tld = &s[dot + 1..end];
    (tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic)).then_some((start, end))
}

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(k, &d)| {
            let d = u32::from(d);
            if k % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

impl Mask {
    /// Pass 1, emails: `s` masked into `out`; the number replaced (0:
    /// `out` is left alone and `s` is the result).
    fn mask_emails(&self, s: &[u8], out: &mut Vec<u8>) -> usize {
        let mut count = 0;
        let (mut from, mut i) = (0, 0);
        while let Some(p) = memchr::memchr(b'@', &s[i..]) {
            let at = i + p;
            match email_at(s, at) {
                Some((start, end)) if start >= from => {
                    if count == 0 {
                        out.clear();
                    }
                    out.extend_from_slice(&s[from..start]);
                    out.extend_from_slice(self.config.email.as_bytes());
                    from = end;
                    i = end;
                    count += 1;
                }
                _ => i = at + 1,
            }
        }
        if count > 0 {
            out.extend_from_slice(&s[from..]);
        }
        count
    }

    /// Pass 2, card numbers: as pass 1.
    fn mask_cards(&self, s: &[u8], out: &mut Vec<u8>) -> usize {
        let mut count = 0;
        let (mut from, mut i) = (0, 0);
        let mut digits = [0u8; 19];
        while let Some(p) = s[i..].iter().position(u8::is_ascii_digit) {
            i += p;
            if i > 0 && s[i - 1].is_ascii_alphanumeric() {
                // Inside a word: skip the rest of its digits.
                i += s[i..].iter().take_while(|c| c.is_ascii_digit()).count();
                continue;
            }
            let mut n = 0;
            let mut j = i;
            let end = loop {
                while j < s.len() && s[j].is_ascii_digit() {
                    if n < digits.len() {
                        digits[n] = s[j] - b'0';
                    }
                    n += 1;
                    j += 1;
                }
                if j + 1 < s.len() && matches!(s[j], b' ' | b'-') && s[j + 1].is_ascii_digit() {
                    j += 1;
                    continue;
                }
                break j;
            };
            let bounded = end == s.len() || !s[end].is_ascii_alphanumeric();
            if bounded && (13..=19).contains(&n) && luhn(&digits[..n]) {
                if count == 0 {
                    out.clear();
                }
                out.extend_from_slice(&s[from..i]);
                out.extend_from_slice(self.config.card.as_bytes());
                from = end;
                count += 1;
            }
            i = end;
        }
        if count > 0 {
            out.extend_from_slice(&s[from..]);
        }
        count
    }
}

/// Small counts as text without allocating.
const COUNTS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

impl Processor for Mask {
    fn init(config: &str) -> Result<Self, String> {
        Ok(Mask {
            config: gleaner_sdk::parse_config(config)?,
            candidates: Regex::new(CANDIDATES)?,
        })
    }

    fn process(&mut self, input: Batch) -> Result<Batch, String> {
        let mut out = input.builder();
        let redactions = out.key("redactions");
        let (mut emails, mut cards) = (Vec::new(), Vec::new());
        let maybe = self.candidates.matching(&input);
        let mut maybe = maybe.iter().peekable();
        for event in input.events() {
            if maybe.next_if(|&&i| i as usize == event.index()).is_none() {
                // Nothing to mask: the event passes as it is.
                out.push_copy(&event).field_by_key(redactions, "0");
                continue;
            }
            let mut body = event.body();
            let e = self.mask_emails(body, &mut emails);
            if e > 0 {
                body = &emails;
            }
            let c = self.mask_cards(body, &mut cards);
            if c > 0 {
                body = &cards;
            }
            let n = e + c;
            let mut ev = out.push_copy(&event);
            ev.set_body(body);
            match COUNTS.get(n) {
                Some(text) => ev.field_by_key(redactions, text),
                None => ev.field_by_key(redactions, &n.to_string()),
            };
        }
        Ok(out.finish())
    }
}

gleaner_sdk::export_processor!(Mask);

#[cfg(test)]
mod tests {
    use gleaner_sdk::testing::{batch_of_lines, records};

    use super::*;

    /// The sample every version is checked against, and what it becomes.
    #[test]
    fn masks_the_sample_as_documented() {
        let sample = include_str!("../../sample.log");
        let expected = include_str!("../../expected.txt");
        let lines: Vec<&str> = sample.lines().collect();
        let mut p = Mask::init("{}").unwrap();
        let out = p.process(batch_of_lines(&lines)).unwrap();
        let got: Vec<String> = records(&out)
            .iter()
            .map(|r| format!("{} | redactions={}", r.body, r.fields["redactions"]))
            .collect();
        assert_eq!(got.join("\n") + "\n", expected);
    }

    #[test]
    fn replacement_texts_come_from_the_config() {
        let mut p = Mask::init(r#"{"email":"E","card":"C"}"#).unwrap();
        let out = p
            .process(batch_of_lines(&["x@y.io 4111111111111111"]))
            .unwrap();
        assert_eq!(records(&out)[0].body, "E C");
        assert!(Mask::init(r#"{"email":1}"#).is_err());
    }
}
