//! One tailed file: its handle, identity (device, inode), read offset, line
//! splitter and multiline state. Reads in chunks and hands finished events
//! to an [`EventSink`]. Knows nothing of globs, batches or plugins.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::lines::LineSplitter;
use super::multiline::Multiline;
use super::options::FileInputOptions;
use super::{EventSink, InputStats};

/// What identifies a file independent of its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
}

impl FileId {
    /// The identity of an open file or a path's metadata.
    pub fn of(meta: &std::fs::Metadata) -> Self {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// An open file being tailed.
#[derive(Debug)]
pub struct TailedFile {
    path: PathBuf,
    source: Arc<str>,
    file: File,
    id: FileId,
    offset: u64,
    lines: LineSplitter,
    multiline: Option<Multiline>,
    last_data_at: Instant,
    partial_timeout: Duration,
}

impl TailedFile {
    /// Opens `path`, positioned at its end if `at_end`, else at 0.
    pub fn open(path: &Path, at_end: bool, opts: &FileInputOptions) -> io::Result<Self> {
        let mut file = File::open(path)?;
        let meta = file.metadata()?;
        let offset = if at_end {
            file.seek(SeekFrom::End(0))?
        } else {
            0
        };
        Ok(TailedFile {
            path: path.to_path_buf(),
            source: Arc::from(path.to_string_lossy().as_ref()),
            file,
            id: FileId::of(&meta),
            offset,
            lines: LineSplitter::new(opts.max_line_bytes),
            multiline: opts.multiline.clone().map(Multiline::new),
            last_data_at: Instant::now(),
            partial_timeout: opts.partial_line_timeout,
        })
    }

    /// The path the file was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's identity.
    pub fn id(&self) -> FileId {
        self.id
    }

    /// Bytes read so far (the position in the file).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Size of the open file now.
    pub fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Starts over from byte 0 after the file was truncated.
    pub fn restart_after_truncation(&mut self, stats: &InputStats) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(0))?;
        self.offset = 0;
        self.lines.reset();
        stats.truncations.inc();
        Ok(())
    }

    /// Reads at most `budget` bytes into `buf`-sized chunks and sends the
    /// events they complete. Returns the bytes read (0 at end of file).
    pub fn read(
        &mut self,
        buf: &mut [u8],
        budget: usize,
        sink: &mut dyn EventSink,
        stats: &InputStats,
    ) -> io::Result<usize> {
        let mut total = 0;
        while total < budget {
            let n = match self.file.read(buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            total += n;
            self.offset += n as u64;
            let now = Instant::now();
            let ts = now_nanos();
            let skipped_before = self.lines.skipped_bytes;
            let Self {
                lines,
                multiline,
                source,
                ..
            } = self;
            lines.push(&buf[..n], |line, flags, _| {
                if flags.truncated {
                    stats.lines_truncated.inc();
                }
                stats.lines.inc();
                match multiline {
                    Some(m) => m.push(line, now, &mut |ev: &[u8]| sink.event(source, ev, ts)),
                    None => sink.event(source, line, ts),
                }
            });
            stats
                .bytes_skipped
                .add(self.lines.skipped_bytes - skipped_before);
            stats.bytes.add(n as u64);
            self.last_data_at = now;
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
        let ts = now_nanos();
        let Self {
            lines,
            multiline,
            source,
            last_data_at,
            partial_timeout,
            ..
        } = self;
        if force || now.duration_since(*last_data_at) >= *partial_timeout {
            lines.flush_partial(|line, _| {
                stats.lines.inc();
                stats.lines_partial.inc();
                match multiline.as_mut() {
                    Some(m) => m.push(line, now, &mut |ev: &[u8]| sink.event(source, ev, ts)),
                    None => sink.event(source, line, ts),
                }
            });
        }
        if let Some(m) = multiline {
            if force {
                m.flush(&mut |ev: &[u8]| sink.event(source, ev, ts));
            } else {
                m.flush_if_due(now, &mut |ev: &[u8]| sink.event(source, ev, ts));
            }
        }
    }

    /// The next time [`TailedFile::flush_held`] has something to do.
    pub fn deadline(&self) -> Option<Instant> {
        let partial =
            (self.lines.pending_len() > 0).then(|| self.last_data_at + self.partial_timeout);
        let group = self.multiline.as_ref().and_then(Multiline::deadline);
        match (partial, group) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
