//! Time for flushers: the event time written as RFC 3339 or in the forms
//! destinations take (Unix seconds, ClickHouse's `YYYY-MM-DD hh:mm:ss`),
//! and name templates (`logs-{k8s.namespace.name}-%Y.%m.%d`, S3 keys,
//! topics) rendered per event. Pure functions; no clock is read here.

use crate::batch::{Batch, Event};

/// Writes `nanos` since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
pub fn write_rfc3339(nanos: i64, out: &mut Vec<u8>) {
    out.extend_from_slice(&rfc3339(nanos));
}

/// `nanos` since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`
/// (years 0 to 9999; others are clamped).
pub(crate) fn rfc3339(nanos: i64) -> [u8; 30] {
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000) as u64;
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400) as u64;
    let (y, m, d) = civil_from_days(days);
    let mut t = *b"0000-00-00T00:00:00.000000000Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            t[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y.clamp(0, 9999) as u64);
    put(5, 2, u64::from(m));
    put(8, 2, u64::from(d));
    put(11, 2, tod / 3600);
    put(14, 2, (tod % 3600) / 60);
    put(17, 2, tod % 60);
    put(20, 9, frac);
    t
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// How a destination wants an event's time.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// `"2024-11-21T16:01:02.500000000Z"`.
    #[default]
    Rfc3339,
    /// Whole seconds since the epoch, a JSON number.
    Unix,
    /// Milliseconds since the epoch, a JSON number.
    UnixMs,
    /// Nanoseconds since the epoch, a JSON number.
    UnixNs,
    /// Seconds with a fraction, `1732204862.500000000` (Splunk HEC).
    UnixFraction,
    /// `"2024-11-21 16:01:02"` (ClickHouse `DateTime`).
    Datetime,
    /// `"2024-11-21 16:01:02.500"` (ClickHouse `DateTime64(3)`).
    DatetimeMs,
    /// `"2024-11-21 16:01:02.500000000"` (ClickHouse `DateTime64(9)`).
    DatetimeNs,
}

impl TimeFormat {
    /// Writes `nanos` as a JSON value in this format.
    pub fn write_json(self, nanos: i64, out: &mut Vec<u8>) {
        let text = rfc3339(nanos);
        let datetime = |end: usize, out: &mut Vec<u8>| {
            out.push(b'"');
            out.extend_from_slice(&text[..10]);
            out.push(b' ');
            out.extend_from_slice(&text[11..end]);
            out.push(b'"');
        };
        match self {
            TimeFormat::Rfc3339 => {
                out.push(b'"');
                out.extend_from_slice(&text);
                out.push(b'"');
            }
            TimeFormat::Unix => write_int(nanos.div_euclid(1_000_000_000), out),
            TimeFormat::UnixMs => write_int(nanos.div_euclid(1_000_000), out),
            TimeFormat::UnixNs => write_int(nanos, out),
            TimeFormat::UnixFraction => {
                write_int(nanos.div_euclid(1_000_000_000), out);
                out.push(b'.');
                out.extend_from_slice(&text[20..29]);
            }
            TimeFormat::Datetime => datetime(19, out),
            TimeFormat::DatetimeMs => datetime(23, out),
            TimeFormat::DatetimeNs => datetime(29, out),
        }
    }
}

fn write_int(v: i64, out: &mut Vec<u8>) {
    out.extend_from_slice(v.to_string().as_bytes());
}

/// A piece of a template.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    /// `%Y`, `%m`, `%d`, `%H`, `%M`: a byte range of the RFC 3339 time.
    Time(std::ops::Range<usize>),
    /// `{name}`: a field, else a tag.
    Value(String),
}

/// A name made per event: `logs-{k8s.namespace.name}-%Y.%m.%d`, with `%Y`,
/// `%m`, `%d`, `%H`, `%M` of the event's time (UTC), `%%`, and `{name}`
/// for a field or else a tag of that name (`unknown` when it has none).
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Vec<Part>);

impl Template {
    /// Parses a template; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match c {
                '%' => {
                    let range = match chars.next() {
                        Some('Y') => 0..4,
                        Some('m') => 5..7,
                        Some('d') => 8..10,
                        Some('H') => 11..13,
                        Some('M') => 14..16,
                        Some('%') => {
                            lit.push('%');
                            continue;
                        }
                        other => {
                            return Err(format!(
                                "`%{}` is not one of %Y, %m, %d, %H, %M, %%",
                                other.map(String::from).unwrap_or_default()
                            ));
                        }
                    };
                    parts.push(Part::Text(std::mem::take(&mut lit)));
                    parts.push(Part::Time(range));
                }
                '{' => {
                    let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
                    if name.is_empty() {
                        return Err("`{}` names no field".into());
                    }
                    parts.push(Part::Text(std::mem::take(&mut lit)));
                    parts.push(Part::Value(name));
                }
                c => lit.push(c),
            }
        }
        parts.push(Part::Text(lit));
        parts.retain(|p| !matches!(p, Part::Text(t) if t.is_empty()));
        if parts.is_empty() {
            return Err("must not be empty".into());
        }
        Ok(Template(parts))
    }

    /// True when the template is plain text (the same for every event).
    pub fn is_constant(&self) -> bool {
        self.0.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// True when the template uses the event's time.
    pub fn uses_time(&self) -> bool {
        self.0.iter().any(|p| matches!(p, Part::Time(_)))
    }

    /// True when the template uses fields or tags (`{name}`).
    pub fn uses_values(&self) -> bool {
        self.0.iter().any(|p| matches!(p, Part::Value(_)))
    }

    /// Renders the template for `event` into `out` (cleared first).
    pub fn render(&self, batch: &Batch, event: &Event<'_>, out: &mut String) {
        self.render_at(
            event.timestamp(),
            |name| event.field(name).or_else(|| batch.tag(name)),
            out,
        );
    }

    /// Renders the template for the time `nanos`, with `lookup` giving the
    /// value of a `{name}`.
    pub fn render_at<'v>(
        &self,
        nanos: i64,
        lookup: impl Fn(&str) -> Option<&'v str>,
        out: &mut String,
    ) {
        out.clear();
        let mut time = None;
        for part in &self.0 {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Time(range) => {
                    let text = time.get_or_insert_with(|| rfc3339(nanos));
                    out.push_str(std::str::from_utf8(&text[range.clone()]).unwrap_or("0"));
                }
                Part::Value(name) => {
                    out.push_str(lookup(name).filter(|v| !v.is_empty()).unwrap_or("unknown"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchBuilder;

    #[test]
    fn templates_take_time_fields_and_tags() {
        let mut b = BatchBuilder::new();
        b.set_tag("k8s.namespace.name", "shop");
        b.push(1_700_000_000_000_000_000, b"one");
        b.push(1_700_000_000_000_000_000, b"two")
            .field("team", "web");
        let b = b.finish();
        let t = Template::parse("logs-{k8s.namespace.name}-{team}-%Y.%m.%d-%H:%M%%").unwrap();
        let mut out = String::new();
        t.render(&b, &b.event(1), &mut out);
        assert_eq!(out, "logs-shop-web-2023.11.14-22:13%");
        t.render(&b, &b.event(0), &mut out);
        assert_eq!(out, "logs-shop-unknown-2023.11.14-22:13%");
        assert!(t.uses_time() && t.uses_values() && !t.is_constant());
        assert!(!Template::parse("%Y").unwrap().uses_values());
        assert!(Template::parse("logs").unwrap().is_constant());
        assert!(Template::parse("x-%Q").unwrap_err().contains("%Q"));
        assert!(Template::parse("").is_err());
        assert!(Template::parse("{}").is_err());
    }

    #[test]
    fn time_formats() {
        let t = 1_732_204_862_500_000_000;
        let f = |fmt: TimeFormat| {
            let mut out = Vec::new();
            fmt.write_json(t, &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(f(TimeFormat::Rfc3339), "\"2024-11-21T16:01:02.500000000Z\"");
        assert_eq!(f(TimeFormat::Unix), "1732204862");
        assert_eq!(f(TimeFormat::UnixMs), "1732204862500");
        assert_eq!(f(TimeFormat::UnixNs), "1732204862500000000");
        assert_eq!(f(TimeFormat::UnixFraction), "1732204862.500000000");
        assert_eq!(f(TimeFormat::Datetime), "\"2024-11-21 16:01:02\"");
        assert_eq!(f(TimeFormat::DatetimeMs), "\"2024-11-21 16:01:02.500\"");
        assert_eq!(
            f(TimeFormat::DatetimeNs),
            "\"2024-11-21 16:01:02.500000000\""
        );
    }
}
