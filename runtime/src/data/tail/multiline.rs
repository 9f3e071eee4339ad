//! Groups lines into multiline events (stack traces) by start, continue
//! and end patterns, a line limit and a flush timeout. Works on lines from
//! one file; knows nothing of files or batches.

use std::time::Instant;

use super::format::Meta;
use super::options::MultilineRules;

/// The grouping state of one file.
#[derive(Debug)]
pub struct Multiline {
    rules: MultilineRules,
    buf: Vec<u8>,
    lines: usize,
    last_line_at: Option<Instant>,
    /// File offset just after the last line of the group.
    end: u64,
    /// Timestamp and stream of the group's first line.
    meta: Meta,
}

impl Multiline {
    /// An empty grouper.
    pub fn new(rules: MultilineRules) -> Self {
        Multiline {
            rules,
            buf: Vec::new(),
            lines: 0,
            last_line_at: None,
            end: 0,
            meta: Meta {
                timestamp: 0,
                stream: None,
            },
        }
    }

    fn append(&mut self, line: &[u8], meta: Meta, end: u64, now: Instant) {
        self.end = end;
        if self.lines > 0 {
            self.buf.push(b'\n');
        } else {
            self.meta = meta;
        }
        self.buf.extend_from_slice(line);
        self.lines += 1;
        self.last_line_at = Some(now);
    }

    /// Sends the current group, if any.
    pub fn flush(&mut self, emit: &mut impl FnMut(&[u8], Meta, u64)) {
        if self.lines > 0 {
            emit(&self.buf, self.meta, self.end);
            self.buf.clear();
            self.lines = 0;
            self.last_line_at = None;
        }
    }

    /// Bytes of the group held back (0 if none).
    pub fn held_bytes(&self) -> usize {
        if self.lines > 0 {
            self.buf.len() + 1
        } else {
            0
        }
    }

    /// Forgets the current group (after the file was truncated).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.lines = 0;
        self.last_line_at = None;
    }

    /// When the current group will be flushed by timeout.
    pub fn deadline(&self) -> Option<Instant> {
        self.last_line_at.map(|t| t + self.rules.flush_timeout)
    }

    /// Flushes the group if its timeout has passed.
    pub fn flush_if_due(&mut self, now: Instant, emit: &mut impl FnMut(&[u8], Meta, u64)) {
        if self.deadline().is_some_and(|d| d <= now) {
            self.flush(emit);
        }
    }

    /// Feeds one line that ends at file offset `end`; `emit` receives every
    /// finished event with the timestamp and stream of its first line and
    /// the offset just after its last line. Lines of another stream (a
    /// container's stdout vs stderr) never join a group.
    pub fn push(
        &mut self,
        line: &[u8],
        meta: Meta,
        end: u64,
        now: Instant,
        emit: &mut impl FnMut(&[u8], Meta, u64),
    ) {
        if self.lines > 0 && self.meta.stream != meta.stream {
            self.flush(emit);
        }
        let r = &self.rules;
        let is_start = r.start.as_ref().is_some_and(|re| re.is_match(line));
        let is_continue = r
            .continue_pattern
            .as_ref()
            .is_some_and(|re| re.is_match(line));
        let is_end = r.end.as_ref().is_some_and(|re| re.is_match(line));

        if is_start {
            self.flush(emit);
            self.append(line, meta, end, now);
        } else if is_continue {
            self.append(line, meta, end, now);
        } else if r.start.is_some() && r.continue_pattern.is_none() {
            // Start-only mode: every other line continues the group; a line
            // before any start line is an event of its own.
            if self.lines > 0 {
                self.append(line, meta, end, now);
            } else {
                emit(line, meta, end);
                return;
            }
        } else if r.end.is_some() && r.continue_pattern.is_none() {
            // End mode: lines accumulate until the end line.
            self.append(line, meta, end, now);
        } else {
            // A continue pattern is set and this line does not match it: it
            // starts a new group.
            self.flush(emit);
            self.append(line, meta, end, now);
        }
        if is_end || self.lines >= self.rules.max_lines {
            self.flush(emit);
        }
    }
}

/// Rules from pattern strings with a 3 s timeout, for tests.
#[cfg(test)]
pub fn rules(
    start: Option<&str>,
    cont: Option<&str>,
    end: Option<&str>,
    max_lines: usize,
) -> MultilineRules {
    let re = |p: Option<&str>| p.map(|p| regex::bytes::Regex::new(p).expect("test pattern"));
    MultilineRules {
        start: re(start),
        continue_pattern: re(cont),
        end: re(end),
        max_lines,
        flush_timeout: std::time::Duration::from_secs(3),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::data::tail::format::Stream;

    const META: Meta = Meta {
        timestamp: 1,
        stream: None,
    };

    fn group(rules: MultilineRules, lines: &[&str]) -> (Vec<String>, Multiline) {
        let mut m = Multiline::new(rules);
        let mut out = Vec::new();
        let now = Instant::now();
        for (i, l) in lines.iter().enumerate() {
            m.push(l.as_bytes(), META, i as u64, now, &mut |e: &[u8], _, _| {
                out.push(String::from_utf8_lossy(e).into_owned())
            });
        }
        (out, m)
    }

    #[test]
    fn start_pattern_groups_a_java_stack_trace() {
        let lines = [
            "orphan",
            "2024-01-01 ERROR boom",
            "  at a.b(C.java:1)",
            "  at d.e(F.java:2)",
            "2024-01-01 INFO ok",
        ];
        let (out, mut m) = group(rules(Some(r"^\d{4}-"), None, None, 100), &lines);
        assert_eq!(
            out,
            vec![
                "orphan",
                "2024-01-01 ERROR boom\n  at a.b(C.java:1)\n  at d.e(F.java:2)"
            ]
        );
        let mut rest = Vec::new();
        m.flush(&mut |e: &[u8], _, _| rest.push(e.to_vec()));
        assert_eq!(rest, vec![b"2024-01-01 INFO ok".to_vec()]);
    }

    #[test]
    fn continue_pattern_appends_indented_lines() {
        let (out, _) = group(
            rules(None, Some(r"^\s"), None, 100),
            &["a", " b", " c", "d", "e"],
        );
        assert_eq!(out, vec!["a\n b\n c", "d"]);
    }

    #[test]
    fn end_pattern_closes_the_event() {
        let (out, m) = group(rules(None, None, Some(r";$"), 100), &["x", "y;", "z;", "w"]);
        assert_eq!(out, vec!["x\ny;", "z;"]);
        assert!(m.deadline().is_some());
    }

    #[test]
    fn max_lines_splits_long_groups() {
        let (out, _) = group(rules(Some("^S"), None, None, 2), &["S1", "a", "b", "S2"]);
        assert_eq!(out, vec!["S1\na", "b"]);
    }

    #[test]
    fn groups_never_mix_streams_and_keep_their_first_lines_meta() {
        let mut m = Multiline::new(rules(None, Some(r"^\s"), None, 10));
        let now = Instant::now();
        let mut out = Vec::new();
        let lines: [(&[u8], i64, Stream); 4] = [
            (b"a", 1, Stream::Stdout),
            (b" b", 2, Stream::Stdout),
            (b" c", 3, Stream::Stderr),
            (b"d", 4, Stream::Stderr),
        ];
        for (i, (l, ts, s)) in lines.into_iter().enumerate() {
            let meta = Meta {
                timestamp: ts,
                stream: Some(s),
            };
            m.push(l, meta, i as u64, now, &mut |e: &[u8], m: Meta, _| {
                out.push((String::from_utf8_lossy(e).into_owned(), m.timestamp))
            });
        }
        assert_eq!(out, vec![("a\n b".into(), 1), (" c".into(), 3)]);
    }

    #[test]
    fn timeout_flushes_an_incomplete_group() {
        let mut m = Multiline::new(rules(Some("^S"), None, None, 10));
        let t0 = Instant::now();
        let mut out = Vec::new();
        m.push(b"S1", META, 3, t0, &mut |e: &[u8], _, end| {
            out.push((e.to_vec(), end))
        });
        m.flush_if_due(t0 + Duration::from_secs(1), &mut |e: &[u8], _, end| {
            out.push((e.to_vec(), end))
        });
        assert!(out.is_empty());
        m.flush_if_due(t0 + Duration::from_secs(3), &mut |e: &[u8], _, end| {
            out.push((e.to_vec(), end))
        });
        assert_eq!(
            out,
            vec![(b"S1".to_vec(), 3)],
            "the group ends where its last line ends"
        );
    }
}
