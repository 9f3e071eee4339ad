//! Reading files: what to read (`target`: host path patterns with tags, as
//! a static input or discovery hands them over), which files match
//! (`glob`), how they are read (`file`, `lines`, `format`, `multiline`) and
//! the loop that drives them (`tailer`).
//!
//! `tail` knows paths, file identities, line formats and offsets. It must
//! not import discovery (Docker, Kubernetes), wasmtime or the pipeline: it
//! takes [`TargetUpdate`]s, hands finished events to an [`EventSink`] (the
//! batcher) and counts what it does in [`InputStats`].

mod file;
pub mod format;
mod glob;
mod lines;
mod multiline;
mod open_files;
mod options;
mod tailer;
mod targets;
mod watches;

#[cfg(test)]
mod model_test;

use std::sync::Arc;
use std::time::Instant;

pub use crate::model::target::{Tags, Target, TargetUpdate};
pub use file::{Checkpoints, FINGERPRINT_BYTES, TailedFile, fingerprint, now_nanos};
pub use format::{Format, Meta, Stream};
pub use glob::{PathMatcher, PatternError};
pub use lines::{LineFlags, LineSplitter};
pub use multiline::Multiline;
pub use options::{FileInputOptions, MultilineRules, StartAt};
pub use tailer::Tailer;

use crate::model::ack::FileTracker;
use crate::telemetry::Counter;

/// Where events come from: one generation of one file.
#[derive(Debug)]
pub struct Source {
    /// The path the file was opened at.
    pub path: Arc<str>,
    /// Acknowledgements of what was read from it.
    pub tracker: Arc<FileTracker>,
    /// Tags of the target the file belongs to.
    pub tags: Tags,
}

/// Where the tailer puts finished events.
pub trait EventSink {
    /// One event (a line, or a multiline group) read from `source`, with
    /// its timestamp and stream; `end` is the file offset up to which the
    /// file is done with once this event is delivered. Never blocks: read
    /// only while [`EventSink::ready`].
    fn event(&mut self, source: &Arc<Source>, body: &[u8], meta: Meta, end: u64);
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
    /// Lines that did not decode in the input's format, kept as raw text.
    pub lines_malformed: Counter,
    /// Matching paths skipped because they are not regular files (FIFOs,
    /// sockets, devices).
    pub files_skipped: Counter,
    /// Targets added (by discovery).
    pub targets_added: Counter,
    /// Targets removed (drained and released).
    pub targets_removed: Counter,
}
