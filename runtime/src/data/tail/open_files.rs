//! The files a tailer reads: open files by identity (device, inode) and
//! the path each was seen at, which target each belongs to, which have
//! unread data, files that left their path and are read on to their end,
//! and matching paths that are not regular files. Reads in fair turns,
//! each file up to a budget, and only while the sink has room.
//!
//! Owns descriptors and read offsets; it does not match paths or watch
//! directories (`targets`, `watches`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::file::TailedFile;
use super::{EventSink, InputStats};

/// Bytes read from one file before the others get a turn.
const READ_BUDGET: usize = 4 * 1024 * 1024;
/// Size of the read buffer.
const READ_BUF: usize = 256 * 1024;

/// (device, inode).
pub type Key = (u64, u64);

/// A file that left its path (renamed away or deleted), still read to its
/// end: its descriptor is held, so a rename or delete loses nothing.
pub struct Draining {
    pub file: TailedFile,
    /// The target it was read for.
    pub owner: Arc<str>,
    /// When it left its path.
    pub since: Instant,
}

/// True if `path` leads to a regular file (opening a FIFO would block).
pub fn is_regular(path: &std::path::Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_file())
}

/// The files of one tailer.
pub struct OpenFiles {
    /// Open files by (device, inode): a path is only where a file was seen.
    pub files: HashMap<Key, TailedFile>,
    /// The target each open file belongs to.
    pub owner: HashMap<Key, Arc<str>>,
    /// Every matching path seen, and the file it led to.
    pub by_path: HashMap<PathBuf, Key>,
    /// Files with data not read yet.
    pub dirty: HashSet<Key>,
    /// Files no longer at the path they were read at (rotated away or
    /// deleted), read on to their end.
    pub draining: Vec<Draining>,
    /// Paths of non-regular files (FIFOs, sockets, devices) already
    /// warned about: they are skipped, never opened.
    skipped: HashSet<PathBuf>,
    buf: Vec<u8>,
}

impl Default for OpenFiles {
    fn default() -> Self {
        OpenFiles {
            files: HashMap::new(),
            owner: HashMap::new(),
            by_path: HashMap::new(),
            dirty: HashSet::new(),
            draining: Vec::new(),
            skipped: HashSet::new(),
            buf: vec![0; READ_BUF],
        }
    }
}

impl OpenFiles {
    /// Whether a file of target `id` is open (at its path or draining).
    pub fn owns_any(&self, id: &str) -> bool {
        self.owner.values().any(|o| &**o == id) || self.draining.iter().any(|d| &*d.owner == id)
    }

    /// Counts a non-regular file at a matching path, and warns once per path.
    pub fn skip(&mut self, path: &Path, stats: &InputStats) {
        if self.skipped.insert(path.to_path_buf()) {
            stats.files_skipped.inc();
            warn!(path = %path.display(), "Skipping a path that is not a regular file (FIFO, socket or device): it is never opened.");
        }
    }

    /// Moves the open file `key` off its path into the draining list: it
    /// is read on from its descriptor until its end.
    pub fn detach(&mut self, key: Key, why: &'static str) {
        let Some(file) = self.files.remove(&key) else {
            return;
        };
        let owner = self.owner.remove(&key).unwrap_or_else(|| Arc::from(""));
        self.by_path.retain(|_, k| *k != key);
        self.dirty.remove(&key);
        if file.is_deleted() {
            file.mark_deleted();
            info!(path = %file.path().display(), "File was deleted; reading it to its end.");
        } else {
            info!(path = %file.path().display(), "{why}");
        }
        self.draining.push(Draining {
            file,
            owner,
            since: Instant::now(),
        });
    }

    /// Reads files that left their path on, first on every turn (so an old
    /// generation's last lines tend to come before the new one's); closes
    /// each at its end. A deleted one is released after
    /// `release_deleted_after` even if not drained (counting the bytes
    /// given up), so a blocked output cannot hold the node's disk space.
    /// Returns true if any of them gave data (read again soon).
    pub fn read_draining(
        &mut self,
        sink: &mut dyn EventSink,
        stats: &InputStats,
        stop: &AtomicBool,
        (rotate_wait, release_after): (Duration, Duration),
    ) -> bool {
        let mut busy = false;
        let mut i = 0;
        while i < self.draining.len() {
            let d = &mut self.draining[i];
            let mut at_end = false;
            if sink.ready() {
                match d.file.read(&mut self.buf, READ_BUDGET, sink, stats, stop) {
                    // A writer may still finish its last lines into a file
                    // renamed away (before it reopens its log): wait a
                    // moment at its end before closing it.
                    Ok(0) => {
                        at_end = !d.file.has_more()
                            && (d.file.is_deleted() || d.since.elapsed() >= rotate_wait)
                    }
                    Ok(_) => busy = true,
                    Err(e) => {
                        warn!(path = %d.file.path().display(), error = %e, "Read of a rotated or deleted file failed.")
                    }
                }
            }
            if at_end {
                d.file.flush_held(Instant::now(), true, sink, stats);
                info!(path = %d.file.path().display(), "Read a rotated or deleted file to its end; closed it.");
            } else if d.since.elapsed() >= release_after && d.file.is_deleted() {
                let left = d.file.bytes_not_sent();
                stats.files_released.inc();
                stats.bytes_given_up.add(left);
                warn!(path = %d.file.path().display(), bytes_given_up = left, "Released a deleted file before its end: its output is too slow.");
            } else {
                i += 1;
                continue;
            }
            stats.files_closed.inc();
            self.draining.swap_remove(i);
        }
        busy
    }

    /// Reads every dirty file once, up to the per-file budget, while the
    /// sink has room; a file stays dirty until a read finds its end.
    pub fn read_dirty(&mut self, sink: &mut dyn EventSink, stats: &InputStats, stop: &AtomicBool) {
        let dirty: Vec<Key> = self.dirty.drain().collect();
        for key in dirty {
            if !sink.ready() {
                // The pipeline is full: read on a later turn.
                self.dirty.insert(key);
                continue;
            }
            let Some(file) = self.files.get_mut(&key) else {
                continue;
            };
            // Truncated and refilled past our offset since the last read
            // (copytruncate): its first bytes tell.
            if file.replaced_in_place() {
                rewind(file, stats);
            }
            match file.read(&mut self.buf, READ_BUDGET, sink, stats, stop) {
                // It gave data: read it again until a read finds its end
                // (the budget or a full pipeline may have cut this turn short).
                Ok(n) if n > 0 => {
                    self.dirty.insert(key);
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(path = %file.path().display(), error = %e, "Read failed; will retry.")
                }
            }
        }
    }

    /// Closes the files of the targets in `due` that are read to their
    /// end (sending what they held back); returns the targets with a file
    /// still being read.
    pub fn close_ended_of(
        &mut self,
        due: &HashSet<Arc<str>>,
        now: Instant,
        sink: &mut dyn EventSink,
        stats: &InputStats,
    ) -> HashSet<Arc<str>> {
        let owned: Vec<(Key, Arc<str>)> = self
            .owner
            .iter()
            .filter(|(_, o)| due.contains(*o))
            .map(|(k, o)| (*k, o.clone()))
            .collect();
        let mut busy = HashSet::new();
        for (key, owner) in owned {
            let Some(f) = self.files.get_mut(&key) else {
                continue;
            };
            if f.has_more() || self.dirty.contains(&key) {
                self.dirty.insert(key);
                busy.insert(owner);
                continue;
            }
            f.flush_held(now, true, sink, stats);
            info!(path = %f.path().display(), target = %owner, "Read the file of a removed target to its end; closed it.");
            self.files.remove(&key);
            self.owner.remove(&key);
            self.by_path.retain(|_, k| *k != key);
            stats.files_closed.inc();
        }
        busy
    }

    /// Sends what open files hold back (an unterminated last line, an
    /// incomplete multiline event) once its timeout passed, or all of it
    /// with `force`.
    pub fn flush_held(
        &mut self,
        now: Instant,
        force: bool,
        sink: &mut dyn EventSink,
        stats: &InputStats,
    ) {
        for f in self.files.values_mut() {
            f.flush_held(now, force, sink, stats);
        }
    }

    /// When [`OpenFiles::flush_held`] next has something to do.
    pub fn deadline(&self) -> Option<Instant> {
        self.files.values().filter_map(TailedFile::deadline).min()
    }

    /// Takes note of file `key`'s size `len` at its path (a poll): shorter
    /// than what was read, or grown with other first bytes, it was
    /// truncated and is read from the start; grown, it has data to read.
    /// (An idle file is not hashed: only one with new bytes can have been
    /// refilled.)
    pub fn check_size(&mut self, key: Key, len: u64, stats: &InputStats) {
        let Some(file) = self.files.get_mut(&key) else {
            return;
        };
        if len < file.offset() || (len > file.offset() && file.replaced_in_place()) {
            rewind(file, stats);
        }
        if len != file.offset() {
            self.dirty.insert(key);
        }
    }
}

/// Reads `file` again from its start: it was truncated, or truncated and
/// refilled.
fn rewind(file: &mut TailedFile, stats: &InputStats) {
    info!(path = %file.path().display(), offset = file.offset(), "File was truncated (or its first bytes replaced); reading from the start.");
    if let Err(e) = file.restart_after_truncation(stats) {
        warn!(path = %file.path().display(), error = %e, "Cannot rewind truncated file.");
    }
}
