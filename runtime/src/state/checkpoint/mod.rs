//! Checkpoints: the delivered offset of every file of every input, kept in
//! `<data_dir>/checkpoints.json` (format in `docs/delivery.md`), written
//! atomically (temp file, fsync, rename, fsync of the directory) on an
//! interval and at shutdown.
//!
//! An entry is keyed by (input, device, inode) and carries the file's
//! fingerprint, so a reused inode is recognised as a new file. Entries of
//! files not seen for `stale_after` are dropped.
//!
//! It also remembers the targets discovery gave each input (e.g. a
//! container and the host paths of its logs), so that after a restart the
//! tailer resumes their files before discovery answers, and drains those
//! whose container ended while Gleaner was down.
//!
//! Reads offsets from `ack::FileTracker`s; knows nothing of plugins,
//! Docker or Kubernetes (a target is plain data to it).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::model::ack::{FileIdentity, FileTracker};
use crate::model::target::Target;
use crate::telemetry::Counter;

mod created;
mod lock;
mod writer;
pub use created::Created;
pub use lock::{DataDirLock, LOCK_FILE, LockError};
pub use writer::Writer;

/// The format version this build writes and reads.
pub const VERSION: u32 = 1;

/// The file name under the data dir.
pub const FILE_NAME: &str = "checkpoints.json";

/// The checkpoint file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointFile {
    /// Format version ([`VERSION`]).
    pub version: u32,
    /// When it was written, ms since the epoch.
    pub written_at_ms: u64,
    /// When the last full scan of the inputs began (the earliest over all
    /// inputs), ms since the epoch: files modified after it may not have
    /// been seen. 0 in files written before this field existed.
    #[serde(default)]
    pub scanned_at_ms: u64,
    /// One entry per known file per input.
    pub files: Vec<Entry>,
    /// Targets discovery gave each input and that are not yet drained.
    #[serde(default)]
    pub targets: Vec<TargetRecord>,
}

/// A target of an input, as discovery last described it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetRecord {
    /// `<pipeline>/<input index>`.
    pub input: String,
    /// The target.
    pub target: Target,
}

/// One file of one input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// `<pipeline>/<input index>`.
    pub input: String,
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Fingerprint (hex of the first 8 bytes of the SHA-256 of the first
    /// `fingerprint_len` bytes).
    pub fingerprint: String,
    /// Bytes the fingerprint covers.
    pub fingerprint_len: u32,
    /// Birth time of the file, ns since the epoch (0 if unknown).
    #[serde(default)]
    pub born_ns: u64,
    /// Bytes delivered from the start of the file.
    pub offset: u64,
    /// Where the file was last seen (informational).
    pub path: String,
    /// When this entry last changed or its file was last seen, ms since the epoch.
    pub updated_at_ms: u64,
}

impl Entry {
    /// The identity this entry describes.
    pub fn identity(&self) -> Option<FileIdentity> {
        Some(FileIdentity {
            dev: self.dev,
            ino: self.ino,
            fingerprint: u64::from_str_radix(&self.fingerprint, 16).ok()?,
            fingerprint_len: self.fingerprint_len,
            born_ns: self.born_ns,
        })
    }
}

/// A checkpoint file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Read or write failure.
    #[error("checkpoint file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a checkpoint file this build understands.
    #[error(
        "checkpoint file {path} is not valid: {message}; move it away to start from `start_at`"
    )]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

type Key = (String, u64, u64);

/// Entries as last written or loaded, and the trackers that move them.
type State = (HashMap<Key, Entry>, HashMap<Key, Arc<FileTracker>>);

/// Known offsets plus the live trackers that move them.
#[derive(Debug)]
pub struct CheckpointStore {
    path: PathBuf,
    stale_after: Duration,
    /// When the file read at startup was written (None on a first start).
    previous_write_ms: Option<u64>,
    state: Mutex<State>,
    /// Serialises writers of the file (interval thread, tailers at start).
    writing: Mutex<()>,
    /// Per input: when its last full scan began.
    scans: Mutex<HashMap<String, u64>>,
    /// Targets by (input, target id).
    targets: Mutex<std::collections::BTreeMap<(String, String), Target>>,
    /// Failed writes of the file.
    pub write_errors: Counter,
    /// False while the last write failed (the agent is then not ready).
    writable: std::sync::atomic::AtomicBool,
}

impl CheckpointStore {
    /// Loads `<data_dir>/checkpoints.json` if it exists.
    pub fn open(data_dir: &Path, stale_after: Duration) -> Result<Arc<Self>, CheckpointError> {
        let path = data_dir.join(FILE_NAME);
        let mut entries = HashMap::new();
        let mut targets = std::collections::BTreeMap::new();
        let mut previous_write_ms = None;
        match std::fs::read(&path) {
            Ok(bytes) => {
                let file: CheckpointFile =
                    serde_json::from_slice(&bytes).map_err(|e| CheckpointError::Invalid {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                if file.version != VERSION {
                    return Err(CheckpointError::Invalid {
                        path,
                        message: format!(
                            "version {} (this build reads version {VERSION})",
                            file.version
                        ),
                    });
                }
                previous_write_ms = Some(if file.scanned_at_ms > 0 {
                    file.scanned_at_ms
                } else {
                    file.written_at_ms
                });
                for e in file.files {
                    entries.insert((e.input.clone(), e.dev, e.ino), e);
                }
                for r in file.targets {
                    targets.insert((r.input, r.target.id.to_string()), r.target);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(CheckpointError::Io { path, source }),
        }
        Ok(Arc::new(CheckpointStore {
            path,
            stale_after,
            previous_write_ms,
            state: Mutex::new((entries, HashMap::new())),
            writing: Mutex::new(()),
            scans: Mutex::new(HashMap::new()),
            targets: Mutex::new(targets),
            write_errors: Counter::default(),
            writable: std::sync::atomic::AtomicBool::new(true),
        }))
    }

    /// When the checkpoint file found at startup was written.
    /// When the previous run last began a full scan (or wrote, for files
    /// without that field): an unknown file modified after it appeared
    /// while Gleaner was not looking.
    pub fn previous_write_ms(&self) -> Option<u64> {
        self.previous_write_ms
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry of (input, dev, ino), if any.
    pub fn lookup(&self, input: &str, dev: u64, ino: u64) -> Option<Entry> {
        let key = (input.to_owned(), dev, ino);
        let state = self.lock();
        // A file seen deleted in this run says nothing about a new file
        // that reuses its inode.
        if state.1.get(&key).is_some_and(|t| t.deleted()) {
            return None;
        }
        state.0.get(&key).cloned()
    }

    /// The live tracker of (input, dev, ino) in this run, if any: a file
    /// closed and found again continues with it.
    pub fn live(&self, input: &str, dev: u64, ino: u64) -> Option<Arc<FileTracker>> {
        self.lock()
            .1
            .get(&(input.to_owned(), dev, ino))
            .filter(|t| !t.deleted())
            .cloned()
    }

    fn targets_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<(String, String), Target>> {
        self.targets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers (or updates) a target of `input`.
    pub fn remember_target(&self, input: &str, target: &Target) {
        self.targets_lock()
            .insert((input.to_owned(), target.id.to_string()), target.clone());
    }

    /// Forgets a target of `input` (its files were drained and closed).
    pub fn forget_target(&self, input: &str, id: &str) {
        self.targets_lock()
            .remove(&(input.to_owned(), id.to_owned()));
    }

    /// The targets remembered for `input`.
    pub fn targets(&self, input: &str) -> Vec<Target> {
        self.targets_lock()
            .iter()
            .filter(|((i, _), _)| i == input)
            .map(|(_, t)| t.clone())
            .collect()
    }

    /// Records that `input` began a full scan at `started_ms`.
    pub fn note_scan(&self, input: &str, started_ms: u64) {
        self.scans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(input.to_owned(), started_ms);
    }

    /// From now on, `tracker`'s committed offset is the checkpoint of its
    /// file in `input` (replacing an earlier tracker of the same file).
    pub fn track(&self, input: &str, tracker: &Arc<FileTracker>) {
        let id = tracker.identity();
        self.lock()
            .1
            .insert((input.to_owned(), id.dev, id.ino), tracker.clone());
    }

    /// Every live tracker, with its input (for progress and lag reports).
    pub fn live_files(&self) -> Vec<(String, Arc<FileTracker>)> {
        self.lock()
            .1
            .iter()
            .filter(|(_, t)| !t.finished())
            .map(|((input, _, _), t)| (input.clone(), t.clone()))
            .collect()
    }

    /// Folds live trackers into the entries and drops stale ones.
    fn snapshot(&self) -> CheckpointFile {
        let now = now_ms();
        let mut guard = self.lock();
        let (entries, live) = &mut *guard;
        let deleted_done: Vec<Key> = live
            .iter()
            .filter(|(_, t)| t.deleted() && t.finished())
            .map(|(k, _)| k.clone())
            .collect();
        live.retain(|key, tracker| {
            let id = tracker.identity();
            let offset = tracker.committed();
            entries.insert(
                key.clone(),
                Entry {
                    input: key.0.clone(),
                    dev: id.dev,
                    ino: id.ino,
                    fingerprint: format!("{:016x}", id.fingerprint),
                    fingerprint_len: id.fingerprint_len,
                    born_ns: id.born_ns,
                    offset,
                    path: tracker.path(),
                    updated_at_ms: now,
                },
            );
            !tracker.finished()
        });
        // Deleted files whose batches are all complete are forgotten.
        entries.retain(|key, _| !deleted_done.contains(key));
        let stale_ms = self.stale_after.as_millis() as u64;
        entries.retain(|key, e| {
            live.contains_key(key) || now.saturating_sub(e.updated_at_ms) < stale_ms
        });
        let mut files: Vec<Entry> = entries.values().cloned().collect();
        files.sort_by(|a, b| (&a.input, &a.path, a.ino).cmp(&(&b.input, &b.path, b.ino)));
        CheckpointFile {
            version: VERSION,
            written_at_ms: now,
            scanned_at_ms: self
                .scans
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .copied()
                .min()
                .unwrap_or(now),
            files,
            targets: self
                .targets_lock()
                .iter()
                .map(|((input, _), target)| TargetRecord {
                    input: input.clone(),
                    target: target.clone(),
                })
                .collect(),
        }
    }

    /// Writes the checkpoint file atomically. A failed write leaves the
    /// previous file in place (so a restart still resumes from it), is
    /// counted, and marks the store not writable until a write succeeds.
    pub fn write(&self) -> Result<(), CheckpointError> {
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let file = self.snapshot();
        let io = |source| CheckpointError::Io {
            path: self.path.clone(),
            source,
        };
        let result = serde_json::to_vec_pretty(&file)
            .map_err(std::io::Error::other)
            .and_then(|bytes| write_atomically(&self.path, &bytes))
            .map_err(io);
        let ok = result.is_ok();
        if !ok {
            self.write_errors.inc();
        }
        self.writable
            .store(ok, std::sync::atomic::Ordering::Relaxed);
        result
    }

    /// Checks that a checkpoint file can be written now, without replacing
    /// the one there: writes what would be written to a probe file beside
    /// it (synced), then removes it.
    pub fn probe_write(&self) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.snapshot()).map_err(std::io::Error::other)?;
        let probe = self.path.with_extension("probe");
        let result = (|| {
            let mut f = std::fs::File::create(&probe)?;
            f.write_all(&bytes)?;
            // Room for the file to grow a little before the next start.
            f.write_all(&[b' '; 4096])?;
            f.sync_all()
        })();
        let _ = std::fs::remove_file(&probe);
        result
    }

    /// False while the last write of the checkpoint file failed.
    pub fn writable(&self) -> bool {
        self.writable.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Writes `bytes` to `path` via a temp file, fsync and rename, then fsyncs
/// the directory so the rename itself is durable.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_offsets_survive_a_write_and_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), Duration::from_secs(3600)).unwrap();
        assert_eq!(store.previous_write_ms(), None);
        let id = FileIdentity {
            dev: 7,
            ino: 42,
            fingerprint: 0xabcdef,
            fingerprint_len: 1024,
            born_ns: 0,
        };
        let tracker = FileTracker::new(id, "/var/log/a.log", 0);
        store.track("p/0", &tracker);
        drop(tracker.register(123));
        store.write().unwrap();

        let again = CheckpointStore::open(dir.path(), Duration::from_secs(3600)).unwrap();
        assert!(again.previous_write_ms().is_some());
        let e = again.lookup("p/0", 7, 42).unwrap();
        assert_eq!(
            (e.offset, e.fingerprint_len, e.path.as_str()),
            (123, 1024, "/var/log/a.log")
        );
        assert_eq!(e.identity(), Some(id));
        assert_eq!(again.lookup("p/1", 7, 42), None, "inputs are kept apart");
    }

    #[test]
    fn stale_entries_are_dropped_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), Duration::ZERO).unwrap();
        let id = FileIdentity {
            dev: 1,
            ino: 1,
            fingerprint: 1,
            fingerprint_len: 1,
            born_ns: 0,
        };
        let live = FileTracker::new(id, "/live", 5);
        store.track("p/0", &live);
        let gone = FileTracker::new(FileIdentity { ino: 2, ..id }, "/gone", 9);
        store.track("p/0", &gone);
        store.write().unwrap();
        gone.set_closed(true);
        store.write().unwrap();
        store.write().unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        let file: CheckpointFile = serde_json::from_str(&text).unwrap();
        assert_eq!(
            file.files
                .iter()
                .map(|e| e.path.as_str())
                .collect::<Vec<_>>(),
            vec!["/live"]
        );
    }

    #[test]
    fn an_unknown_version_is_refused_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            r#"{"version":99,"written_at_ms":0,"files":[]}"#,
        )
        .unwrap();
        let e = CheckpointStore::open(dir.path(), Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains("version 99"), "{e}");
    }

    #[test]
    fn targets_are_remembered_per_input_until_forgotten_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), Duration::from_secs(3600)).unwrap();
        let target = |id: &str| Target {
            id: Arc::from(id),
            include: vec![format!("/var/lib/docker/containers/{id}/{id}-json.log")],
            exclude: Vec::new(),
            tags: Arc::from(vec![("container.name".to_owned(), id.to_owned())]),
            format: crate::model::target::Format::DockerJson,
            lost_if_absent: true,
        };
        store.remember_target("c/0", &target("a"));
        store.remember_target("c/0", &target("b"));
        store.remember_target("other/0", &target("a"));
        store.forget_target("c/0", "a");
        store.write().unwrap();

        let again = CheckpointStore::open(dir.path(), Duration::from_secs(3600)).unwrap();
        assert_eq!(again.targets("c/0"), vec![target("b")]);
        assert_eq!(again.targets("other/0"), vec![target("a")]);
        assert!(again.targets("nothing/0").is_empty());
    }
}
