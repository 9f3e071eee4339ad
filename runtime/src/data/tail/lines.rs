//! Native line splitting of a byte stream: finds `\n` with `memchr`, strips
//! one trailing `\r`, cuts lines longer than `max_line_bytes` (the cut part
//! is skipped up to the next newline and counted), and holds an
//! unterminated tail until it completes or is flushed by timeout.
//! Owns no file handle; `file.rs` feeds it.

/// What happened to a line on its way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LineFlags {
    /// The line was longer than the limit and was cut.
    pub truncated: bool,
    /// The line had no newline yet and was sent on timeout or at end.
    pub partial: bool,
}

/// Splits bytes into lines.
#[derive(Debug)]
pub struct LineSplitter {
    pending: Vec<u8>,
    max: usize,
    /// Inside a line that was already cut: drop bytes up to the next newline.
    skipping: bool,
    /// Bytes skipped because lines were too long.
    pub skipped_bytes: u64,
}

impl LineSplitter {
    /// A splitter for lines of at most `max_line_bytes` bytes.
    pub fn new(max_line_bytes: usize) -> Self {
        LineSplitter {
            pending: Vec::new(),
            max: max_line_bytes.max(1),
            skipping: false,
            skipped_bytes: 0,
        }
    }

    /// Bytes held of an unterminated line.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Feeds `data`; calls `emit(line, flags, consumed)` for each complete
    /// line, where `consumed` is how many bytes of `data` have been used up
    /// to and including that line's newline.
    pub fn push(&mut self, data: &[u8], mut emit: impl FnMut(&[u8], LineFlags, usize)) {
        let mut at = 0;
        while at < data.len() {
            let rest = &data[at..];
            match memchr::memchr(b'\n', rest) {
                Some(nl) => {
                    let consumed = at + nl + 1;
                    if self.skipping {
                        self.skipped_bytes += nl as u64;
                        self.skipping = false;
                    } else if self.pending.is_empty() {
                        let line = trim_cr(&rest[..nl]);
                        if line.len() > self.max {
                            self.skipped_bytes += (line.len() - self.max) as u64;
                            emit(
                                &line[..self.max],
                                LineFlags {
                                    truncated: true,
                                    partial: false,
                                },
                                consumed,
                            );
                        } else {
                            emit(line, LineFlags::default(), consumed);
                        }
                    } else {
                        let room = self.max - self.pending.len();
                        let piece = &rest[..nl];
                        if piece.len() > room {
                            self.pending.extend_from_slice(&piece[..room]);
                            self.skipped_bytes += (piece.len() - room) as u64;
                            let line = trim_cr(&self.pending);
                            emit(
                                line,
                                LineFlags {
                                    truncated: true,
                                    partial: false,
                                },
                                consumed,
                            );
                        } else {
                            self.pending.extend_from_slice(piece);
                            let line = trim_cr(&self.pending);
                            emit(line, LineFlags::default(), consumed);
                        }
                        self.pending.clear();
                    }
                    at = consumed;
                }
                None => {
                    if self.skipping {
                        self.skipped_bytes += rest.len() as u64;
                    } else {
                        let room = self.max - self.pending.len();
                        if rest.len() > room {
                            // The line is already too long: send its first
                            // `max` bytes now and skip the rest of it.
                            self.pending.extend_from_slice(&rest[..room]);
                            self.skipped_bytes += (rest.len() - room) as u64;
                            emit(
                                &self.pending,
                                LineFlags {
                                    truncated: true,
                                    partial: false,
                                },
                                data.len(),
                            );
                            self.pending.clear();
                            self.skipping = true;
                        } else {
                            self.pending.extend_from_slice(rest);
                        }
                    }
                    at = data.len();
                }
            }
        }
    }

    /// Sends the held unterminated line, if any, as a partial line.
    pub fn flush_partial(&mut self, mut emit: impl FnMut(&[u8], LineFlags)) {
        if !self.pending.is_empty() {
            emit(
                &self.pending,
                LineFlags {
                    truncated: false,
                    partial: true,
                },
            );
            self.pending.clear();
        }
    }

    /// Forgets held bytes (after truncation of the file).
    pub fn reset(&mut self) {
        self.pending.clear();
        self.skipping = false;
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, chunks: &[&[u8]]) -> (Vec<(String, LineFlags)>, LineSplitter) {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, |l, f, _| {
                out.push((String::from_utf8_lossy(l).into_owned(), f))
            });
        }
        (out, s)
    }

    fn bodies(v: &[(String, LineFlags)]) -> Vec<&str> {
        v.iter().map(|(l, _)| l.as_str()).collect()
    }

    #[test]
    fn lines_split_across_chunks_are_joined() {
        let (out, s) = split(100, &[b"ab", b"c\nde", b"f\r\n", b"g\n\nh"]);
        assert_eq!(bodies(&out), vec!["abc", "def", "g", ""]);
        assert_eq!(s.pending_len(), 1);
    }

    #[test]
    fn long_lines_are_cut_and_the_rest_skipped_and_counted() {
        let (out, s) = split(4, &[b"123456789\nok\n"]);
        assert_eq!(bodies(&out), vec!["1234", "ok"]);
        assert!(out[0].1.truncated);
        assert_eq!(s.skipped_bytes, 5);
    }

    #[test]
    fn long_lines_without_newline_are_cut_once_across_chunks() {
        let (out, s) = split(4, &[b"12", b"3456", b"789", b"0\nnext\n"]);
        assert_eq!(bodies(&out), vec!["1234", "next"]);
        assert_eq!(out.iter().filter(|(_, f)| f.truncated).count(), 1);
        assert_eq!(s.skipped_bytes, 6);
    }

    #[test]
    fn partial_tail_is_flushed_on_request() {
        let (_, mut s) = split(10, &[b"a\nbc"]);
        let mut got = Vec::new();
        s.flush_partial(|l, f| got.push((l.to_vec(), f.partial)));
        assert_eq!(got, vec![(b"bc".to_vec(), true)]);
        assert_eq!(s.pending_len(), 0);
    }

    #[test]
    fn consumed_counts_bytes_through_each_newline() {
        let mut s = LineSplitter::new(100);
        let mut ends = Vec::new();
        s.push(b"ab\ncd\nef", |_, _, c| ends.push(c));
        assert_eq!(ends, vec![3, 6]);
    }
}
