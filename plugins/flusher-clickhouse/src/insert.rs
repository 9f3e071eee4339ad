//! JSONEachRow rows from a batch, requests cut within `max_bytes`, and
//! ClickHouse's answer (`Code: N. ... (at row N)`) read into a [`Report`].
//! No I/O.

use gleaner_sdk::http::{Request, split};
use gleaner_sdk::json::{Layout, write_with};
use gleaner_sdk::time::TimeFormat;
use gleaner_sdk::{Batch, FlushError, Report};

/// Builds inserts.
#[derive(Debug)]
pub struct Encoder {
    timestamp_key: String,
    format: TimeFormat,
    max_bytes: usize,
}

impl Encoder {
    /// An encoder with these settings.
    pub fn new(timestamp_key: String, format: TimeFormat, max_bytes: usize) -> Self {
        Encoder {
            timestamp_key,
            format,
            max_bytes,
        }
    }

    /// The inserts for `batch`.
    pub fn encode(&self, batch: &Batch) -> Vec<Request> {
        let mut all = Vec::with_capacity(batch.body_bytes() * 2 + batch.len() * 64);
        let mut ends = Vec::with_capacity(batch.len());
        let layout = Layout {
            time: Some((&self.timestamp_key, self.format)),
            ..Layout::default()
        };
        write_with(batch, &mut all, &layout, |i, out| {
            if i > 0 {
                ends.push(out.len());
            }
        });
        if !batch.is_empty() {
            ends.push(all.len());
        }
        split(&all, &ends, self.max_bytes)
    }
}

/// Exception codes worth retrying: overload, timeouts, network, too many
/// parts, read-only or missing replicas, an insert of unknown status,
/// authentication and access (a credential gets fixed).
const RETRY: &[u32] = &[
    3, 159, 164, 192, 193, 194, 202, 203, 209, 210, 241, 242, 252, 285, 319, 425, 497, 516, 999,
];

/// The `N` of `Code: N` in a ClickHouse error.
fn code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + 6..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The 1-based `N` of `(at row N)`.
fn row(text: &str) -> Option<usize> {
    let rest = &text[text.find("(at row ")? + 8..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Reads ClickHouse's answer to `request` into `report`; `Err` is for the
/// whole request.
pub fn read_answer(
    status: u16,
    text: &str,
    request: &Request,
    report: &mut Report,
) -> Result<(), FlushError> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    let msg = gleaner_sdk::http::describe(status, text);
    let code = code(text);
    if code.is_some_and(|c| RETRY.contains(&c)) {
        return Err(FlushError::Retryable(msg));
    }
    if let Some(n) = row(text).filter(|&n| n >= 1 && n <= request.events.len()) {
        // The insert is atomic: the bad row is refused, the others go again.
        let bad = request.events.start + n - 1;
        report.reject(bad, msg);
        for i in request.events.clone().filter(|&i| i != bad) {
            report.retry(i);
        }
        return Ok(());
    }
    match code {
        // ClickHouse answers 500 for any exception; only the codes above
        // are worth another try.
        Some(_) if status == 500 => Err(FlushError::Rejected(msg)),
        _ => gleaner_sdk::http::outcome(status, text).map_err(|e| match e {
            FlushError::Retryable(_) => FlushError::Retryable(msg.clone()),
            FlushError::Rejected(_) => FlushError::Rejected(msg.clone()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Range;

    use super::*;
    use gleaner_sdk::BatchBuilder;

    fn batch() -> Batch {
        let mut b = BatchBuilder::new();
        for i in 0..4 {
            b.push(1_700_000_000_500_000_000, b"m").value("n", i);
        }
        b.finish()
    }

    #[test]
    fn rows_carry_the_time_in_the_chosen_format() {
        let e = Encoder::new("ts".into(), TimeFormat::Datetime, 1 << 20);
        let r = e.encode(&batch());
        assert_eq!(r.len(), 1);
        let first = String::from_utf8(r[0].body.clone()).unwrap();
        assert_eq!(
            first.lines().next().unwrap(),
            r#"{"ts":"2023-11-14 22:13:20","n":0,"message":"m"}"#
        );
        let split = Encoder::new("ts".into(), TimeFormat::Unix, 80).encode(&batch());
        let ranges: Vec<Range<usize>> = split.iter().map(|r| r.events.clone()).collect();
        assert_eq!(ranges, [0..2, 2..4]);
    }

    #[test]
    fn a_bad_row_is_rejected_and_the_others_retried() {
        let r = &Encoder::new("ts".into(), TimeFormat::Unix, 1 << 20).encode(&batch())[0];
        let mut report = Report::default();
        let text = "Code: 27, e.displayText() = DB::Exception: Cannot parse input: expected \" before: x\"}: (while read the value of key n): (at row 3)\n";
        read_answer(500, text, r, &mut report).unwrap();
        assert_eq!(report.rejections()[0].0, 2);
        assert!(report.rejections()[0].1.contains("Cannot parse input"));
        assert_eq!(report.retried(), [0, 1, 3]);
        let parts = "Code: 252, e.displayText() = DB::Exception: Too many parts (300)";
        assert!(matches!(
            read_answer(500, parts, r, &mut report),
            Err(FlushError::Retryable(_))
        ));
        let table = "Code: 60, e.displayText() = DB::Exception: Table default.nope doesn't exist.";
        assert!(matches!(
            read_answer(404, table, r, &mut report),
            Err(FlushError::Rejected(_))
        ));
        let setting = "Code: 115, e.displayText() = DB::Exception: Unknown setting async_insert";
        assert!(matches!(
            read_answer(500, setting, r, &mut report),
            Err(FlushError::Rejected(_))
        ));
        assert!(matches!(
            read_answer(503, "", r, &mut report),
            Err(FlushError::Retryable(_))
        ));
        assert_eq!(read_answer(200, "", r, &mut report), Ok(()));
    }
}
