//! One tailed file: its handle, identity (device, inode, fingerprint of its
//! first bytes), read offset, ack tracker, line splitter and multiline
//! state. Reads in chunks and hands finished events, each with the file
//! offset just after it, to an [`EventSink`]. Knows nothing of globs,
//! batches or plugins.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::format::{Decoder, Format, Meta};
use super::lines::LineSplitter;
use super::multiline::Multiline;
use super::options::{FileInputOptions, StartAt};
use super::{EventSink, InputStats, Source};
use crate::model::ack::{FileIdentity, FileTracker};
use crate::model::target::Tags;
use crate::state::checkpoint::CheckpointStore;

/// Bytes at the start of a file that make up its fingerprint (at most).
pub const FINGERPRINT_BYTES: u32 = 1024;

/// Nanoseconds since the Unix epoch, now.
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The fingerprint of the first `min(len, size)` bytes of `file`.
pub fn fingerprint(file: &File, size: u64, len: u32) -> io::Result<(u64, u32)> {
    let n = size.min(u64::from(len)) as usize;
    let mut buf = vec![0u8; n];
    file.read_exact_at(&mut buf, 0)?;
    let digest = Sha256::digest(&buf);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    Ok((u64::from_be_bytes(first), n as u32))
}

/// Where the tailer keeps offsets of one input.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    /// The store.
    pub store: Arc<CheckpointStore>,
    /// This input's key in it: `<pipeline>/<input index>`.
    pub input: Arc<str>,
}

/// An open file being tailed.
#[derive(Debug)]
pub struct TailedFile {
    path: PathBuf,
    source: Arc<Source>,
    file: File,
    identity: FileIdentity,
    offset: u64,
    /// Where the next line starts (the end of the last one split).
    line_start: u64,
    lines: LineSplitter,
    decoder: Decoder,
    multiline: Option<Multiline>,
    last_data_at: Instant,
    partial_timeout: Duration,
    checkpoints: Checkpoints,
}

impl TailedFile {
    /// Opens `path` and positions it: at its checkpoint if the checkpoint
    /// store knows this file (same device, inode and fingerprint), else at
    /// `start`. Its lines are decoded as `format` and its batches tagged
    /// with `tags`. Returns the file and whether it resumed from a checkpoint.
    pub fn open(
        path: &Path,
        start: StartAt,
        opts: &FileInputOptions,
        checkpoints: &Checkpoints,
        (format, tags): (Format, Tags),
    ) -> io::Result<(Self, bool)> {
        // Non-blocking, so that a FIFO put at the path after the caller
        // checked it cannot block the open; refused below.
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)?
        };
        let meta = file.metadata()?;
        if !meta.file_type().is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let size = meta.len();
        let (fp, fp_len) = fingerprint(&file, size, FINGERPRINT_BYTES)?;
        let born_ns = meta
            .created()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64);
        let identity = FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            fingerprint: fp,
            fingerprint_len: fp_len,
            born_ns,
        };
        // The same file if it was born at the same time (where the file
        // system records it) and its first bytes still hash the same.
        let same = |old: FileIdentity| -> io::Result<bool> {
            if old.born_ns != 0 && born_ns != 0 && old.born_ns != born_ns {
                return Ok(false);
            }
            Ok(old.fingerprint_len <= fp_len
                && fingerprint(&file, size, old.fingerprint_len)?.0 == old.fingerprint)
        };
        // Seen earlier in this run (closed, e.g. renamed out of the patterns
        // and back): continue after what was already read and sent on.
        let live = match checkpoints
            .store
            .live(&checkpoints.input, identity.dev, identity.ino)
        {
            Some(t) if same(t.identity())? => Some(t),
            _ => None,
        };
        // Known from the checkpoint file of an earlier run.
        let known = match checkpoints
            .store
            .lookup(&checkpoints.input, identity.dev, identity.ino)
        {
            Some(e) if e.identity().map(same).transpose()?.unwrap_or(false) => {
                Some(e.offset.min(size))
            }
            _ => None,
        };
        let (offset, tracker, resumed) = match (live, known, start) {
            (Some(t), _, _) => {
                let offset = t.registered().min(size);
                t.set_closed(false);
                (offset, t, true)
            }
            (None, Some(offset), _) => (
                offset,
                FileTracker::new(identity, &path.to_string_lossy(), offset),
                true,
            ),
            (None, None, StartAt::Beginning) => (
                0,
                FileTracker::new(identity, &path.to_string_lossy(), 0),
                false,
            ),
            (None, None, StartAt::End) => (
                size,
                FileTracker::new(identity, &path.to_string_lossy(), size),
                false,
            ),
        };
        file.seek(SeekFrom::Start(offset))?;
        let path_text = path.to_string_lossy();
        checkpoints.store.track(&checkpoints.input, &tracker);
        let f = TailedFile {
            path: path.to_path_buf(),
            source: Arc::new(Source {
                path: Arc::from(path_text.as_ref()),
                tracker,
                tags,
            }),
            file,
            identity,
            offset,
            line_start: offset,
            lines: LineSplitter::new(opts.max_line_bytes),
            decoder: Decoder::new(format, opts.max_line_bytes),
            multiline: opts.multiline.clone().map(Multiline::new),
            last_data_at: Instant::now(),
            partial_timeout: opts.partial_line_timeout,
            checkpoints: checkpoints.clone(),
        };
        Ok((f, resumed))
    }

    /// The path the file was last seen at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records that the file is now found at `path` (it was renamed).
    pub fn set_path(&mut self, path: &Path) {
        self.path = path.to_path_buf();
    }

    /// Tags batches read from now on with `tags` (same file, same
    /// acknowledgements).
    pub fn set_tags(&mut self, tags: Tags) {
        self.source = Arc::new(Source {
            path: self.source.path.clone(),
            tracker: self.source.tracker.clone(),
            tags,
        });
    }

    /// Device and inode.
    pub fn dev_ino(&self) -> (u64, u64) {
        (self.identity.dev, self.identity.ino)
    }

    /// Bytes read so far (the position in the file).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Starts over from byte 0 after the file was truncated. The file gets a
    /// new tracker: acknowledgements of batches read before the truncation
    /// must not move the checkpoint of the new content.
    pub fn restart_after_truncation(&mut self, stats: &InputStats) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(0))?;
        self.offset = 0;
        self.line_start = 0;
        self.lines.reset();
        self.decoder.reset();
        if let Some(m) = self.multiline.as_mut() {
            m.reset();
        }
        let size = self.file.metadata()?.len();
        let (fp, fp_len) = fingerprint(&self.file, size, FINGERPRINT_BYTES)?;
        self.identity = FileIdentity {
            fingerprint: fp,
            fingerprint_len: fp_len,
            ..self.identity
        };
        let tracker = FileTracker::new(self.identity, &self.path.to_string_lossy(), 0);
        self.checkpoints
            .store
            .track(&self.checkpoints.input, &tracker);
        self.source = Arc::new(Source {
            path: self.source.path.clone(),
            tracker,
            tags: self.source.tags.clone(),
        });
        stats.truncations.inc();
        Ok(())
    }

    /// Grows the fingerprint while the file is shorter than
    /// [`FINGERPRINT_BYTES`], so a restart recognises it by as many bytes as
    /// possible.
    fn grow_fingerprint(&mut self) -> io::Result<()> {
        if self.identity.fingerprint_len < FINGERPRINT_BYTES
            && self.offset > u64::from(self.identity.fingerprint_len)
        {
            let (fp, len) = fingerprint(&self.file, self.offset, FINGERPRINT_BYTES)?;
            self.identity = FileIdentity {
                fingerprint: fp,
                fingerprint_len: len,
                ..self.identity
            };
            self.source.tracker.set_identity(self.identity);
        }
        Ok(())
    }

    /// Reads at most `budget` bytes in `buf`-sized chunks and sends the
    /// events they complete; stops after the current chunk once `stop` is
    /// set or the sink is full. Returns the bytes read (0 at end of file,
    /// when called while the sink is ready).
    pub fn read(
        &mut self,
        buf: &mut [u8],
        budget: usize,
        sink: &mut dyn EventSink,
        stats: &InputStats,
        stop: &AtomicBool,
    ) -> io::Result<usize> {
        let mut total = 0;
        // After the first chunk, go on only while the sink has room: what a
        // full pipeline holds back is then at most one chunk.
        while total < budget && !stop.load(Ordering::Relaxed) && (total == 0 || sink.ready()) {
            let n = match self.file.read(buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            total += n;
            let chunk_start = self.offset;
            self.offset += n as u64;
            let now = Instant::now();
            let ts = now_nanos();
            let skipped_before = self.lines.skipped_bytes;
            let Self {
                lines,
                decoder,
                multiline,
                source,
                line_start,
                ..
            } = self;
            lines.push(&buf[..n], |line, flags, consumed| {
                if flags.truncated {
                    stats.lines_truncated.inc();
                }
                stats.lines_read.inc();
                let end = chunk_start + consumed as u64;
                let start = std::mem::replace(line_start, end);
                decoder.push(line, start, end, ts, stats, &mut |body, meta, end| {
                    to_sink(multiline, sink, source, body, meta, end, now)
                });
            });
            stats
                .bytes_skipped
                .add(self.lines.skipped_bytes - skipped_before);
            stats.bytes.add(n as u64);
            self.last_data_at = now;
        }
        if total > 0 {
            self.grow_fingerprint()?;
        }
        Ok(total)
    }

    /// Sends an unterminated last line or an incomplete multiline event
    /// whose timeout has passed (or everything, if `force`).
    pub fn flush_held(
        &mut self,
        now: Instant,
        force: bool,
        sink: &mut dyn EventSink,
        stats: &InputStats,
    ) {
        if !force && self.deadline().is_none_or(|d| d > now) {
            // Nothing held, or not due yet (the common case: no clock read).
            return;
        }
        let ts = now_nanos();
        let offset = self.offset;
        let Self {
            lines,
            decoder,
            multiline,
            source,
            last_data_at,
            partial_timeout,
            line_start,
            ..
        } = self;
        if force || now.duration_since(*last_data_at) >= *partial_timeout {
            lines.flush_partial(|line, _| {
                stats.lines_read.inc();
                stats.lines_partial.inc();
                let start = std::mem::replace(line_start, offset);
                decoder.push(line, start, offset, ts, stats, &mut |body, meta, end| {
                    to_sink(multiline, sink, source, body, meta, end, now)
                });
            });
            decoder.flush(offset, stats, &mut |body, meta, end| {
                to_sink(multiline, sink, source, body, meta, end, now)
            });
        }
        if let Some(m) = multiline {
            let mut emit = |ev: &[u8], meta: Meta, end| sink.event(source, ev, meta, end);
            if force {
                m.flush(&mut emit);
            } else {
                m.flush_if_due(now, &mut emit);
            }
        }
    }

    /// Size of the open file now.
    pub fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Bytes not yet turned into events: unread, plus an unterminated line
    /// or incomplete multiline group held back.
    pub fn bytes_not_sent(&self) -> u64 {
        let unread = self
            .size()
            .unwrap_or(self.offset)
            .saturating_sub(self.offset);
        let held = self.lines.pending_len() as u64
            + self.decoder.held_bytes() as u64
            + self.multiline.as_ref().map_or(0, |m| m.held_bytes() as u64);
        unread + held
    }

    /// True if the file has no name left (deleted; we hold the last
    /// reference to its data).
    pub fn is_deleted(&self) -> bool {
        self.file.metadata().is_ok_and(|m| m.nlink() == 0)
    }

    /// True if the file was truncated and refilled since it was read
    /// (copytruncate): the bytes its fingerprint covers changed, or the
    /// file is now shorter than them. Costs one read of at most
    /// [`FINGERPRINT_BYTES`] and a hash.
    pub fn replaced_in_place(&self) -> bool {
        let len = self.identity.fingerprint_len;
        if len == 0 || self.offset == 0 {
            return false;
        }
        let Ok(size) = self.size() else {
            return false;
        };
        if size < u64::from(len) {
            return true;
        }
        fingerprint(&self.file, size, len).is_ok_and(|(fp, _)| fp != self.identity.fingerprint)
    }

    /// Records that the file was deleted.
    pub fn mark_deleted(&self) {
        self.source.tracker.set_deleted();
    }

    /// True if the file has bytes beyond what was read.
    pub fn has_more(&self) -> bool {
        self.file.metadata().is_ok_and(|m| m.len() > self.offset)
    }

    /// The next time [`TailedFile::flush_held`] has something to do.
    pub fn deadline(&self) -> Option<Instant> {
        let partial = (self.lines.pending_len() > 0 || self.decoder.held_from().is_some())
            .then(|| self.last_data_at + self.partial_timeout);
        let group = self.multiline.as_ref().and_then(Multiline::deadline);
        match (partial, group) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Hands a decoded line on: through multiline grouping if configured.
fn to_sink(
    multiline: &mut Option<Multiline>,
    sink: &mut dyn EventSink,
    source: &Arc<Source>,
    body: &[u8],
    meta: Meta,
    end: u64,
    now: Instant,
) {
    match multiline {
        Some(m) => m.push(body, meta, end, now, &mut |ev: &[u8], meta, end| {
            sink.event(source, ev, meta, end)
        }),
        None => sink.event(source, body, meta, end),
    }
}

impl Drop for TailedFile {
    fn drop(&mut self) {
        self.source.tracker.set_closed(true);
    }
}
