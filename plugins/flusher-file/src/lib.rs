//! `file`: appends each event as one JSON line to a file inside a granted
//! directory, rotating it by size.
//!
//! Config:
//! - `path` (required): the file, inside one of `grants.dirs` (relative
//!   paths are relative to the config file's directory);
//! - `max_bytes`: rotate when the file would grow past this (default 100 MiB);
//! - `max_files`: rotated files kept as `path.1` (newest) … `path.N`
//!   (default 5; the oldest is deleted).
//!
//! Each batch is written with one `write` call, so a batch is never split
//! across two files.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;

use gleaner_sdk::{Batch, FlushError, Flusher};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    path: PathBuf,
    #[serde(default = "default_max_bytes")]
    max_bytes: u64,
    #[serde(default = "default_max_files")]
    max_files: u32,
}

fn default_max_bytes() -> u64 {
    100 * 1024 * 1024
}
fn default_max_files() -> u32 {
    5
}

/// The flusher.
pub struct FileFlusher {
    config: Config,
    file: Option<File>,
    size: u64,
    buf: Vec<u8>,
}

impl FileFlusher {
    fn rotated(&self, n: u32) -> PathBuf {
        let mut p = self.config.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn open(&mut self) -> std::io::Result<()> {
        if self.file.is_none() {
            let mut f = OpenOptions::new()
                .create(true)
                .read(true)
                .write(true)
                .truncate(false)
                .open(&self.config.path)?;
            self.size = f.metadata()?.len();
            // A crash mid-write leaves a torn last line: end it, so the
            // records written from now on stay whole.
            if self.size > 0 {
                use std::io::{Read, Seek, SeekFrom};
                let mut last = [0u8; 1];
                f.seek(SeekFrom::Start(self.size - 1))?;
                f.read_exact(&mut last)?;
                if last[0] != b'\n' {
                    write_all_at(&f, b"\n", self.size)?;
                    self.size += 1;
                    gleaner_sdk::host::counter_add("torn_lines_ended", 1);
                }
            }
            self.file = Some(f);
        }
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let _ = std::fs::remove_file(self.rotated(self.config.max_files));
        for n in (1..self.config.max_files).rev() {
            let from = self.rotated(n);
            if from.exists() {
                std::fs::rename(&from, self.rotated(n + 1))?;
            }
        }
        if self.config.max_files > 0 {
            std::fs::rename(&self.config.path, self.rotated(1))?;
        } else {
            std::fs::remove_file(&self.config.path)?;
        }
        gleaner_sdk::host::counter_add("rotations", 1);
        self.open()
    }

    fn write_batch(&mut self) -> std::io::Result<()> {
        self.open()?;
        // Where the file ends now: another writer (the previous version of
        // this pipeline, during a reload) may have added to it since it
        // was opened.
        if let Some(f) = &self.file {
            self.size = f.metadata()?.len();
        }
        if self.size > 0 && self.size + self.buf.len() as u64 > self.config.max_bytes {
            self.rotate()?;
        }
        if let Some(f) = &self.file {
            write_all_at(f, &self.buf, self.size)?;
            self.size += self.buf.len() as u64;
        }
        Ok(())
    }
}

/// Writes all of `buf` at `offset` (the file's end). Positional writes are one host call per batch, done on
/// the calling thread; appending through a WASI output stream instead
/// costs a hop to the host's blocking-task pool per 64 KiB.
fn write_all_at(f: &File, mut buf: &[u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    while !buf.is_empty() {
        let at = i64::try_from(offset).map_err(std::io::Error::other)?;
        // SAFETY: `f` is an open file for the whole call and `buf` is a
        // valid slice of `buf.len()` bytes.
        let n = unsafe { libc::pwrite(f.as_raw_fd(), buf.as_ptr().cast(), buf.len(), at) };
        match n {
            n if n > 0 => {
                buf = &buf[n as usize..];
                offset += n as u64;
            }
            0 => return Err(std::io::ErrorKind::WriteZero.into()),
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

impl Flusher for FileFlusher {
    fn init(config: &str) -> Result<Self, String> {
        let mut config: Config = gleaner_sdk::parse_config(config)?;
        config.path = gleaner_sdk::resolve_path(&config.path);
        if config.max_bytes == 0 {
            return Err("max_bytes: must be at least 1".into());
        }
        let mut f = FileFlusher {
            config,
            file: None,
            size: 0,
            buf: Vec::new(),
        };
        // Check the file can be reached, but create nothing yet: a config
        // refused for another reason must leave no file behind. An existing
        // file is opened now; a new one on the first batch.
        let reachable = if f.config.path.exists() {
            f.open()
        } else {
            let dir = f
                .config
                .path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            std::fs::read_dir(dir).map(drop)
        };
        reachable.map_err(|e| {
            format!(
                "path: cannot open {} ({e}); is its directory listed in grants.dirs?",
                f.config.path.display()
            )
        })?;
        Ok(f)
    }

    fn flush(&mut self, input: Batch) -> Result<(), FlushError> {
        self.buf.clear();
        gleaner_sdk::json::write_ndjson(&input, &mut self.buf);
        self.write_batch().map_err(|e| {
            // Reopen on the next attempt: the file may have been removed.
            self.file = None;
            FlushError::Retryable(format!("cannot write {}: {e}", self.config.path.display()))
        })
    }
}

gleaner_sdk::export_flusher!(FileFlusher);

#[cfg(test)]
mod tests {
    use gleaner_sdk::testing::batch_of_lines;

    use super::*;

    #[test]
    fn files_rotate_by_size_and_keep_max_files() {
        let dir = std::env::temp_dir().join(format!("gleaner-file-flusher-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.ndjson");
        let cfg = format!(
            r#"{{"path":{:?},"max_bytes":300,"max_files":2}}"#,
            path.display().to_string()
        );
        let mut f = FileFlusher::init(&cfg).unwrap();
        for i in 0..5 {
            let line = format!("line {i} {}", "x".repeat(100));
            f.flush(batch_of_lines(&[&line])).unwrap();
        }
        let lines = |p: &std::path::Path| {
            std::fs::read_to_string(p)
                .map(|s| s.lines().count())
                .unwrap_or(0)
        };
        // ~180 bytes per event: one event per file; current + 2 rotated kept.
        assert_eq!(lines(&path), 1);
        assert_eq!(lines(&dir.join("out.ndjson.1")), 1);
        assert_eq!(lines(&dir.join("out.ndjson.2")), 1);
        assert!(!dir.join("out.ndjson.3").exists());
        assert!(std::fs::read_to_string(&path).unwrap().contains("line 4"));
        assert!(
            std::fs::read_to_string(dir.join("out.ndjson.2"))
                .unwrap()
                .contains("line 2")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn init_creates_nothing_and_the_first_batch_creates_the_file() {
        let dir = std::env::temp_dir().join(format!("gleaner-file-init-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.ndjson");
        let cfg = format!(r#"{{"path":{:?}}}"#, path.display().to_string());
        let mut f = FileFlusher::init(&cfg).unwrap();
        assert!(!path.exists(), "init must not create the file");
        f.flush(batch_of_lines(&["one"])).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
        let missing = format!(
            r#"{{"path":{:?}}}"#,
            dir.join("no/such/out").display().to_string()
        );
        let err = FileFlusher::init(&missing).err().unwrap();
        assert!(err.contains("grants.dirs"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
