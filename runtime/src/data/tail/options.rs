//! Checked options of one file input, built by `config` and read by the
//! tailer. Plain data: no I/O here.

use std::path::PathBuf;
use std::time::Duration;

use regex::bytes::Regex;

use super::format::Format;

/// Where to start in files present when the tailer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// From the first byte.
    Beginning,
    /// From the end at startup (files found later start at their beginning).
    End,
}

/// Everything the tailer needs to know about one input.
#[derive(Debug, Clone)]
pub struct FileInputOptions {
    /// Absolute glob patterns of files to read.
    pub include: Vec<String>,
    /// Absolute glob patterns of files to skip.
    pub exclude: Vec<String>,
    /// Start position for files present at startup.
    pub start_at: StartAt,
    /// How lines are decoded (for the fixed files; discovery sets it per target).
    pub format: Format,
    /// Longest line kept, in bytes (> 0).
    pub max_line_bytes: usize,
    /// How long an unterminated last line is held.
    pub partial_line_timeout: Duration,
    /// Full re-evaluation of the patterns.
    pub rescan_interval: Duration,
    /// Check open files for new data this often without notifications.
    pub poll_interval: Duration,
    /// Multiline grouping, if any.
    pub multiline: Option<MultilineRules>,
    /// A deleted file is released after this long even if not read to its end.
    pub release_deleted_after: Duration,
}

/// Checked multiline rules (at least one pattern is set).
#[derive(Debug, Clone)]
pub struct MultilineRules {
    /// A matching line starts a new event.
    pub start: Option<Regex>,
    /// A matching line continues the current event.
    pub continue_pattern: Option<Regex>,
    /// A matching line ends the current event.
    pub end: Option<Regex>,
    /// Most lines per event (> 0).
    pub max_lines: usize,
    /// An incomplete event is sent after this long without a new line.
    pub flush_timeout: Duration,
}

impl FileInputOptions {
    /// Options with the documented defaults for `include`, reading from the
    /// beginning: handy for tests and the benchmark.
    pub fn for_paths(include: Vec<PathBuf>) -> Self {
        FileInputOptions {
            include: include
                .into_iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect(),
            exclude: Vec::new(),
            start_at: StartAt::Beginning,
            format: Format::Raw,
            max_line_bytes: 1024 * 1024,
            partial_line_timeout: Duration::from_secs(5),
            rescan_interval: Duration::from_secs(10),
            poll_interval: Duration::from_millis(250),
            multiline: None,
            release_deleted_after: Duration::from_secs(300),
        }
    }
}

impl FileInputOptions {
    /// Where a file without a checkpoint starts. Files found later are new:
    /// from the beginning. At startup `start_at` decides, except that a file
    /// born after the tailer was made (`created`) is new, and after a restart a file
    /// written since the previous run's last scan (`previous_write_ms`) is read from the
    /// beginning (it appeared while Gleaner was down).
    pub fn start_for(
        &self,
        path: &std::path::Path,
        initial: bool,
        created: std::time::SystemTime,
        previous_write_ms: Option<u64>,
    ) -> StartAt {
        if !initial || self.start_at == StartAt::Beginning {
            return StartAt::Beginning;
        }
        let meta = std::fs::metadata(path);
        // Born after the pipeline started (before its first scan got to
        // it): a new file, read whole. Where the file system records birth.
        if meta
            .as_ref()
            .ok()
            .and_then(|m| m.created().ok())
            .is_some_and(|born| born >= created)
        {
            return StartAt::Beginning;
        }
        let modified_ms = meta
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as u64);
        match (previous_write_ms, modified_ms) {
            (Some(written), Some(modified)) if modified > written => StartAt::Beginning,
            _ => StartAt::End,
        }
    }
}
