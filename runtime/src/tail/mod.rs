//! Reading files: which files (`glob`), how they are read (`file`, `lines`,
//! `multiline`) and the loop that drives them (`tailer`).
//!
//! `tail` knows paths, file identities and offsets. It must not import
//! Docker, Kubernetes, wasmtime or the pipeline: it hands finished events to
//! an [`EventSink`] (the batcher) and counts what it does in [`InputStats`].

mod file;
mod glob;
mod lines;
mod multiline;
mod options;
mod tailer;

#[cfg(test)]
mod model_test;

use std::sync::Arc;
use std::time::Instant;

pub use file::{Checkpoints, FINGERPRINT_BYTES, TailedFile, fingerprint, now_nanos};
pub use glob::{PathMatcher, PatternError};
pub use lines::{LineFlags, LineSplitter};
pub use multiline::Multiline;
pub use options::{FileInputOptions, MultilineRules, StartAt};
pub use tailer::Tailer;

use crate::ack::FileTracker;
use crate::telemetry::Counter;

/// Where events come from: one generation of one file.
#[derive(Debug)]
pub struct Source {
    /// The path the file was opened at.
    pub path: Arc<str>,
    /// Acknowledgements of what was read from it.
    pub tracker: Arc<FileTracker>,
}

/// Where the tailer puts finished events.
pub trait EventSink {
    /// One event (a line, or a multiline group) read from `source` at
    /// `timestamp` (ns since the epoch); `end` is the file offset just after
    /// it. Never blocks: read only while [`EventSink::ready`].
    fn event(&mut self, source: &Arc<Source>, body: &[u8], timestamp: i64, end: u64);
    /// True if the sink can take more events now. The tailer reads only
    /// then: that is the back-pressure, and the tailer stays free to stop,
    /// rescan and release files while the pipeline is full.
    fn ready(&self) -> bool {
        true
    }
    /// Called on every turn of the loop with the current time.
    fn tick(&mut self, now: Instant);
    /// When `tick` next has work to do.
    fn deadline(&self) -> Option<Instant>;
    /// Sends everything held, waiting for room; called once when the
    /// tailer stops.
    fn flush_all(&mut self);
}

/// What one input did, for logs and metrics.
#[derive(Debug, Default)]
pub struct InputStats {
    /// Lines read (before multiline grouping).
    pub lines: Counter,
    /// Bytes read.
    pub bytes: Counter,
    /// Lines cut to `max_line_bytes`.
    pub lines_truncated: Counter,
    /// Bytes skipped in cut lines.
    pub bytes_skipped: Counter,
    /// Unterminated lines sent on timeout.
    pub lines_partial: Counter,
    /// Truncations detected.
    pub truncations: Counter,
    /// Files opened.
    pub files_opened: Counter,
    /// Files closed after rotation or deletion.
    pub files_closed: Counter,
    /// Deleted files released before they were read to their end.
    pub files_released: Counter,
    /// Bytes of deleted files given up when they were released.
    pub bytes_given_up: Counter,
}
