//! `parse-time`: sets each event's time from one of its fields.
//!
//! Config:
//! - `field` (required): the field holding the time;
//! - `format` (default `rfc3339`): `rfc3339`; `rfc3164` (syslog's
//!   `Nov  9 17:22:01`, the year chosen as the one that puts the time
//!   nearest to now, so December lines read in January get last year);
//!   `unix` (seconds, fraction allowed), `unix_ms`, `unix_us`, `unix_ns`;
//!   or a strftime pattern (nginx: `%d/%b/%Y:%H:%M:%S %z`);
//! - `timezone` (default `UTC`): an IANA name (`Europe/Berlin`) or a fixed
//!   offset (`+05:30`), for formats without an offset;
//! - `remove` (default false): drop the field once its time is taken.
//!
//! A value that does not parse (or a missing field) leaves the event as it
//! is, with the time it was read at, and is counted: `invalid`, `missing`.

use gleaner_sdk::{Batch, Processor};
use jiff::fmt::strtime::BrokenDownTime;
use jiff::tz::{Offset, TimeZone};
use jiff::{Timestamp, civil::DateTime};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    field: String,
    #[serde(default = "default_format")]
    format: String,
    #[serde(default = "default_timezone")]
    timezone: String,
    #[serde(default)]
    remove: bool,
}

fn default_format() -> String {
    "rfc3339".into()
}
fn default_timezone() -> String {
    "UTC".into()
}

#[derive(Debug, Clone, PartialEq)]
enum Format {
    Rfc3339,
    Rfc3164,
    Unix(u32),
    Pattern(String),
}

/// The processor.
pub struct ParseTime {
    field: String,
    format: Format,
    tz: TimeZone,
    remove: bool,
}

fn time_zone(name: &str) -> Result<TimeZone, String> {
    if name.eq_ignore_ascii_case("utc") || name == "Z" {
        return Ok(TimeZone::UTC);
    }
    if let Some(rest) = name.strip_prefix(['+', '-']) {
        let sign = if name.starts_with('-') { -1 } else { 1 };
        let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
        let (h, m): (i32, i32) = match (h.parse(), m.parse()) {
            (Ok(h), Ok(m)) if h <= 25 && m < 60 => (h, m),
            _ => return Err(format!("timezone: `{name}` is not an offset like +05:30")),
        };
        let offset = Offset::from_seconds(sign * (h * 3600 + m * 60))
            .map_err(|e| format!("timezone: `{name}`: {e}"))?;
        return Ok(TimeZone::fixed(offset));
    }
    TimeZone::get(name).map_err(|e| format!("timezone: `{name}`: {e}"))
}

impl ParseTime {
    /// The time in `value`, in ns since the epoch; `now` for rfc3164's year.
    fn parse(&self, value: &str, now: Timestamp) -> Option<i64> {
        let value = value.trim();
        let ts = match &self.format {
            Format::Rfc3339 => value.parse::<Timestamp>().ok()?,
            Format::Unix(digits) => {
                let ns = if *digits == 0 {
                    // Seconds with an optional fraction, read exactly.
                    let (whole, frac) = value.split_once('.').unwrap_or((value, ""));
                    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    let secs = i128::from(whole.parse::<i64>().ok()?);
                    let frac = format!("{frac:0<9}").parse::<i128>().ok()?;
                    secs * 1_000_000_000
                        + if secs < 0 || whole.starts_with('-') {
                            -frac
                        } else {
                            frac
                        }
                } else {
                    i128::from(value.parse::<i64>().ok()?) * 10i128.pow(9 - digits)
                };
                Timestamp::from_nanosecond(ns).ok()?
            }
            Format::Rfc3164 => {
                // `Nov  9 17:22:01`: no year; the nearest to now of last
                // year, this year and next year.
                let collapsed: String = value.split_whitespace().collect::<Vec<_>>().join(" ");
                let mut tm = BrokenDownTime::parse("%b %d %H:%M:%S", &collapsed).ok()?;
                let year = now.to_zoned(self.tz.clone()).year();
                let mut best: Option<Timestamp> = None;
                for y in [year - 1, year, year + 1] {
                    tm.set_year(Some(y)).ok()?;
                    let Ok(dt) = tm.to_datetime() else { continue };
                    let Ok(t) = self.tz.to_ambiguous_timestamp(dt).compatible() else {
                        continue;
                    };
                    let dist = |t: Timestamp| (t.as_second() - now.as_second()).abs();
                    if best.is_none_or(|b| dist(t) < dist(b)) {
                        best = Some(t);
                    }
                }
                best?
            }
            Format::Pattern(p) => {
                let tm = BrokenDownTime::parse(p, value).ok()?;
                match tm.offset() {
                    Some(_) => tm.to_timestamp().ok()?,
                    None => {
                        let dt: DateTime = tm.to_datetime().ok()?;
                        self.tz.to_ambiguous_timestamp(dt).compatible().ok()?
                    }
                }
            }
        };
        i64::try_from(ts.as_nanosecond()).ok()
    }
}

impl Processor for ParseTime {
    fn init(config: &str) -> Result<Self, String> {
        let c: Config = gleaner_sdk::parse_config(config)?;
        let format = match c.format.as_str() {
            "rfc3339" => Format::Rfc3339,
            "rfc3164" => Format::Rfc3164,
            "unix" => Format::Unix(0),
            "unix_ms" => Format::Unix(3),
            "unix_us" => Format::Unix(6),
            "unix_ns" => Format::Unix(9),
            p if p.contains('%') => Format::Pattern(p.to_owned()),
            other => {
                return Err(format!(
                    "format: `{other}` is none of rfc3339, rfc3164, unix, unix_ms, unix_us, unix_ns, nor a strftime pattern (with %)"
                ));
            }
        };
        Ok(ParseTime {
            field: c.field,
            format,
            tz: time_zone(&c.timezone)?,
            remove: c.remove,
        })
    }

    fn process(&mut self, input: Batch) -> Result<Batch, String> {
        let mut out = input.builder();
        let now = Timestamp::now();
        let (mut invalid, mut missing) = (0u64, 0u64);
        for event in input.events() {
            let value = event.field(&self.field);
            let parsed = match value {
                Some(v) => {
                    let t = self.parse(v, now);
                    invalid += u64::from(t.is_none());
                    t
                }
                None => {
                    missing += 1;
                    None
                }
            };
            let mut e = out.push_copy(&event);
            if let Some(t) = parsed {
                e.set_timestamp(t);
                if self.remove {
                    e.remove(&self.field);
                }
            }
        }
        gleaner_sdk::host::counter_add("invalid", invalid);
        gleaner_sdk::host::counter_add("missing", missing);
        Ok(out.finish())
    }
}

gleaner_sdk::export_processor!(ParseTime);

#[cfg(test)]
mod tests {
    use super::*;

    fn at(format: &str, tz: &str, value: &str) -> Option<i64> {
        let p = ParseTime::init(&format!(
            r#"{{"field":"t","format":{format:?},"timezone":{tz:?}}}"#
        ))
        .unwrap();
        // 2026-01-02T00:00:00Z
        p.parse(value, Timestamp::from_second(1_767_312_000).unwrap())
    }

    const S: i64 = 1_000_000_000;

    #[test]
    fn every_format_parses() {
        let nginx = "%d/%b/%Y:%H:%M:%S %z";
        assert_eq!(
            at(nginx, "UTC", "21/Nov/2024:17:01:02 +0100"),
            Some(1_732_204_862 * S)
        );
        assert_eq!(
            at("rfc3339", "UTC", "2024-11-21T16:01:02.5Z"),
            Some(1_732_204_862 * S + S / 2)
        );
        assert_eq!(
            at("unix", "UTC", "1732204862.25"),
            Some(1_732_204_862 * S + S / 4)
        );
        assert_eq!(
            at("unix_ms", "UTC", "1732204862123"),
            Some(1_732_204_862_123_000_000)
        );
        assert_eq!(
            at("unix_us", "UTC", "1732204862123456"),
            Some(1_732_204_862_123_456_000)
        );
        assert_eq!(
            at("unix_ns", "UTC", "1732204862123456789"),
            Some(1_732_204_862_123_456_789)
        );
        // No offset in the value: the configured zone (CET in November).
        assert_eq!(
            at("%Y-%m-%d %H:%M:%S", "Europe/Berlin", "2024-11-21 17:01:02"),
            Some(1_732_204_862 * S)
        );
        assert_eq!(
            at("%Y-%m-%d %H:%M:%S", "+01:00", "2024-11-21 17:01:02"),
            Some(1_732_204_862 * S)
        );
    }

    #[test]
    fn syslog_years_are_the_nearest_to_now() {
        // Now is 2 Jan 2026: a December line is from 2025, a January one 2026.
        assert_eq!(
            at("rfc3164", "UTC", "Dec 31 23:59:59"),
            Some((1_767_312_000 - 86_401) * S)
        );
        assert_eq!(
            at("rfc3164", "UTC", "Jan  1 00:00:00"),
            Some((1_767_312_000 - 86_400) * S)
        );
    }

    #[test]
    fn bad_values_and_configs() {
        assert_eq!(at("rfc3339", "UTC", "yesterday"), None);
        assert_eq!(at("unix_ms", "UTC", "12.5"), None);
        assert_eq!(at("%d/%b/%Y", "UTC", "31/Foo/2024"), None);
        assert!(ParseTime::init(r#"{"field":"t","format":"iso"}"#).is_err());
        assert!(ParseTime::init(r#"{"field":"t","timezone":"Mars/Olympus"}"#).is_err());
    }
}
