//! The on-disk buffer of one flusher: batches that could not be delivered
//! before a graceful stop, one zstd-compressed segment file per batch in
//! `<data_dir>/buffer/<pipeline>/<flusher index>/`, replayed (oldest first)
//! before anything new when the flusher starts again.
//!
//! Segment format (little-endian): magic `GLBF`, format version (u8),
//! then the zstd-compressed batch: tags, timestamps, bodies, body ends,
//! keys, values, fields (four u32 each), each as a u32 count followed by
//! its items (strings and byte buffers as a u32 length plus bytes); since
//! version 2 then severities and field types, as byte buffers. Version 1
//! segments (written before typed values) read as string fields without
//! severities. Written atomically (temp, fsync, rename).
//!
//! Knows batches and files only.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::event::{Batch, value};
use crate::state::checkpoint::write_atomically;

const MAGIC: &[u8; 4] = b"GLBF";
const FORMAT: u8 = 2;

/// A segment that cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    /// I/O.
    #[error("buffer segment {path}: {source}")]
    Io {
        /// The segment.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a segment this build can read.
    #[error("buffer segment {path} is corrupt: {message}")]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// One flusher's buffer directory.
#[derive(Debug)]
pub struct DiskBuffer {
    dir: PathBuf,
    next: AtomicU64,
    /// Bytes in all segments.
    bytes: AtomicU64,
}

fn segment_seq(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_suffix(".seg")?
        .parse()
        .ok()
}

impl DiskBuffer {
    /// Opens (creates) the buffer directory.
    pub fn open(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let buffer = DiskBuffer {
            dir,
            next: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        };
        buffer.rescan()?;
        Ok(buffer)
    }

    /// Takes the next segment number and the size from the directory again
    /// (a pipeline version prepared while the previous one still ran opens
    /// the same directory before that one has buffered its last batches).
    pub fn rescan(&self) -> std::io::Result<()> {
        let segments = self.segments()?;
        let next = segments
            .last()
            .and_then(|p| segment_seq(p))
            .map_or(0, |s| s + 1);
        let bytes = segments
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        self.next.store(next, Ordering::Relaxed);
        self.bytes.store(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Bytes in all segments.
    pub fn size(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The oldest segment, if any.
    pub fn oldest(&self) -> Option<PathBuf> {
        self.segments().ok().and_then(|s| s.into_iter().next())
    }

    /// Deletes a segment (delivered, or dropped by policy).
    pub fn remove(&self, path: &Path) -> std::io::Result<()> {
        let len = std::fs::metadata(path)?.len();
        std::fs::remove_file(path)?;
        self.bytes
            .fetch_sub(len.min(self.size()), Ordering::Relaxed);
        Ok(())
    }

    /// Moves a segment that cannot be read out of the replay order (kept
    /// for inspection as `<name>.corrupt`).
    pub fn set_aside(&self, path: &Path) -> std::io::Result<()> {
        let len = std::fs::metadata(path)?.len();
        std::fs::rename(path, path.with_extension("corrupt"))?;
        self.bytes
            .fetch_sub(len.min(self.size()), Ordering::Relaxed);
        Ok(())
    }

    /// Segment files, oldest first.
    pub fn segments(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(&self.dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter_map(|p| segment_seq(&p).map(|s| (s, p)))
            .collect();
        found.sort();
        Ok(found.into_iter().map(|(_, p)| p).collect())
    }

    /// Writes `batch` as the newest segment.
    pub fn write(&self, batch: &Batch) -> std::io::Result<PathBuf> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{seq:012}.seg"));
        self.write_at(&path, batch)?;
        Ok(path)
    }

    /// Replaces segment `path` with what is left of its batch (the
    /// destination took the rest), keeping its place in the order.
    pub fn rewrite(&self, path: &Path, batch: &Batch) -> std::io::Result<()> {
        let old = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        self.write_at(path, batch)?;
        self.bytes
            .fetch_sub(old.min(self.size()), Ordering::Relaxed);
        Ok(())
    }

    fn write_at(&self, path: &Path, batch: &Batch) -> std::io::Result<()> {
        let mut raw =
            Vec::with_capacity(batch.bodies.len() + batch.values.len() + batch.len() * 12 + 64);
        encode(batch, &mut raw);
        let mut bytes = MAGIC.to_vec();
        bytes.push(FORMAT);
        bytes.extend_from_slice(&zstd::bulk::compress(&raw, 1)?);
        write_atomically(path, &bytes)?;
        self.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Reads a segment back.
    pub fn read(path: &Path) -> Result<Batch, BufferError> {
        let corrupt = |message: String| BufferError::Corrupt {
            path: path.to_path_buf(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|source| BufferError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if bytes.len() < 5 || &bytes[..4] != MAGIC || !(1..=FORMAT).contains(&bytes[4]) {
            return Err(corrupt("bad header".into()));
        }
        let raw = zstd::stream::decode_all(&bytes[5..]).map_err(|e| corrupt(e.to_string()))?;
        let batch = decode(&raw, bytes[4]).ok_or_else(|| corrupt("truncated batch".into()))?;
        batch.check_layout().map_err(|e| corrupt(e.to_string()))?;
        Ok(batch)
    }
}

fn put_u32(out: &mut Vec<u8>, v: usize) {
    out.extend_from_slice(&(v as u32).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, b.len());
    out.extend_from_slice(b);
}

fn encode(b: &Batch, out: &mut Vec<u8>) {
    put_u32(out, b.tags.len());
    for (k, v) in &b.tags {
        put_bytes(out, k.as_bytes());
        put_bytes(out, v.as_bytes());
    }
    put_u32(out, b.timestamps.len());
    for t in &b.timestamps {
        out.extend_from_slice(&t.to_le_bytes());
    }
    put_bytes(out, &b.bodies);
    put_u32(out, b.body_ends.len());
    for e in &b.body_ends {
        out.extend_from_slice(&e.to_le_bytes());
    }
    put_u32(out, b.keys.len());
    for k in &b.keys {
        put_bytes(out, k.as_bytes());
    }
    put_bytes(out, &b.values);
    put_u32(out, b.field_count());
    for v in &b.fields {
        out.extend_from_slice(&v.to_le_bytes());
    }
    put_bytes(out, &b.severities);
    put_bytes(out, &b.field_types);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
}

fn decode(raw: &[u8], format: u8) -> Option<Batch> {
    let mut r = Reader(raw);
    let mut b = Batch::default();
    for _ in 0..r.u32()? {
        let k = r.string()?;
        b.tags.push((k, r.string()?));
    }
    for _ in 0..r.u32()? {
        let t = r.take(8)?;
        b.timestamps.push(i64::from_le_bytes(t.try_into().ok()?));
    }
    b.bodies = r.bytes()?.to_vec();
    for _ in 0..r.u32()? {
        b.body_ends.push(r.u32()?);
    }
    for _ in 0..r.u32()? {
        b.keys.push(r.string()?);
    }
    b.values = r.bytes()?.to_vec();
    let fields = r.u32()? as usize;
    for _ in 0..fields.checked_mul(4)? {
        b.fields.push(r.u32()?);
    }
    if format >= 2 {
        b.severities = r.bytes()?.to_vec();
        b.field_types = r.bytes()?.to_vec();
    } else {
        b.severities = vec![0; b.timestamps.len()];
        b.field_types = vec![value::STRING; fields];
    }
    r.0.is_empty().then_some(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Batch {
        let mut b = Batch::with_tags(vec![("source.path".into(), "/a.log".into())], 2, 16);
        b.push(1, b"first line");
        b.push(2, b"second");
        b.push_typed("k", value::INT, b"42");
        b.severities[1] = 13;
        b
    }

    #[test]
    fn a_buffer_opened_early_does_not_overwrite_segments_written_since() {
        let dir = tempfile::tempdir().unwrap();
        let old = DiskBuffer::open(dir.path().join("p/0")).unwrap();
        let new = DiskBuffer::open(dir.path().join("p/0")).unwrap();
        old.write(&sample()).unwrap();
        new.rescan().unwrap();
        assert_eq!(new.size(), old.size());
        new.write(&sample()).unwrap();
        assert_eq!(new.segments().unwrap().len(), 2);
    }

    #[test]
    fn segments_round_trip_in_order_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let buffer = DiskBuffer::open(dir.path().join("p/0")).unwrap();
        let first = buffer.write(&sample()).unwrap();
        let mut other = sample();
        other.push(3, b"third");
        buffer.write(&other).unwrap();
        let reopened = DiskBuffer::open(dir.path().join("p/0")).unwrap();
        let segs = reopened.segments().unwrap();
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[0], first);
        assert_eq!(DiskBuffer::read(&segs[0]).unwrap(), sample());
        assert_eq!(DiskBuffer::read(&segs[1]).unwrap(), other);
        let third = reopened.write(&sample()).unwrap();
        assert!(third > segs[1], "new segments sort after old ones");
    }

    #[test]
    fn a_segment_of_format_1_reads_as_strings_without_severities() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = sample();
        b.field_types[0] = value::STRING;
        b.severities[1] = 0;
        let mut raw = Vec::new();
        encode(&b, &mut raw);
        // Format 1 ended after the fields.
        raw.truncate(raw.len() - (4 + b.severities.len()) - (4 + b.field_types.len()));
        let mut bytes = MAGIC.to_vec();
        bytes.push(1);
        bytes.extend(zstd::bulk::compress(&raw, 1).unwrap());
        let seg = dir.path().join("0.seg");
        std::fs::write(&seg, bytes).unwrap();
        assert_eq!(DiskBuffer::read(&seg).unwrap(), b);
    }

    #[test]
    fn a_partly_delivered_segment_is_rewritten_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let buffer = DiskBuffer::open(dir.path().join("p/0")).unwrap();
        let mut big = sample();
        for i in 0..50 {
            big.push(i, format!("event {i}").as_bytes());
        }
        let first = buffer.write(&big).unwrap();
        let second = buffer.write(&sample()).unwrap();
        let rest = big.select(&[1, 40]);
        buffer.rewrite(&first, &rest).unwrap();
        assert_eq!(buffer.segments().unwrap(), [first.clone(), second.clone()]);
        assert_eq!(DiskBuffer::read(&first).unwrap(), rest);
        let on_disk: u64 = [&first, &second]
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        assert_eq!(buffer.size(), on_disk);
    }

    #[test]
    fn corrupt_segments_are_reported_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        let buffer = DiskBuffer::open(dir.path().to_path_buf()).unwrap();
        let seg = buffer.write(&sample()).unwrap();
        let mut bytes = std::fs::read(&seg).unwrap();
        let n = bytes.len();
        bytes.truncate(n - 3);
        std::fs::write(&seg, &bytes).unwrap();
        assert!(matches!(
            DiskBuffer::read(&seg),
            Err(BufferError::Corrupt { .. })
        ));
    }
}
