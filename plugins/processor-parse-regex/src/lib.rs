//! `parse-regex`: named capture groups of a regex become fields.
//!
//! Config:
//! - `pattern` (required): a regex with named groups, e.g.
//!   `^(?P<ip>\S+) \S+ \S+ \[(?P<time>[^\]]+)\]`;
//! - `field`: parse this field instead of the body;
//! - `on_no_match`: `keep` (default: the event passes unchanged) or `drop`;
//! - `types`: a type per group, e.g. `{status: int, body_bytes_sent: int}`
//!   (`string`, `int`, `float`, `bool`); a value that does not convert
//!   stays a string and is counted (`unconverted`);
//! - `engine`: `wasm` (default: matched inside the plugin) or `host` (the
//!   body column is matched by the host's regex kernel, one call per batch;
//!   `field` is always matched inside). Both give the same fields and,
//!   measured on nginx lines, the same CPU per GB (docs/benchmarks.md).
//!
//! Counters: `matched`, `unmatched`, `unconverted`.

use std::collections::BTreeMap;

use gleaner_sdk::value::{FieldTypes, STRING};
use gleaner_sdk::{Batch, Key, Processor};
use regex::bytes::Regex;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    pattern: String,
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    on_no_match: OnNoMatch,
    #[serde(default)]
    engine: Engine,
    #[serde(default)]
    types: BTreeMap<String, String>,
}

#[derive(Debug, Default, PartialEq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Engine {
    Host,
    #[default]
    Wasm,
}

#[derive(Debug, Default, PartialEq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum OnNoMatch {
    #[default]
    Keep,
    Drop,
}

/// Where the pattern runs.
enum Matcher {
    /// Compiled by the host: the body column is matched in one call.
    Host(gleaner_sdk::kernels::Regex),
    /// Compiled in the plugin: each subject (body or field) in turn.
    Wasm(Regex),
}

/// One batch's matches: the host's captures, or the plugin's regex.
enum Source<'a> {
    Host(std::iter::Peekable<std::slice::Iter<'a, gleaner_sdk::kernels::Capture>>),
    Wasm(&'a Regex, regex::bytes::CaptureLocations),
}

/// The processor.
pub struct ParseRegex {
    matcher: Matcher,
    /// Each capture group's name, group 0 first (`None`: unnamed).
    names: Vec<Option<String>>,
    /// Each capture group's type.
    types: Vec<u8>,
    field: Option<String>,
    drop_unmatched: bool,
}

impl Processor for ParseRegex {
    fn init(config: &str) -> Result<Self, String> {
        let c: Config = gleaner_sdk::parse_config(config)?;
        let invalid = |e: &dyn std::fmt::Display| format!("pattern: invalid regex: {e}");
        // Bodies go to the host unless asked otherwise; fields stay here.
        let (matcher, names): (Matcher, Vec<Option<String>>) = match (&c.field, c.engine) {
            (None, Engine::Host) => {
                let re = gleaner_sdk::kernels::Regex::new(&c.pattern).map_err(|e| invalid(&e))?;
                let names = re.group_names().into_iter();
                let names = names.map(|n| Some(n).filter(|n| !n.is_empty())).collect();
                (Matcher::Host(re), names)
            }
            _ => {
                let re = Regex::new(&c.pattern).map_err(|e| invalid(&e))?;
                let names = re.capture_names().map(|n| n.map(str::to_owned)).collect();
                (Matcher::Wasm(re), names)
            }
        };
        if names.iter().all(Option::is_none) {
            return Err("pattern: has no named capture group such as (?P<status>\\d+)".into());
        }
        let types = FieldTypes::from_config(&c.types)?;
        types.check_known(
            |f| names.iter().any(|n| n.as_deref() == Some(f)),
            "the pattern has no group of that name",
        )?;
        let types = names
            .iter()
            .map(|n| n.as_deref().map_or(STRING, |n| types.of(n)))
            .collect();
        Ok(ParseRegex {
            matcher,
            names,
            types,
            field: c.field,
            drop_unmatched: c.on_no_match == OnNoMatch::Drop,
        })
    }

    fn process(&mut self, input: Batch) -> Result<Batch, String> {
        let mut out = input.builder();
        let keys: Vec<Option<Key>> = self
            .names
            .iter()
            .map(|n| n.as_ref().map(|n| out.key(n)))
            .collect();
        // The host's answer for the whole batch, or the plugin's matcher.
        let captures = match &self.matcher {
            Matcher::Host(re) => re.captures(&input),
            Matcher::Wasm(_) => Vec::new(),
        };
        let mut source = match &self.matcher {
            Matcher::Host(_) => Source::Host(captures.iter().peekable()),
            Matcher::Wasm(re) => Source::Wasm(re, re.capture_locations()),
        };
        let (bodies, _) = input.body_column();
        let mut groups: Vec<(usize, &[u8])> = Vec::with_capacity(keys.len());
        let (mut matched, mut unmatched, mut unconverted) = (0u64, 0u64, 0u64);
        for event in input.events() {
            groups.clear();
            match &mut source {
                Source::Host(captures) => {
                    let index = event.index() as u32;
                    while let Some(c) = captures.next_if(|c| c.event == index) {
                        let at = c.start as usize;
                        groups.push((c.group as usize, &bodies[at..at + c.len as usize]));
                    }
                }
                Source::Wasm(re, locs) => {
                    let subject = match &self.field {
                        Some(f) => event.field(f).map(str::as_bytes),
                        None => Some(event.body()),
                    };
                    if let Some(s) = subject.filter(|s| re.captures_read(locs, s).is_some()) {
                        let spans =
                            (0..locs.len()).filter_map(|g| locs.get(g).map(|(a, b)| (g, &s[a..b])));
                        groups.extend(spans);
                    }
                }
            }
            // A match always has group 0.
            if groups.is_empty() {
                unmatched += 1;
                if !self.drop_unmatched {
                    out.push_copy(&event);
                }
                continue;
            }
            matched += 1;
            let mut e = out.push_copy(&event);
            for (group, value) in &groups {
                if let Some(Some(key)) = keys.get(*group) {
                    let text = String::from_utf8_lossy(value);
                    match self.types[*group] {
                        STRING => e.field_by_key(*key, &text),
                        ty if e.convert_by_key(*key, ty, &text) => &mut e,
                        _ => {
                            unconverted += 1;
                            &mut e
                        }
                    };
                }
            }
        }
        gleaner_sdk::host::counter_add("matched", matched);
        gleaner_sdk::host::counter_add("unmatched", unmatched);
        gleaner_sdk::host::counter_add("unconverted", unconverted);
        Ok(out.finish())
    }
}

gleaner_sdk::export_processor!(ParseRegex);

#[cfg(test)]
mod tests {
    use gleaner_sdk::testing::{batch_of_lines, counters, records};

    use super::*;

    const NGINX: &str = r#"^(?P<remote_addr>\S+) \S+ (?P<remote_user>\S+) \[(?P<time_local>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) (?P<protocol>[^"]+)" (?P<status>\d{3}) (?P<body_bytes_sent>\d+) "(?P<http_referer>[^"]*)" "(?P<http_user_agent>[^"]*)""#;

    fn init(pattern: &str, extra: &str) -> ParseRegex {
        let cfg = format!(r#"{{"pattern":{}{extra}}}"#, serde_json_string(pattern));
        ParseRegex::init(&cfg).unwrap()
    }

    fn serde_json_string(s: &str) -> String {
        let mut out = Vec::new();
        gleaner_sdk::json::write_string(s.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn nginx_access_line_becomes_eight_fields() {
        let line = r#"192.168.1.7 - alice [21/Nov/2026:17:47:41 +0000] "GET /index.html HTTP/1.1" 200 612 "-" "curl/8.5.0""#;
        let mut p = init(NGINX, "");
        let out = records(&p.process(batch_of_lines(&[line])).unwrap());
        let f = &out[0].fields;
        assert_eq!(f.len(), 10);
        assert_eq!(f["remote_addr"], "192.168.1.7");
        assert_eq!(f["method"], "GET");
        assert_eq!(f["path"], "/index.html");
        assert_eq!(f["status"], "200");
        assert_eq!(f["http_user_agent"], "curl/8.5.0");
        assert_eq!(out[0].body, line);
    }

    #[test]
    fn typed_groups_convert_and_values_that_do_not_stay_strings() {
        let types =
            r#","types":{"status":"int","body_bytes_sent":"int","ratio":"float","cached":"bool"}"#;
        let pattern = r"^(?P<status>\S+) (?P<body_bytes_sent>\S+) (?P<ratio>\S+) (?P<cached>\S+)$";
        let mut p = init(pattern, types);
        let out = p
            .process(batch_of_lines(&["200 612 0.25 yes", "503 - 1e3 0"]))
            .unwrap();
        let got: Vec<Vec<(String, gleaner_sdk::Value)>> = out
            .events()
            .map(|e| e.values().map(|(k, v)| (k.to_owned(), v)).collect())
            .collect();
        use gleaner_sdk::Value::*;
        let row = |v: [gleaner_sdk::Value<'static>; 4]| {
            ["status", "body_bytes_sent", "ratio", "cached"]
                .into_iter()
                .map(str::to_owned)
                .zip(v)
                .collect::<Vec<_>>()
        };
        assert_eq!(got[0], row([Int(200), Int(612), Float(0.25), Bool(true)]));
        assert_eq!(
            got[1],
            row([Int(503), Str("-"), Float(1000.0), Bool(false)])
        );
        assert_eq!(counters().get("unconverted"), Some(&1));
        let bad = ParseRegex::init(&format!(
            r#"{{"pattern":{},"types":{{"status":"integr"}}}}"#,
            serde_json_string(pattern)
        ));
        assert_eq!(
            bad.err().as_deref(),
            Some("types.status: unknown type `integr` (string, int, float or bool)")
        );
        let bad = ParseRegex::init(&format!(
            r#"{{"pattern":{},"types":{{"code":"int"}}}}"#,
            serde_json_string(pattern)
        ));
        assert_eq!(
            bad.err().as_deref(),
            Some("types.code: the pattern has no group of that name")
        );
    }

    #[test]
    fn host_and_wasm_engines_give_the_same_fields() {
        let lines = [
            r#"192.168.1.7 - alice [21/Nov/2026:17:47:41 +0000] "GET /a HTTP/1.1" 200 612 "-" "curl/8.5.0""#,
            "no match",
            r#"10.0.0.1 - - [21/Nov/2026:17:47:42 +0000] "POST /b HTTP/2.0" 503 0 "https://x/" "Mozilla/5.0 (X11)""#,
        ];
        let mut host = init(NGINX, r#","engine":"host""#);
        let mut wasm = init(NGINX, "");
        assert!(matches!(host.matcher, Matcher::Host(_)));
        assert!(matches!(wasm.matcher, Matcher::Wasm(_)));
        let a = records(&host.process(batch_of_lines(&lines)).unwrap());
        let b = records(&wasm.process(batch_of_lines(&lines)).unwrap());
        assert_eq!(a, b);
        assert_eq!(a[2].fields["status"], "503");
        assert!(a[1].fields.is_empty());
    }

    #[test]
    fn unmatched_lines_are_kept_or_dropped_and_counted() {
        let mut keep = init(r"^(?P<n>\d+)$", "");
        let out = records(&keep.process(batch_of_lines(&["12", "x", "7"])).unwrap());
        assert_eq!(out.len(), 3);
        assert!(out[1].fields.is_empty());
        assert_eq!(counters()["unmatched"], 1);
        let mut drop = init(r"^(?P<n>\d+)$", r#","on_no_match":"drop""#);
        let out = records(&drop.process(batch_of_lines(&["12", "x", "7"])).unwrap());
        assert_eq!(
            out.iter()
                .map(|r| r.fields["n"].as_str())
                .collect::<Vec<_>>(),
            vec!["12", "7"]
        );
    }

    #[test]
    fn parses_a_field_instead_of_the_body() {
        let mut b = gleaner_sdk::BatchBuilder::new();
        b.push(0, b"body").field("path", "/api/v2/users");
        let mut p = init(r"^/api/(?P<version>v\d+)/", r#","field":"path""#);
        let out = records(&p.process(b.finish()).unwrap());
        assert_eq!(out[0].fields["version"], "v2");
    }

    #[test]
    fn bad_patterns_are_refused_with_the_key() {
        assert!(
            ParseRegex::init(r#"{"pattern":"("}"#)
                .err()
                .unwrap()
                .starts_with("pattern: invalid regex")
        );
        assert!(
            ParseRegex::init(r#"{"pattern":"\\d+"}"#)
                .err()
                .unwrap()
                .contains("no named capture")
        );
        assert!(
            ParseRegex::init(r#"{}"#)
                .err()
                .unwrap()
                .contains("missing field `pattern`")
        );
    }
}
