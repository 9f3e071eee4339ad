//! The tailer of one input: keeps its targets (fixed, or added and removed
//! by discovery), finds their files (inotify through `notify`, plus a
//! periodic full rescan), notices rotation and truncation, reads every file
//! with new data in fair turns, drains and releases the files of removed
//! targets, and enforces the hold timeouts. Runs on its own thread until
//! told to stop.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, TryRecvError};
use tracing::{debug, info, warn};

use super::file::{Checkpoints, TailedFile};
use super::glob::PatternError;
use super::open_files::{Draining, Key, OpenFiles, is_regular};
use super::options::FileInputOptions;
use super::targets::Targets;
use super::watches::{Notification, Watches};
use super::{EventSink, InputStats};
use crate::model::target::{Target, TargetUpdate};

mod updates;

/// How long the files of a removed target are quiet at their end before
/// they are closed: a writer may still flush its last lines (an engine
/// reports a container's death before its log copier has always finished).
const REMOVED_QUIET: Duration = Duration::from_secs(1);

/// How long notifications gather after the first one wakes the tailer.
const COALESCE: Duration = Duration::from_millis(5);

/// How long `exit_on_eof` waits for discovery's first complete list.
const FIRST_SYNC_WAIT: Duration = Duration::from_secs(30);

pub(super) fn key_of(path: &std::path::Path) -> Option<Key> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Tails the files of one input.
pub struct Tailer {
    opts: FileInputOptions,
    targets: Targets,
    /// The files it reads.
    open: OpenFiles,
    /// Where discovery sends changes; `None` for a fixed set of targets.
    updates: Option<Receiver<TargetUpdate>>,
    /// Discovery's first complete list was applied (its targets were there
    /// at startup, so `start_at` applies to them).
    synced: bool,
    /// When this tailer was made (before its pipeline said it started).
    created: std::time::SystemTime,
    notifications: Receiver<Notification>,
    watches: Watches,
    stats: Arc<InputStats>,
    checkpoints: Checkpoints,
    /// How long a file renamed away stays open at its end
    /// ([`REMOVED_QUIET`]; none in a one-off run).
    rotate_wait: Duration,
    /// Set when the input must stop reading (after the current chunk).
    stop: Arc<AtomicBool>,
    /// Targets that had a file opened, or were counted missed: a
    /// `lost_if_absent` target is checked until then, once.
    settled: HashSet<Arc<str>>,
}

impl Tailer {
    /// A tailer of the fixed files of `opts.include` / `opts.exclude`;
    /// sets up file-system notifications (if the platform has none,
    /// polling alone still works).
    pub fn new(
        opts: FileInputOptions,
        stats: Arc<InputStats>,
        checkpoints: Checkpoints,
    ) -> Result<Self, PatternError> {
        let files = Target {
            id: Arc::from("files"),
            include: opts.include.clone(),
            exclude: opts.exclude.clone(),
            tags: Arc::from(Vec::new()),
            format: opts.format,
            lost_if_absent: false,
        };
        let mut t = Self::build(opts, stats, checkpoints, None);
        t.add_target(files)?;
        t.synced = true;
        Ok(t)
    }

    /// A tailer whose targets come from discovery through `updates`. It
    /// starts with the targets remembered in the checkpoint store, so files
    /// being read before a restart are resumed even before discovery
    /// answers; discovery's first `Sync` then says which still exist.
    pub fn with_discovery(
        opts: FileInputOptions,
        stats: Arc<InputStats>,
        checkpoints: Checkpoints,
        updates: Receiver<TargetUpdate>,
    ) -> Self {
        let remembered = checkpoints.store.targets(&checkpoints.input);
        let mut t = Self::build(opts, stats, checkpoints, Some(updates));
        for target in remembered {
            let id = target.id.clone();
            if let Err(e) = t.add_target(target) {
                warn!(target = %id, error = %e, "Ignoring a remembered target.");
            }
        }
        t
    }

    fn build(
        opts: FileInputOptions,
        stats: Arc<InputStats>,
        checkpoints: Checkpoints,
        updates: Option<Receiver<TargetUpdate>>,
    ) -> Self {
        let (watches, rx) = Watches::new();
        Tailer {
            opts,
            targets: Targets::default(),
            open: OpenFiles::default(),
            updates,
            synced: false,
            created: std::time::SystemTime::now(),
            notifications: rx,
            watches,
            stats,
            checkpoints,
            rotate_wait: REMOVED_QUIET,
            stop: Arc::new(AtomicBool::new(false)),
            settled: HashSet::new(),
        }
    }

    /// Opens files that match and are not open yet (and notices renames).
    fn scan(&mut self, initial: bool) {
        let started = crate::state::checkpoint::now_ms();
        self.watch_roots();
        for path in self.targets.scan() {
            self.open_if_new(path, initial);
        }
        self.checkpoints
            .store
            .note_scan(&self.checkpoints.input, started);
    }

    /// Scans the targets whose roots are at, above or below `dir` (a new
    /// directory): with a thousand pods on a node, a new pod's directory
    /// concerns its own targets, not everyone's.
    fn scan_around(&mut self, dir: &std::path::Path) {
        for path in self.targets.scan_around(dir) {
            self.open_if_new(path, false);
        }
    }

    fn open_if_new(&mut self, path: PathBuf, initial: bool) {
        let Some(key) = key_of(&path) else { return };
        if let Some(f) = self.open.files.get_mut(&key) {
            // Already tailed: under this name, or it was renamed to it.
            if f.path() != path && key_of(f.path()) != Some(key) {
                info!(from = %f.path().display(), to = %path.display(), "File was renamed; still reading it.");
                f.set_path(&path);
            }
            self.open.by_path.insert(path, key);
            return;
        }
        // Rotated away earlier and now found under a name we also read
        // (`app.log*`): follow it there, never read it twice.
        if let Some(i) = self
            .open
            .draining
            .iter()
            .position(|d| d.file.dev_ino() == key)
        {
            let Draining {
                mut file, owner, ..
            } = self.open.draining.swap_remove(i);
            info!(from = %file.path().display(), to = %path.display(), "File was renamed; still reading it.");
            file.set_path(&path);
            self.open.files.insert(key, file);
            self.open.owner.insert(key, owner);
            self.open.by_path.insert(path, key);
            self.open.dirty.insert(key);
            return;
        }
        // A new file at the path of one we read there (rotation): the old
        // one left the path; it is read on to its end from the descriptor
        // we hold (first, on every turn), and the new one is opened now,
        // before it too can be rotated away unseen.
        if let Some(&mapped) = self.open.by_path.get(&path)
            && self
                .open
                .files
                .get(&mapped)
                .is_some_and(|f| f.path() == path)
        {
            self.open
                .detach(mapped, "File was rotated; reading the old file to its end.");
        }
        let Some(t) = self.targets.of(&path).map(|i| &self.targets.get(i).target) else {
            return;
        };
        if !is_regular(&path) {
            self.open.skip(&path, &self.stats);
            return;
        }
        let (id, format, tags) = (t.id.clone(), t.format, t.tags.clone());
        let start = self.opts.start_for(
            &path,
            initial,
            self.created,
            self.checkpoints.store.previous_write_ms(),
        );
        match TailedFile::open(&path, start, &self.opts, &self.checkpoints, (format, tags)) {
            Ok((f, resumed)) => {
                info!(path = %path.display(), target = %id, offset = f.offset(), resumed, "Started tailing file.");
                let key = f.dev_ino();
                self.stats.files_opened.inc();
                self.open.dirty.insert(key);
                self.open.by_path.insert(path, key);
                self.open.files.insert(key, f);
                if !self.settled.contains(&id) {
                    self.settled.insert(id.clone());
                }
                self.open.owner.insert(key, id);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // Swapped for a FIFO or the like between the check and the open.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                self.open.skip(&path, &self.stats)
            }
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
        let data_only = matches!(
            ev.kind,
            EventKind::Modify(notify::event::ModifyKind::Data(_))
        );
        for path in ev.paths {
            if let Some(&key) = self.open.by_path.get(&path) {
                self.open.dirty.insert(key);
                if data_only {
                    // Written to: no new file here (that is a create or rename).
                    continue;
                }
            }
            if self.targets.of(&path).is_some() {
                // A new file, or a new file at a known path (rotation).
                self.open_if_new(path, false);
            } else if created && path.is_dir() {
                // A new directory may hold matching files already (mkdir -p && write).
                self.scan_around(&path);
            }
        }
    }

    /// Checks every open file against the path it was seen at: still there
    /// (then: grown, or truncated?), renamed to another matching path
    /// (keep reading it there), or gone (rotated away or deleted: read it to
    /// its end and close it). A new file at an old path is opened.
    fn check_rotation(&mut self) {
        let mut rescanned = false;
        let keys: Vec<Key> = self.open.files.keys().copied().collect();
        for key in keys {
            let Some(path) = self.open.files.get(&key).map(|f| f.path().to_path_buf()) else {
                continue;
            };
            let now_at_path = std::fs::metadata(&path).ok().map(|m| {
                use std::os::unix::fs::MetadataExt;
                ((m.dev(), m.ino()), m.len())
            });
            if let Some((k, len)) = now_at_path
                && k == key
            {
                self.open.check_size(key, len, &self.stats);
                continue;
            }
            // The path leads elsewhere now. Was the file renamed to a name we
            // also read? Look once per pass.
            if !rescanned {
                rescanned = true;
                self.scan(false);
            }
            let renamed = self.open.files.get(&key).is_some_and(|f| f.path() != path);
            if renamed {
                self.open.dirty.insert(key);
                continue;
            }
            // Gone from its path (deleted, or renamed to a name we do not
            // read): read on from the descriptor; open what is there now.
            self.open
                .detach(key, "File was rotated; reading the old file to its end.");
            if now_at_path.is_some() {
                self.open_if_new(path, false);
            }
        }
    }

    /// Closes the files of removed targets once they are read to their end
    /// and [`REMOVED_QUIET`] has passed, then forgets targets with no open
    /// file left.
    fn close_removed(&mut self, sink: &mut dyn EventSink) {
        let now = Instant::now();
        let due = self.targets.removed_before(now, REMOVED_QUIET);
        if due.is_empty() {
            return;
        }
        let busy = self.open.close_ended_of(&due, now, sink, &self.stats);
        let done: HashSet<Arc<str>> = due.difference(&busy).cloned().collect();
        let forgot = self.targets.forget(&done);
        for id in &done {
            self.settled.remove(id);
            self.checkpoints
                .store
                .forget_target(&self.checkpoints.input, id);
            self.stats.targets_removed.inc();
        }
        if forgot {
            self.watch_roots();
        }
    }

    /// Waits (up to [`FIRST_SYNC_WAIT`]) for discovery's first complete
    /// list, applying updates as they come.
    fn wait_first_sync(&mut self, stop: &AtomicBool) {
        let Some(updates) = self.updates.clone() else {
            return;
        };
        let until = Instant::now() + FIRST_SYNC_WAIT;
        while !self.synced && !stop.load(Ordering::Relaxed) && Instant::now() < until {
            match updates.recv_timeout(Duration::from_millis(100)) {
                Ok(u) => self.apply(u),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
        }
        if !self.synced {
            warn!("Discovery sent no list of targets in time; reading only remembered targets.");
        }
    }

    fn next_wake(&self, sink: &dyn EventSink, poll_at: Instant) -> Instant {
        [sink.deadline(), self.open.deadline()]
            .into_iter()
            .flatten()
            .fold(poll_at, Instant::min)
    }

    /// Runs until `stop` is set, then sends everything it holds (held
    /// partial lines stay in the file: they were not complete).
    ///
    /// With `exit_on_eof`, it instead returns once every file found at
    /// startup has been read to its end; an unterminated last line is then
    /// sent as it is.
    pub fn run(mut self, sink: &mut dyn EventSink, stop: Arc<AtomicBool>, exit_on_eof: bool) {
        self.stop = stop;
        let stop = self.stop.clone();
        self.scan(true);
        // Where each file starts is decided now: write it down at once, so a
        // crash before the first interval write does not make the next start
        // a "first start" again (and `start_at: end` skip the backlog).
        if let Err(e) = self.checkpoints.store.write() {
            warn!(error = %e, "Cannot write checkpoints.");
        }
        if exit_on_eof {
            self.rotate_wait = Duration::ZERO;
            self.wait_first_sync(&stop);
            loop {
                self.apply_pending();
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if self.open.dirty.is_empty() && self.open.draining.is_empty() {
                    break;
                }
                self.open.read_draining(
                    sink,
                    &self.stats,
                    &self.stop,
                    (self.rotate_wait, self.opts.release_deleted_after),
                );
                self.open.read_dirty(sink, &self.stats, &self.stop);
                sink.tick(Instant::now());
                let mut sel = Select::new();
                if sink.wait_room(&mut sel).is_some() {
                    let _ = sel.ready_timeout(Duration::from_millis(50));
                }
            }
            let now = Instant::now();
            self.open.flush_held(now, true, sink, &self.stats);
            sink.flush_all();
            return;
        }
        let notes = self.notifications.clone();
        let mut updates = self.updates.clone();
        let mut next_rescan = Instant::now() + self.opts.rescan_interval;
        let mut next_poll = Instant::now() + self.opts.poll_interval;
        while !stop.load(Ordering::Relaxed) {
            let draining = self.open.read_draining(
                sink,
                &self.stats,
                &self.stop,
                (self.rotate_wait, self.opts.release_deleted_after),
            );
            self.open.read_dirty(sink, &self.stats, &self.stop);
            let now = Instant::now();
            self.open.flush_held(now, false, sink, &self.stats);
            sink.tick(now);
            if (!self.open.dirty.is_empty() || draining) && sink.ready() {
                // Catching up: still take new files and renames as they
                // come, so a file rotated away meanwhile is opened first.
                self.apply_pending();
                while let Ok(ev) = notes.try_recv() {
                    if let Ok(ev) = ev {
                        self.on_notification(ev);
                    }
                }
                continue;
            }
            let wake = self.next_wake(sink, next_poll.min(next_rescan));
            let timeout = wake
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(500));
            let mut discovery_ended = false;
            let mut sel = Select::new();
            let note_op = sel.recv(&notes);
            let update_op = updates.as_ref().map(|u| sel.recv(u));
            // A full pipeline wakes the tailer when a batch leaves it.
            let _room_op = sink.wait_room(&mut sel);
            match sel.ready_timeout(timeout) {
                Ok(i) if i == note_op => match notes.try_recv() {
                    Ok(Ok(ev)) => {
                        self.on_notification(ev);
                        // Busy writers (an engine writes each line with its own
                        // write) send a notification per line: let them gather
                        // for a moment and take them in one wake-up, instead of
                        // a thread switch per line.
                        std::thread::sleep(COALESCE);
                        while let Ok(more) = notes.try_recv() {
                            if let Ok(ev) = more {
                                self.on_notification(ev);
                            }
                        }
                    }
                    Ok(Err(e)) => debug!(error = %e, "Notification error."),
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => std::thread::sleep(timeout),
                },
                Ok(i) if Some(i) == update_op => match updates.as_ref().map(|u| u.try_recv()) {
                    Some(Ok(update)) => {
                        self.apply(update);
                        self.apply_pending();
                    }
                    // Discovery ended: the targets stay as they are.
                    Some(Err(TryRecvError::Disconnected)) => discovery_ended = true,
                    _ => {}
                },
                // Room in the pipeline, or the timeout: read on.
                _ => {}
            }
            if discovery_ended {
                updates = None;
            }
            let now = Instant::now();
            if now >= next_poll {
                self.check_rotation();
                self.close_removed(sink);
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
