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
    /// While not [`EventSink::ready`]: adds to `sel` an operation that
    /// becomes ready when the sink has room again, so a tailer waiting on a
    /// full pipeline wakes as soon as a batch leaves it (never at the pace
    /// of a timer). Returns its index in `sel`.
    fn wait_room<'a>(&'a self, _sel: &mut crossbeam_channel::Select<'a>) -> Option<usize> {
        None
    }
    /// Called on every turn of the loop with the current time.
    fn tick(&mut self, now: Instant);
    /// When `tick` next has work to do.
    fn deadline(&self) -> Option<Instant>;
    /// Sends everything held, waiting for room; called once when the
    /// tailer stops.
    fn flush_all(&mut self);
}

crate::telemetry::counters! {
    /// What one input did, for logs and metrics.
    pub struct InputStats {
        /// Lines read (before multiline grouping).
        lines_read => "input_lines_total",
        /// Bytes read.
        bytes => "input_bytes_total",
        /// Lines cut at max_line_bytes.
        lines_truncated => "input_lines_truncated_total",
        /// Bytes of lines beyond max_line_bytes, not delivered.
        bytes_skipped => "input_bytes_skipped_total",
        /// Unterminated lines sent on timeout.
        lines_partial => "input_lines_partial_total",
        /// Truncations detected (reading started again at byte 0).
        truncations => "input_truncations_total",
        /// Files opened.
        files_opened => "input_files_opened_total",
        /// Files closed.
        files_closed => "input_files_closed_total",
        /// Deleted files released before they were drained.
        files_released => "input_files_released_total",
        /// Bytes of released files never read.
        bytes_given_up => "input_bytes_given_up_total",
        /// Container log lines that did not decode (kept raw).
        lines_malformed => "input_lines_malformed_total",
        /// Matching paths that are not regular files (FIFO, socket, device).
        files_skipped => "input_files_skipped_total",
        /// Targets added (by discovery).
        targets_added => "input_targets_added_total",
        /// Targets removed (drained and released).
        targets_removed => "input_targets_removed_total",
        /// Targets whose files were deleted before they could be opened (lost).
        targets_missed => "input_targets_missed_total",
    }
}
