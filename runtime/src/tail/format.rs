//! Line formats: how the bytes of one line become an event. `raw` takes the
//! line as it is; `docker-json` decodes the json-file log driver's lines
//! (`{"log":"…\n","stream":"stdout","time":"…"}`), keeps the stream and the
//! engine's timestamp, and joins the pieces the engine split a long line
//! into (every piece but the last lacks the trailing newline).
//!
//! Works on lines and file offsets only; knows nothing of files, containers
//! or batches. A line that does not decode is kept whole as raw text and
//! counted, never dropped.

use serde::{Deserialize, Serialize};

use super::InputStats;

/// How lines of a file are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// The line is the event body.
    #[default]
    Raw,
    /// Docker's json-file log driver.
    DockerJson,
}

/// Which output stream of a container a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What is known of an event besides its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// When it was logged (the engine's time) or read, ns since the epoch.
    pub timestamp: i64,
    /// The container stream, for container logs.
    pub stream: Option<Stream>,
}

/// A line split by the engine, being joined.
#[derive(Debug, Default)]
struct Partial {
    buf: Vec<u8>,
    /// File offset where its first piece starts.
    start: u64,
    timestamp: i64,
    /// Pieces beyond `max` bytes were skipped.
    truncated: bool,
    held: bool,
}

/// Decodes lines of one file.
#[derive(Debug)]
pub struct Decoder {
    format: Format,
    max: usize,
    /// Per stream (stdout, stderr): a line being joined.
    partial: [Partial; 2],
}

#[derive(Deserialize)]
struct JsonLine<'a> {
    #[serde(borrow)]
    log: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    stream: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    time: Option<std::borrow::Cow<'a, str>>,
}

/// Nanoseconds since the epoch of an RFC 3339 UTC time with any number of
/// fractional digits (`2024-05-06T07:08:09.123456789Z`, as engines write).
pub fn parse_time(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339(s).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_nanos()).ok()
}

impl Decoder {
    /// A decoder for `format`, cutting joined lines at `max` bytes.
    pub fn new(format: Format, max: usize) -> Self {
        Decoder {
            format,
            max: max.max(1),
            partial: Default::default(),
        }
    }

    /// The lowest file offset of a line still being joined: nothing from
    /// there on may be committed.
    pub fn held_from(&self) -> Option<u64> {
        self.partial
            .iter()
            .filter(|p| p.held)
            .map(|p| p.start)
            .min()
    }

    /// Bytes held in lines being joined.
    pub fn held_bytes(&self) -> usize {
        self.partial
            .iter()
            .filter(|p| p.held)
            .map(|p| p.buf.len())
            .sum()
    }

    /// Forgets lines being joined (the file was truncated).
    pub fn reset(&mut self) {
        self.partial = Default::default();
    }

    /// Decodes one line found at file offsets `start..end`; `now` is the
    /// read time. `emit(body, meta, end)` receives every finished event;
    /// its `end` never passes a line another stream is still joining.
    pub fn push(
        &mut self,
        line: &[u8],
        start: u64,
        end: u64,
        now: i64,
        stats: &InputStats,
        emit: &mut impl FnMut(&[u8], Meta, u64),
    ) {
        if self.format == Format::Raw {
            let meta = Meta {
                timestamp: now,
                stream: None,
            };
            return emit(line, meta, end);
        }
        let parsed = serde_json::from_slice::<JsonLine<'_>>(line)
            .ok()
            .and_then(|j| {
                let stream = match j.stream.as_deref() {
                    Some("stderr") => Stream::Stderr,
                    Some("stdout") | None => Stream::Stdout,
                    Some(_) => return None,
                };
                Some((j.log, stream, j.time))
            });
        let Some((log, stream, time)) = parsed else {
            stats.lines_malformed.inc();
            let meta = Meta {
                timestamp: now,
                stream: None,
            };
            let end = self.held_from().map_or(end, |h| h.min(end));
            return emit(line, meta, end);
        };
        let timestamp = time.as_deref().and_then(parse_time).unwrap_or(now);
        let log = log.as_bytes();
        let (text, complete) = match log.strip_suffix(b"\n") {
            Some(t) => (t.strip_suffix(b"\r").unwrap_or(t), true),
            None => (log, false),
        };
        let max = self.max;
        let p = &mut self.partial[stream.index()];
        if !p.held && complete {
            // The common case: a whole line in one piece.
            let meta = Meta {
                timestamp,
                stream: Some(stream),
            };
            let end = self.held_from().map_or(end, |h| h.min(end));
            if text.len() > max {
                stats.lines_truncated.inc();
                stats.bytes_skipped.add((text.len() - max) as u64);
                return emit(&text[..max], meta, end);
            }
            return emit(text, meta, end);
        }
        if !p.held {
            p.held = true;
            p.start = start;
            p.timestamp = timestamp;
            p.truncated = false;
            p.buf.clear();
        }
        let room = max.saturating_sub(p.buf.len());
        if text.len() > room {
            p.buf.extend_from_slice(&text[..room]);
            stats.bytes_skipped.add((text.len() - room) as u64);
            p.truncated = true;
        } else {
            p.buf.extend_from_slice(text);
        }
        if complete {
            self.finish(stream, end, stats, emit);
        }
    }

    fn finish(
        &mut self,
        stream: Stream,
        end: u64,
        stats: &InputStats,
        emit: &mut impl FnMut(&[u8], Meta, u64),
    ) {
        let i = stream.index();
        self.partial[i].held = false;
        let end = match self.partial[1 - i].held {
            true => self.partial[1 - i].start.min(end),
            false => end,
        };
        let p = &mut self.partial[i];
        if p.truncated {
            stats.lines_truncated.inc();
        }
        let meta = Meta {
            timestamp: p.timestamp,
            stream: Some(stream),
        };
        emit(&p.buf, meta, end);
        p.buf.clear();
    }

    /// Sends lines still being joined as they are (their continuation is
    /// not coming: timeout, or the file is being closed). `end` is the
    /// offset read so far.
    pub fn flush(&mut self, end: u64, stats: &InputStats, emit: &mut impl FnMut(&[u8], Meta, u64)) {
        // Oldest first, so offsets stay in order.
        let mut order = [Stream::Stdout, Stream::Stderr];
        order.sort_by_key(|s| self.partial[s.index()].start);
        for s in order {
            if self.partial[s.index()].held {
                stats.lines_partial.inc();
                self.finish(s, end, stats, emit);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Out = Vec<(String, Option<&'static str>, i64, u64)>;

    fn run(d: &mut Decoder, stats: &InputStats, lines: &[&str]) -> Out {
        let mut out = Vec::new();
        let mut at = 0u64;
        for l in lines {
            let end = at + l.len() as u64 + 1;
            d.push(l.as_bytes(), at, end, 7, stats, &mut |b, m, e| {
                out.push((
                    String::from_utf8_lossy(b).into_owned(),
                    m.stream.map(Stream::as_str),
                    m.timestamp,
                    e,
                ))
            });
            at = end;
        }
        out
    }

    #[test]
    fn decodes_docker_json_lines_with_stream_and_engine_time() {
        let stats = InputStats::default();
        let mut d = Decoder::new(Format::DockerJson, 1024);
        let lines = [
            r#"{"log":"hello \"world\"\n","stream":"stdout","time":"2024-05-06T07:08:09.123456789Z"}"#,
            r#"{"log":"oops\r\n","stream":"stderr","time":"1970-01-01T00:00:01Z"}"#,
        ];
        let out = run(&mut d, &stats, &lines);
        let total: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
        assert_eq!(out[0].0, "hello \"world\"");
        assert_eq!(out[0].1, Some("stdout"));
        assert_eq!(out[0].2, 1_714_979_289_123_456_789);
        assert_eq!(
            out[1],
            ("oops".into(), Some("stderr"), 1_000_000_000, total)
        );
    }

    #[test]
    fn joins_pieces_per_stream_and_never_commits_past_a_held_piece() {
        let stats = InputStats::default();
        let mut d = Decoder::new(Format::DockerJson, 1024);
        let lines = [
            r#"{"log":"aaa","stream":"stdout","time":"1970-01-01T00:00:01Z"}"#,
            r#"{"log":"err\n","stream":"stderr","time":"1970-01-01T00:00:02Z"}"#,
            r#"{"log":"bbb","stream":"stdout","time":"1970-01-01T00:00:03Z"}"#,
            r#"{"log":"ccc\n","stream":"stdout","time":"1970-01-01T00:00:04Z"}"#,
        ];
        let out = run(&mut d, &stats, &lines);
        assert_eq!(out.len(), 2);
        // The stderr line ends before the held stdout line starts (offset 0).
        assert_eq!(out[0], ("err".into(), Some("stderr"), 2_000_000_000, 0));
        let total: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
        // The joined line carries the time of its first piece.
        assert_eq!(
            out[1],
            ("aaabbbccc".into(), Some("stdout"), 1_000_000_000, total)
        );
        assert_eq!(d.held_from(), None);
    }

    #[test]
    fn malformed_lines_are_kept_raw_and_counted() {
        let stats = InputStats::default();
        let mut d = Decoder::new(Format::DockerJson, 1024);
        let out = run(&mut d, &stats, &["not json", r#"{"stream":"stdout"}"#]);
        assert_eq!(out[0].0, "not json");
        assert_eq!(out[0].1, None);
        assert_eq!(out[0].2, 7);
        assert_eq!(out[1].0, r#"{"stream":"stdout"}"#);
        assert_eq!(stats.lines_malformed.get(), 2);
    }

    #[test]
    fn long_joined_lines_are_cut_at_max_and_counted() {
        let stats = InputStats::default();
        let mut d = Decoder::new(Format::DockerJson, 5);
        let out = run(
            &mut d,
            &stats,
            &[
                r#"{"log":"abcd","stream":"stdout"}"#,
                r#"{"log":"efgh","stream":"stdout"}"#,
                r#"{"log":"ij\n","stream":"stdout"}"#,
            ],
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, "abcde");
        assert_eq!(stats.lines_truncated.get(), 1);
        assert_eq!(stats.bytes_skipped.get(), 5);
    }

    #[test]
    fn flush_sends_an_unfinished_line() {
        let stats = InputStats::default();
        let mut d = Decoder::new(Format::DockerJson, 1024);
        let out = run(&mut d, &stats, &[r#"{"log":"tail","stream":"stderr"}"#]);
        assert!(out.is_empty());
        assert_eq!(d.held_from(), Some(0));
        let mut got = Vec::new();
        d.flush(33, &stats, &mut |b, m, e| {
            got.push((b.to_vec(), m.stream, e))
        });
        assert_eq!(got, vec![(b"tail".to_vec(), Some(Stream::Stderr), 33)]);
        assert_eq!(stats.lines_partial.get(), 1);
    }

    #[test]
    fn raw_passes_lines_through() {
        let stats = InputStats::default();
        let mut d = Decoder::new(Format::Raw, 1024);
        let out = run(&mut d, &stats, &["{\"log\":\"x\"}"]);
        assert_eq!(out, vec![("{\"log\":\"x\"}".into(), None, 7, 12)]);
    }
}
