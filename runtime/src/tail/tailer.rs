//! The tailer of one file input: finds files (inotify through `notify`,
//! plus a periodic full rescan), notices rotation and truncation, reads
//! every file with new data in fair turns, and enforces the hold timeouts.
//! Runs on its own thread until told to stop.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use notify::{RecursiveMode, Watcher};
use tracing::{debug, info, warn};

use super::file::{FileId, TailedFile};
use super::glob::{PathMatcher, PatternError};
use super::options::{FileInputOptions, StartAt};
use super::{EventSink, InputStats};

/// Bytes read from one file before the others get a turn.
const READ_BUDGET: usize = 4 * 1024 * 1024;
/// Size of the read buffer.
const READ_BUF: usize = 256 * 1024;

/// Tails the files of one input.
pub struct Tailer {
    opts: FileInputOptions,
    matcher: PathMatcher,
    files: HashMap<PathBuf, TailedFile>,
    dirty: HashSet<PathBuf>,
    notifications: Receiver<notify::Result<notify::Event>>,
    watcher: Option<notify::RecommendedWatcher>,
    watched: HashSet<PathBuf>,
    stats: Arc<InputStats>,
    buf: Vec<u8>,
}

impl Tailer {
    /// Compiles the patterns and sets up file-system notifications (if the
    /// platform has none, polling alone still works).
    pub fn new(opts: FileInputOptions, stats: Arc<InputStats>) -> Result<Self, PatternError> {
        let matcher = PathMatcher::new(&opts.include, &opts.exclude)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let watcher = match notify::recommended_watcher(move |ev| {
            let _ = tx.send(ev);
        }) {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(error = %e, "File-system notifications are unavailable; falling back to polling.");
                None
            }
        };
        Ok(Tailer {
            opts,
            matcher,
            files: HashMap::new(),
            dirty: HashSet::new(),
            notifications: rx,
            watcher,
            watched: HashSet::new(),
            stats,
            buf: vec![0; READ_BUF],
        })
    }

    fn watch_roots(&mut self) {
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        for root in self.matcher.watch_roots() {
            if self.watched.contains(&root) || !root.is_dir() {
                continue;
            }
            match w.watch(&root, RecursiveMode::Recursive) {
                Ok(()) => {
                    debug!(dir = %root.display(), "Watching directory.");
                    self.watched.insert(root);
                }
                Err(e) => {
                    warn!(dir = %root.display(), error = %e, "Cannot watch directory; relying on rescans.")
                }
            }
        }
    }

    /// Opens files that match and are not open yet.
    fn scan(&mut self, initial: bool) {
        self.watch_roots();
        for path in self.matcher.scan() {
            self.open_if_new(path, initial);
        }
    }

    fn open_if_new(&mut self, path: PathBuf, initial: bool) {
        if self.files.contains_key(&path) {
            return;
        }
        let at_end = initial && self.opts.start_at == StartAt::End;
        match TailedFile::open(&path, at_end, &self.opts) {
            Ok(f) => {
                info!(path = %path.display(), offset = f.offset(), "Started tailing file.");
                self.stats.files_opened.inc();
                self.dirty.insert(path.clone());
                self.files.insert(path, f);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                warn!(path = %path.display(), error = %e, "Cannot open file; will retry at next scan.")
            }
        }
    }

    fn on_notification(&mut self, ev: notify::Event) {
        use notify::EventKind;
        // Our own reads show up as access events: reacting to them would
        // loop. Only creation, writes, renames and removal matter.
        if matches!(ev.kind, EventKind::Access(_) | EventKind::Other) {
            return;
        }
        let created = matches!(ev.kind, EventKind::Create(_));
        for path in ev.paths {
            if self.files.contains_key(&path) {
                self.dirty.insert(path);
            } else if self.matcher.matches(&path) {
                self.open_if_new(path, false);
            } else if created && path.is_dir() {
                // A new directory may hold matching files already (mkdir -p && write).
                self.scan(false);
            }
        }
    }

    /// Checks every open file against its path: rotated (another inode at
    /// the path), deleted, or truncated. Rotated and deleted files are read
    /// to their end and closed.
    fn check_rotation(&mut self, sink: &mut dyn EventSink) {
        let paths: Vec<PathBuf> = self.files.keys().cloned().collect();
        for path in paths {
            let current = std::fs::metadata(&path)
                .ok()
                .map(|m| (FileId::of(&m), m.len()));
            let Some(file) = self.files.get_mut(&path) else {
                continue;
            };
            match current {
                Some((id, len)) if id == file.id() => {
                    if len < file.offset() {
                        info!(path = %path.display(), offset = file.offset(), len, "File was truncated; reading from the start.");
                        if let Err(e) = file.restart_after_truncation(&self.stats) {
                            warn!(path = %path.display(), error = %e, "Cannot rewind truncated file.");
                        }
                        self.dirty.insert(path);
                    } else if len > file.offset() {
                        self.dirty.insert(path);
                    }
                }
                other => {
                    let Some(mut old) = self.files.remove(&path) else {
                        continue;
                    };
                    self.drain(&mut old, sink);
                    old.flush_held(Instant::now(), true, sink, &self.stats);
                    self.stats.files_closed.inc();
                    if other.is_some() {
                        info!(path = %path.display(), "File was rotated; drained the old file, opening the new one.");
                        self.open_if_new(path, false);
                    } else {
                        info!(path = %path.display(), "File was deleted; drained and closed it.");
                    }
                }
            }
        }
    }

    fn drain(&mut self, file: &mut TailedFile, sink: &mut dyn EventSink) {
        loop {
            match file.read(&mut self.buf, READ_BUDGET, sink, &self.stats) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    warn!(path = %file.path().display(), error = %e, "Read failed.");
                    break;
                }
            }
        }
    }

    /// Reads every dirty file once, up to the per-file budget; files with
    /// more data stay dirty for the next turn.
    fn read_dirty(&mut self, sink: &mut dyn EventSink) {
        let dirty: Vec<PathBuf> = self.dirty.drain().collect();
        for path in dirty {
            let Some(file) = self.files.get_mut(&path) else {
                continue;
            };
            match file.read(&mut self.buf, READ_BUDGET, sink, &self.stats) {
                Ok(n) if n >= READ_BUDGET => {
                    self.dirty.insert(path);
                }
                Ok(_) => {}
                Err(e) => warn!(path = %path.display(), error = %e, "Read failed; will retry."),
            }
        }
    }

    fn next_wake(&self, sink: &dyn EventSink, poll_at: Instant) -> Instant {
        let mut wake = poll_at;
        if let Some(d) = sink.deadline() {
            wake = wake.min(d);
        }
        for f in self.files.values() {
            if let Some(d) = f.deadline() {
                wake = wake.min(d);
            }
        }
        wake
    }

    /// Runs until `stop` is set, then sends everything it holds (held
    /// partial lines stay in the file: they were not complete).
    ///
    /// With `exit_on_eof`, it instead returns once every file found at
    /// startup has been read to its end; an unterminated last line is then
    /// sent as it is.
    pub fn run(mut self, sink: &mut dyn EventSink, stop: &AtomicBool, exit_on_eof: bool) {
        self.scan(true);
        if exit_on_eof {
            while !self.dirty.is_empty() && !stop.load(Ordering::Relaxed) {
                self.read_dirty(sink);
            }
            let now = Instant::now();
            for f in self.files.values_mut() {
                f.flush_held(now, true, sink, &self.stats);
            }
            sink.flush_all();
            return;
        }
        let mut next_rescan = Instant::now() + self.opts.rescan_interval;
        let mut next_poll = Instant::now() + self.opts.poll_interval;
        while !stop.load(Ordering::Relaxed) {
            self.read_dirty(sink);
            let now = Instant::now();
            for f in self.files.values_mut() {
                f.flush_held(now, false, sink, &self.stats);
            }
            sink.tick(now);
            if !self.dirty.is_empty() {
                continue;
            }
            let wake = self.next_wake(sink, next_poll.min(next_rescan));
            let timeout = wake
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(500));
            match self.notifications.recv_timeout(timeout) {
                Ok(Ok(ev)) => {
                    self.on_notification(ev);
                    while let Ok(more) = self.notifications.try_recv() {
                        if let Ok(ev) = more {
                            self.on_notification(ev);
                        }
                    }
                }
                Ok(Err(e)) => debug!(error = %e, "Notification error."),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(timeout),
            }
            let now = Instant::now();
            if now >= next_poll {
                self.check_rotation(sink);
                next_poll = now + self.opts.poll_interval;
            }
            if now >= next_rescan {
                self.scan(false);
                next_rescan = now + self.opts.rescan_interval;
            }
        }
        sink.flush_all();
    }
}
