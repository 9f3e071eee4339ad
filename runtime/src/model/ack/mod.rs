//! Acknowledgements: which bytes of a file are safely delivered.
//!
//! Every batch sent downstream registers with its file's [`FileTracker`]
//! and carries an [`AckRef`]. The ref is cloned to every flusher; when the
//! last clone is dropped the batch is complete: delivered, unless some
//! holder called [`AckRef::fail`]. The tracker advances its committed offset
//! in read order only: a failed batch holds the committed offset where it is
//! (its bytes will be read again after a restart: duplicates, never loss).
//!
//! Owns no I/O; `checkpoint` reads the committed offsets. Knows nothing of
//! plugins or Wasm.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Identity of a file, independent of its path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// First 8 bytes of the SHA-256 of the file's first `fingerprint_len` bytes.
    pub fingerprint: u64,
    /// How many leading bytes the fingerprint covers (at most 1 KiB).
    pub fingerprint_len: u32,
    /// Birth time in ns since the epoch (statx btime), 0 where the file
    /// system does not record it. A reused inode has a new birth time.
    pub born_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    InFlight,
    Delivered,
    Failed,
}

#[derive(Debug)]
struct State {
    identity: FileIdentity,
    path: String,
    next_seq: u64,
    /// Registered batches not yet committed, in read order: (seq, end offset, status).
    pending: VecDeque<(u64, u64, Status)>,
    committed: u64,
    /// End of the last batch registered (bytes read and sent on).
    registered: u64,
    /// A batch failed: nothing after it may be committed in this run.
    blocked: bool,
    /// The tailer has closed the file.
    closed: bool,
    /// The file was deleted: its inode may be reused by another file.
    deleted: bool,
}

/// The acknowledgement state of one open file (one generation of it: a
/// truncated file gets a new tracker).
#[derive(Debug)]
pub struct FileTracker {
    state: Mutex<State>,
}

impl FileTracker {
    /// A tracker whose bytes before `offset` are already delivered.
    pub fn new(identity: FileIdentity, path: &str, offset: u64) -> Arc<Self> {
        Arc::new(FileTracker {
            state: Mutex::new(State {
                identity,
                path: path.to_owned(),
                next_seq: 0,
                pending: VecDeque::new(),
                committed: offset,
                registered: offset,
                blocked: false,
                closed: false,
                deleted: false,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a batch whose last event ends at byte `end`.
    pub fn register(self: &Arc<Self>, end: u64) -> AckRef {
        let mut s = self.lock();
        let seq = s.next_seq;
        s.next_seq += 1;
        s.pending.push_back((seq, end, Status::InFlight));
        s.registered = s.registered.max(end);
        AckRef(Arc::new(Inner {
            tracker: self.clone(),
            seq,
            failed: AtomicBool::new(false),
        }))
    }

    fn complete(&self, seq: u64, delivered: bool) {
        let mut s = self.lock();
        if let Some(entry) = s.pending.iter_mut().find(|(q, _, _)| *q == seq) {
            entry.2 = if delivered {
                Status::Delivered
            } else {
                Status::Failed
            };
        }
        while let Some(&(_, end, status)) = s.pending.front() {
            match status {
                Status::Delivered if !s.blocked => {
                    s.committed = end;
                    s.pending.pop_front();
                }
                Status::Failed => {
                    s.blocked = true;
                    break;
                }
                _ => break,
            }
        }
    }

    /// Bytes of the file delivered, counted from its start.
    pub fn committed(&self) -> u64 {
        self.lock().committed
    }

    /// The file's identity (its fingerprint may grow while the file is young).
    pub fn identity(&self) -> FileIdentity {
        self.lock().identity
    }

    /// Updates the fingerprint once more of the file's first bytes exist.
    pub fn set_identity(&self, identity: FileIdentity) {
        self.lock().identity = identity;
    }

    /// The path the file was last seen at.
    pub fn path(&self) -> String {
        self.lock().path.clone()
    }

    /// End of the last batch sent on: where reading continues if the same
    /// file is found again in this run.
    pub fn registered(&self) -> u64 {
        self.lock().registered
    }

    /// Records that the tailer closed the file (it may be found again).
    pub fn set_closed(&self, closed: bool) {
        self.lock().closed = closed;
    }

    /// Records that the file was deleted (its tracker must not be continued
    /// by a new file that reuses the inode).
    pub fn set_deleted(&self) {
        self.lock().deleted = true;
    }

    /// True once the file was seen deleted.
    pub fn deleted(&self) -> bool {
        self.lock().deleted
    }

    /// Closed by the tailer and nothing in flight: safe to forget once
    /// its offset is written down.
    pub fn finished(&self) -> bool {
        let s = self.lock();
        s.closed && s.pending.is_empty()
    }

    /// Batches registered but not complete.
    pub fn in_flight(&self) -> usize {
        self.lock().pending.len()
    }

    /// Batches registered whose holders have not all let go yet (failed
    /// ones, and those behind one, are settled but stay in flight).
    pub fn unsettled(&self) -> usize {
        self.lock()
            .pending
            .iter()
            .filter(|(_, _, s)| *s == Status::InFlight)
            .count()
    }
}

#[derive(Debug)]
struct Inner {
    tracker: Arc<FileTracker>,
    seq: u64,
    failed: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.tracker
            .complete(self.seq, !self.failed.load(Ordering::Relaxed));
    }
}

/// The acknowledgement of one batch; clone it for every holder.
#[derive(Debug, Clone)]
pub struct AckRef(Arc<Inner>);

impl AckRef {
    /// Marks the batch as not delivered: its bytes stay uncommitted.
    pub fn fail(&self) {
        self.0.failed.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> Arc<FileTracker> {
        let id = FileIdentity {
            dev: 1,
            ino: 2,
            fingerprint: 3,
            fingerprint_len: 4,
            born_ns: 0,
        };
        FileTracker::new(id, "/x.log", 10)
    }

    #[test]
    fn offsets_commit_in_read_order_only() {
        let t = tracker();
        let a = t.register(20);
        let b = t.register(30);
        let c = t.register(40);
        drop(b);
        assert_eq!(t.committed(), 10, "b is done but a is not");
        drop(a);
        assert_eq!(t.committed(), 30);
        drop(c);
        assert_eq!(t.committed(), 40);
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn a_batch_is_complete_when_every_clone_is_dropped() {
        let t = tracker();
        let a = t.register(20);
        let for_second_flusher = a.clone();
        drop(a);
        assert_eq!(t.committed(), 10);
        drop(for_second_flusher);
        assert_eq!(t.committed(), 20);
    }

    #[test]
    fn a_failed_batch_holds_the_commit_point() {
        let t = tracker();
        let a = t.register(20);
        let b = t.register(30);
        let c = t.register(40);
        drop(a);
        b.fail();
        drop(b);
        drop(c);
        assert_eq!(t.committed(), 20, "nothing after a failed batch commits");
        let d = t.register(50);
        assert_eq!((t.in_flight(), t.unsettled()), (3, 1));
        drop(d);
        assert_eq!(t.committed(), 20);
        assert_eq!(
            (t.in_flight(), t.unsettled()),
            (3, 0),
            "settled, not committed"
        );
    }
}
