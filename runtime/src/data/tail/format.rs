//! Line formats: how the bytes of one line become an event. `raw` takes the
//! line as it is; `docker-json` decodes the json-file log driver's lines
//! (`{"log":"…\n","stream":"stdout","time":"…"}`) and `cri` the CRI log
//! format of containerd and CRI-O (`<time> <stream> <P|F> <text>`). Both keep
//! the stream and the runtime's timestamp, and join the pieces the runtime
//! split a long line into (every piece but the last lacks the trailing
//! newline in json-file, is tagged `P` in CRI).
//!
//! Works on lines and file offsets only; knows nothing of files, containers
//! or batches. A line that does not decode is kept whole as raw text and
//! counted, never dropped.

use serde::Deserialize;

use super::InputStats;

pub use crate::model::target::Format;

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

/// Nanoseconds since the epoch of an RFC 3339 time with any number of
/// fractional digits, in UTC (`2024-05-06T07:08:09.123456789Z`, as Docker
/// writes) or with an offset (`…+02:00`, as containerd writes in local time).
pub fn parse_time(s: &str) -> Option<i64> {
    let (utc, offset_secs) = match s.strip_suffix('Z') {
        Some(_) => (std::borrow::Cow::Borrowed(s), 0i64),
        None => {
            let at = s.len().checked_sub(6)?;
            let (head, off) = s.split_at(at);
            let sign = match off.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = off[1..].split_once(':')?;
            let secs = h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60;
            (std::borrow::Cow::Owned(format!("{head}Z")), sign * secs)
        }
    };
    let t = humantime::parse_rfc3339(&utc).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_nanos())
        .ok()?
        .checked_sub(offset_secs * 1_000_000_000)
}

/// A decoded line: text, stream, whether it ends a line, time.
type Piece<'a> = (std::borrow::Cow<'a, [u8]>, Stream, bool, Option<i64>);

fn stream_of(s: &[u8]) -> Option<Stream> {
    match s {
        b"stdout" => Some(Stream::Stdout),
        b"stderr" => Some(Stream::Stderr),
        _ => None,
    }
}

/// `{"log":…,"stream":…,"time":…}`: complete when `log` ends with `\n`.
fn docker_json(line: &[u8]) -> Option<Piece<'_>> {
    let j = serde_json::from_slice::<JsonLine<'_>>(line).ok()?;
    let stream = match j.stream.as_deref() {
        None => Stream::Stdout,
        Some(s) => stream_of(s.as_bytes())?,
    };
    let time = j.time.as_deref().and_then(parse_time);
    let (text, complete) = match j.log {
        std::borrow::Cow::Borrowed(log) => {
            let (t, c) = strip_newline(log.as_bytes());
            (std::borrow::Cow::Borrowed(t), c)
        }
        std::borrow::Cow::Owned(log) => {
            let (t, c) = strip_newline(log.as_bytes());
            (std::borrow::Cow::Owned(t.to_vec()), c)
        }
    };
    Some((text, stream, complete, time))
}

fn strip_newline(log: &[u8]) -> (&[u8], bool) {
    match log.strip_suffix(b"\n") {
        Some(t) => (t.strip_suffix(b"\r").unwrap_or(t), true),
        None => (log, false),
    }
}

/// `<time> <stdout|stderr> <P|F>[:more tags] <text>`: complete unless `P`.
fn cri(line: &[u8]) -> Option<Piece<'_>> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let stream = stream_of(parts.next()?)?;
    let tags = parts.next()?;
    let complete = match tags.split(|&b| b == b':').next()? {
        b"F" => true,
        b"P" => false,
        _ => return None,
    };
    let text = parts.next().unwrap_or(b"");
    Some((
        std::borrow::Cow::Borrowed(text),
        stream,
        complete,
        Some(parse_time(time)?),
    ))
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
        let parsed = match self.format {
            // Nodes that still run Docker (dockershim, cri-dockerd) link
            // json-file logs under /var/log/pods: a line starting with `{`
            // is one (a CRI line starts with its timestamp).
            Format::Cri if line.first() != Some(&b'{') => cri(line),
            _ => docker_json(line),
        };
        let Some((text, stream, complete, time)) = parsed else {
            stats.lines_malformed.inc();
            let meta = Meta {
                timestamp: now,
                stream: None,
            };
            let end = self.held_from().map_or(end, |h| h.min(end));
            return emit(line, meta, end);
        };
        let timestamp = time.unwrap_or(now);
        let text: &[u8] = &text;
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
    fn decodes_cri_lines_and_joins_partial_ones_per_stream() {
        let stats = InputStats::default();
        let mut d = Decoder::new(Format::Cri, 1024);
        let lines = [
            "2024-05-06T07:08:09.000000001Z stdout F hello world",
            "2024-05-06T07:08:10Z stdout P first ",
            "2024-05-06T09:08:11+02:00 stderr F err",
            "2024-05-06T07:08:12Z stdout P second ",
            "2024-05-06T07:08:13Z stdout F third",
            "2024-05-06T07:08:14Z stdout F",
            "2024-05-06T07:08:15Z stdout X bad tag",
        ];
        let out = run(&mut d, &stats, &lines);
        let base = 1_714_979_289_000_000_000i64;
        let first_end = lines[0].len() as u64 + 1;
        assert_eq!(
            out[0],
            ("hello world".into(), Some("stdout"), base + 1, first_end)
        );
        // The stderr line is done, but the held stdout line starts before it.
        assert_eq!(
            out[1],
            (
                "err".into(),
                Some("stderr"),
                base + 2_000_000_000,
                first_end
            )
        );
        assert_eq!(out[2].0, "first second third");
        assert_eq!(out[2].2, base + 1_000_000_000, "time of the first piece");
        assert_eq!(out[3].0, "");
        assert_eq!(out[4], (lines[6].into(), None, 7, out[4].3));
        assert_eq!(stats.lines_malformed.get(), 1);
    }

    #[test]
    fn cri_inputs_also_read_docker_json_file_lines() {
        let stats = InputStats::default();
        let mut d = Decoder::new(Format::Cri, 1024);
        let out = run(
            &mut d,
            &stats,
            &[
                r#"{"log":"from docker\n","stream":"stderr","time":"1970-01-01T00:00:02Z"}"#,
                "1970-01-01T00:00:03Z stdout F from containerd",
            ],
        );
        assert_eq!(out[0].0, "from docker");
        assert_eq!((out[0].1, out[0].2), (Some("stderr"), 2_000_000_000));
        assert_eq!(out[1].0, "from containerd");
        assert_eq!(stats.lines_malformed.get(), 0);
    }

    #[test]
    fn times_with_offsets_are_utc() {
        assert_eq!(parse_time("1970-01-01T01:00:01+01:00"), Some(1_000_000_000));
        assert_eq!(
            parse_time("1970-01-01T00:00:01.5-01:00"),
            Some(3_601_500_000_000)
        );
        assert_eq!(parse_time("1970-01-01T00:00:01"), None);
    }

    #[test]
    fn raw_passes_lines_through() {
        let stats = InputStats::default();
        let mut d = Decoder::new(Format::Raw, 1024);
        let out = run(&mut d, &stats, &["{\"log\":\"x\"}"]);
        assert_eq!(out, vec![("{\"log\":\"x\"}".into(), None, 7, 12)]);
    }
}
