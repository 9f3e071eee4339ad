//! `parse-regex`: named capture groups of a regex become fields.
//!
//! Config:
//! - `pattern` (required): a regex with named groups, e.g.
//!   `^(?P<ip>\S+) \S+ \S+ \[(?P<time>[^\]]+)\]`;
//! - `field`: parse this field instead of the body;
//! - `on_no_match`: `keep` (default: the event passes unchanged) or `drop`;
//! - `engine`: `host` (default: the body column is matched natively by the
//!   host's regex kernel, one call per batch) or `wasm` (matched inside the
//!   plugin; `field` always is). Both give the same fields.
//!
//! Counters: `matched`, `unmatched`.

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
}

#[derive(Debug, Default, PartialEq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Engine {
    #[default]
    Host,
    Wasm,
}

#[derive(Debug, Default, PartialEq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum OnNoMatch {
    #[default]
    Keep,
    Drop,
}

/// The processor.
pub struct ParseRegex {
    re: Regex,
    names: Vec<(usize, String)>,
    field: Option<String>,
    drop_unmatched: bool,
    /// The same pattern compiled by the host, for bodies (`engine: host`).
    kernel: Option<gleaner_sdk::kernels::Regex>,
}

impl Processor for ParseRegex {
    fn init(config: &str) -> Result<Self, String> {
        let c: Config = gleaner_sdk::parse_config(config)?;
        let re = Regex::new(&c.pattern).map_err(|e| format!("pattern: invalid regex: {e}"))?;
        let names: Vec<(usize, String)> = re
            .capture_names()
            .enumerate()
            .filter_map(|(i, n)| n.map(|n| (i, n.to_owned())))
            .collect();
        if names.is_empty() {
            return Err("pattern: has no named capture group such as (?P<status>\\d+)".into());
        }
        let kernel = match (&c.field, c.engine) {
            (None, Engine::Host) => Some(
                gleaner_sdk::kernels::Regex::new(&c.pattern)
                    .map_err(|e| format!("pattern: invalid regex: {e}"))?,
            ),
            _ => None,
        };
        Ok(ParseRegex {
            re,
            names,
            field: c.field,
            drop_unmatched: c.on_no_match == OnNoMatch::Drop,
            kernel,
        })
    }

    fn process(&mut self, input: Batch) -> Result<Batch, String> {
        if let Some(kernel) = &self.kernel {
            return Ok(self.process_in_host(kernel, &input));
        }
        let mut out = input.builder();
        let keys: Vec<(usize, Key)> = self.names.iter().map(|(i, n)| (*i, out.key(n))).collect();
        let mut locs = self.re.capture_locations();
        let (mut matched, mut unmatched) = (0u64, 0u64);
        for event in input.events() {
            let subject = match &self.field {
                Some(f) => event.field(f).map(str::as_bytes),
                None => Some(event.body()),
            };
            let hit = subject.and_then(|s| self.re.captures_read(&mut locs, s).map(|_| s));
            match hit {
                Some(s) => {
                    matched += 1;
                    let mut e = out.push_copy(&event);
                    for (group, key) in &keys {
                        if let Some((a, b)) = locs.get(*group) {
                            e.field_by_key(*key, &String::from_utf8_lossy(&s[a..b]));
                        }
                    }
                }
                None => {
                    unmatched += 1;
                    if !self.drop_unmatched {
                        out.push_copy(&event);
                    }
                }
            }
        }
        gleaner_sdk::host::counter_add("matched", matched);
        gleaner_sdk::host::counter_add("unmatched", unmatched);
        Ok(out.finish())
    }
}

impl ParseRegex {
    /// Bodies matched by the host in one call; the plugin only builds the
    /// output from the capture spans.
    fn process_in_host(&self, kernel: &gleaner_sdk::kernels::Regex, input: &Batch) -> Batch {
        let mut out = input.builder();
        let mut group_keys = vec![None; self.re.captures_len()];
        for (i, n) in &self.names {
            group_keys[*i] = Some(out.key(n));
        }
        let captures = kernel.captures(input);
        let (bodies, _) = input.body_column();
        let mut next = captures.iter().peekable();
        let (mut matched, mut unmatched) = (0u64, 0u64);
        for event in input.events() {
            let index = event.index() as u32;
            if next.peek().is_none_or(|c| c.event != index) {
                unmatched += 1;
                if !self.drop_unmatched {
                    out.push_copy(&event);
                }
                continue;
            }
            matched += 1;
            let mut e = out.push_copy(&event);
            while let Some(c) = next.next_if(|c| c.event == index) {
                if let Some(Some(key)) = group_keys.get(c.group as usize) {
                    let value = &bodies[c.start as usize..(c.start + c.len) as usize];
                    e.field_by_key(*key, &String::from_utf8_lossy(value));
                }
            }
        }
        gleaner_sdk::host::counter_add("matched", matched);
        gleaner_sdk::host::counter_add("unmatched", unmatched);
        out.finish()
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
    fn host_and_wasm_engines_give_the_same_fields() {
        let lines = [
            r#"192.168.1.7 - alice [21/Nov/2026:17:47:41 +0000] "GET /a HTTP/1.1" 200 612 "-" "curl/8.5.0""#,
            "no match",
            r#"10.0.0.1 - - [21/Nov/2026:17:47:42 +0000] "POST /b HTTP/2.0" 503 0 "https://x/" "Mozilla/5.0 (X11)""#,
        ];
        let mut host = init(NGINX, "");
        let mut wasm = init(NGINX, r#","engine":"wasm""#);
        assert!(host.kernel.is_some() && wasm.kernel.is_none());
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
