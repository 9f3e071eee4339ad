//! The tailer of one input: keeps its targets (fixed, or added and removed
//! by discovery), finds their files (inotify through `notify`, plus a
//! periodic full rescan), notices rotation and truncation, reads every file
//! with new data in fair turns, drains and releases the files of removed
//! targets, and enforces the hold timeouts. Runs on its own thread until
//! told to stop.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select};
use notify::{RecursiveMode, Watcher};
use tracing::{debug, info, warn};

use super::file::{Checkpoints, TailedFile};
use super::glob::{PathMatcher, PatternError};
use super::options::{FileInputOptions, StartAt};
use super::{EventSink, InputStats};
use crate::model::target::{Target, TargetUpdate};

/// Bytes read from one file before the others get a turn.
const READ_BUDGET: usize = 4 * 1024 * 1024;
/// Size of the read buffer.
const READ_BUF: usize = 256 * 1024;

/// (device, inode).
type Key = (u64, u64);

/// How long the files of a removed target are quiet at their end before
/// they are closed: a writer may still flush its last lines (an engine
/// reports a container's death before its log copier has always finished).
const REMOVED_QUIET: Duration = Duration::from_secs(1);

/// How long notifications gather after the first one wakes the tailer.
const COALESCE: Duration = Duration::from_millis(5);

/// How long `exit_on_eof` waits for discovery's first complete list.
const FIRST_SYNC_WAIT: Duration = Duration::from_secs(30);

/// A file that left its path (renamed away or deleted), still read to its
/// end: its descriptor is held, so a rename or delete loses nothing.
struct Draining {
    file: TailedFile,
    /// The target it was read for.
    owner: Arc<str>,
    /// When it left its path.
    since: Instant,
}

/// One target and its compiled patterns.
struct TargetState {
    target: Target,
    matcher: PathMatcher,
    /// When discovery removed it; its files are then drained and closed.
    removed_at: Option<Instant>,
}

/// True if `path` leads to a regular file (opening a FIFO would block).
fn is_regular(path: &std::path::Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_file())
}

fn key_of(path: &std::path::Path) -> Option<Key> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Tails the files of one input.
pub struct Tailer {
    opts: FileInputOptions,
    targets: Vec<TargetState>,
    /// Where discovery sends changes; `None` for a fixed set of targets.
    updates: Option<Receiver<TargetUpdate>>,
    /// Discovery's first complete list was applied (its targets were there
    /// at startup, so `start_at` applies to them).
    synced: bool,
    /// When this tailer was made (before its pipeline said it started).
    created: std::time::SystemTime,
    /// The target each open file belongs to.
    owner: HashMap<Key, Arc<str>>,
    /// Targets by the literal directories their patterns start from, so a
    /// path is matched against the few targets above it, not all of them.
    by_root: HashMap<PathBuf, Vec<usize>>,
    /// Open files by (device, inode): a path is only where a file was seen.
    files: HashMap<Key, TailedFile>,
    /// Files no longer at the path they were read at (rotated away or
    /// deleted), read on to their end.
    draining: Vec<Draining>,
    /// Paths of non-regular files (FIFOs, sockets, devices) already
    /// warned about: they are skipped, never opened.
    skipped: HashSet<PathBuf>,
    /// Every matching path seen, and the file it led to.
    by_path: HashMap<PathBuf, Key>,
    dirty: HashSet<Key>,
    notifications: Receiver<notify::Result<notify::Event>>,
    watcher: Option<notify::RecommendedWatcher>,
    watched: HashSet<PathBuf>,
    stats: Arc<InputStats>,
    checkpoints: Checkpoints,
    /// How long a file renamed away stays open at its end
    /// ([`REMOVED_QUIET`]; none in a one-off run).
    rotate_wait: Duration,
    /// Set when the input must stop reading (after the current chunk).
    stop: Arc<AtomicBool>,
    buf: Vec<u8>,
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
        Tailer {
            opts,
            targets: Vec::new(),
            updates,
            synced: false,
            created: std::time::SystemTime::now(),
            owner: HashMap::new(),
            by_root: HashMap::new(),
            files: HashMap::new(),
            draining: Vec::new(),
            skipped: HashSet::new(),
            by_path: HashMap::new(),
            dirty: HashSet::new(),
            notifications: rx,
            watcher,
            watched: HashSet::new(),
            stats,
            checkpoints,
            rotate_wait: REMOVED_QUIET,
            stop: Arc::new(AtomicBool::new(false)),
            buf: vec![0; READ_BUF],
        }
    }

    /// Adds `target`, or replaces the one with its id (it is live again).
    fn add_target(&mut self, target: Target) -> Result<usize, PatternError> {
        let matcher = PathMatcher::new(&target.include, &target.exclude)?;
        if self.updates.is_some() {
            self.checkpoints
                .store
                .remember_target(&self.checkpoints.input, &target);
        }
        if let Some(i) = self.targets.iter().position(|t| t.target.id == target.id) {
            if self.targets[i].target.tags != target.tags {
                for (key, owner) in &self.owner {
                    if *owner == target.id
                        && let Some(f) = self.files.get_mut(key)
                    {
                        f.set_tags(target.tags.clone());
                    }
                }
            }
            let t = &mut self.targets[i];
            let moved = t.target.include != target.include || t.target.exclude != target.exclude;
            t.target = target;
            t.matcher = matcher;
            t.removed_at = None;
            if moved {
                self.reindex();
            }
            return Ok(i);
        }
        debug!(target = %target.id, include = ?target.include, "Added target.");
        self.stats.targets_added.inc();
        let i = self.targets.len();
        for root in matcher.watch_roots() {
            self.by_root.entry(root).or_default().push(i);
        }
        self.targets.push(TargetState {
            target,
            matcher,
            removed_at: None,
        });
        Ok(i)
    }

    /// Rebuilds `by_root` after targets were dropped (indices moved).
    fn reindex(&mut self) {
        self.by_root.clear();
        for (i, t) in self.targets.iter().enumerate() {
            for root in t.matcher.watch_roots() {
                self.by_root.entry(root).or_default().push(i);
            }
        }
    }

    fn remove_target(&mut self, id: &str) {
        if let Some(t) = self.targets.iter_mut().find(|t| &*t.target.id == id)
            && t.removed_at.is_none()
        {
            debug!(target = %id, "Target removed; reading its files to their end.");
            t.removed_at = Some(Instant::now());
            // Read what is left at once.
            for (key, owner) in &self.owner {
                if &**owner == id {
                    self.dirty.insert(*key);
                }
            }
        }
    }

    fn apply(&mut self, update: TargetUpdate) {
        match update {
            TargetUpdate::Added(target) => self.add_and_scan(target, false),
            TargetUpdate::Removed(id) => self.remove_target(&id),
            TargetUpdate::Sync(all) => {
                let initial = !self.synced;
                self.synced = true;
                let keep: HashSet<Arc<str>> = all.iter().map(|t| t.id.clone()).collect();
                let gone: Vec<Arc<str>> = self
                    .targets
                    .iter()
                    .filter(|t| !keep.contains(&t.target.id))
                    .map(|t| t.target.id.clone())
                    .collect();
                for id in gone {
                    self.remove_target(&id);
                }
                // Add all, watch once, then open what they match (a node's
                // whole list can hold a thousand targets).
                let mut added = Vec::new();
                for target in all {
                    let id = target.id.clone();
                    match self.add_target(target) {
                        Ok(i) => added.push(i),
                        Err(e) => {
                            warn!(target = %id, error = %e, "Ignoring a target with invalid patterns.")
                        }
                    }
                }
                self.watch_roots();
                for i in added {
                    for path in self.targets[i].matcher.scan() {
                        self.open_if_new(path, initial);
                    }
                }
            }
        }
    }

    fn add_and_scan(&mut self, target: Target, initial: bool) {
        let id = target.id.clone();
        match self.add_target(target) {
            Ok(i) => {
                self.watch_target(i);
                for path in self.targets[i].matcher.scan() {
                    self.open_if_new(path, initial);
                }
            }
            Err(e) => warn!(target = %id, error = %e, "Ignoring a target with invalid patterns."),
        }
    }

    /// The live target `path` belongs to (the earliest added, if several).
    fn target_of(&self, path: &std::path::Path) -> Option<usize> {
        path.ancestors()
            .filter_map(|a| self.by_root.get(a))
            .flatten()
            .copied()
            .filter(|&i| {
                let t = &self.targets[i];
                t.removed_at.is_none() && t.matcher.matches(path)
            })
            .min()
    }

    /// The directory to watch for `root`: itself, or, while it does not
    /// exist yet (a container creates its log directory after it starts),
    /// its parent or grandparent, so its creation is noticed. Never higher
    /// (a recursive watch of e.g. /var/lib/docker would cost thousands of
    /// watches; rescans find the rest), never `/`.
    fn watch_dir_for(root: &std::path::Path) -> Option<PathBuf> {
        root.ancestors()
            .take(3)
            .find(|a| a.is_dir())
            .filter(|a| a.parent().is_some())
            .map(PathBuf::from)
    }

    fn watch_dir(&mut self, dir: PathBuf) {
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        match w.watch(&dir, RecursiveMode::Recursive) {
            Ok(()) => {
                debug!(dir = %dir.display(), "Watching directory.");
                self.watched.insert(dir);
            }
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "Cannot watch directory; relying on rescans.")
            }
        }
    }

    /// Watches what target `i` needs, unless a watched directory (watches
    /// are recursive) covers it already: cheap enough for every new pod.
    fn watch_target(&mut self, i: usize) {
        for root in self.targets[i].matcher.watch_roots() {
            if let Some(dir) = Self::watch_dir_for(&root)
                && !dir.ancestors().any(|a| self.watched.contains(a))
            {
                self.watch_dir(dir);
            }
        }
    }

    /// Recomputes the watched directories for every live target: the
    /// smallest set of directories covering all of them (watches are
    /// recursive), dropping watches no target needs any more.
    fn watch_roots(&mut self) {
        if self.watcher.is_none() {
            return;
        }
        let mut dirs: Vec<PathBuf> = self
            .targets
            .iter()
            .filter(|t| t.removed_at.is_none())
            .flat_map(|t| t.matcher.watch_roots())
            .filter_map(|r| Self::watch_dir_for(&r))
            .collect();
        // Sorted by components, a directory's descendants follow it directly.
        dirs.sort();
        dirs.dedup();
        let mut keep: Vec<PathBuf> = Vec::with_capacity(dirs.len());
        for d in dirs {
            if keep.last().is_some_and(|k| d.starts_with(k)) {
                continue;
            }
            keep.push(d);
        }
        let keep_set: HashSet<&PathBuf> = keep.iter().collect();
        let unneeded: Vec<PathBuf> = self
            .watched
            .iter()
            .filter(|w| !keep_set.contains(w))
            .cloned()
            .collect();
        if let Some(w) = self.watcher.as_mut() {
            for dir in unneeded {
                let _ = w.unwatch(&dir);
                self.watched.remove(&dir);
            }
        }
        for dir in keep {
            if !self.watched.contains(&dir) {
                self.watch_dir(dir);
            }
        }
    }

    /// Opens files that match and are not open yet (and notices renames).
    fn scan(&mut self, initial: bool) {
        let started = crate::state::checkpoint::now_ms();
        self.watch_roots();
        let found: Vec<PathBuf> = self
            .targets
            .iter()
            .filter(|t| t.removed_at.is_none())
            .flat_map(|t| t.matcher.scan())
            .collect();
        for path in found {
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
        let found: Vec<PathBuf> = self
            .targets
            .iter()
            .filter(|t| t.removed_at.is_none())
            .filter(|t| {
                t.matcher
                    .watch_roots()
                    .iter()
                    .any(|r| r.starts_with(dir) || dir.starts_with(r))
            })
            .flat_map(|t| t.matcher.scan())
            .collect();
        for path in found {
            self.open_if_new(path, false);
        }
    }

    /// Where a file without a checkpoint starts. Files found later are new:
    /// from the beginning. At startup `start_at` decides, except that a file
    /// born after this tailer was made is new, and after a restart a file
    /// written since the last checkpoint was written is read from the
    /// beginning (it appeared while Gleaner was down).
    fn start_for(&self, path: &std::path::Path, initial: bool) -> StartAt {
        if !initial || self.opts.start_at == StartAt::Beginning {
            return StartAt::Beginning;
        }
        let meta = std::fs::metadata(path);
        // Born after the pipeline started (before its first scan got to
        // it): a new file, read whole. Where the file system records birth.
        if meta
            .as_ref()
            .ok()
            .and_then(|m| m.created().ok())
            .is_some_and(|born| born >= self.created)
        {
            return StartAt::Beginning;
        }
        let modified_ms = meta
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as u64);
        match (self.checkpoints.store.previous_write_ms(), modified_ms) {
            (Some(written), Some(modified)) if modified > written => StartAt::Beginning,
            _ => StartAt::End,
        }
    }

    fn open_if_new(&mut self, path: PathBuf, initial: bool) {
        let Some(key) = key_of(&path) else { return };
        if let Some(f) = self.files.get_mut(&key) {
            // Already tailed: under this name, or it was renamed to it.
            if f.path() != path && key_of(f.path()) != Some(key) {
                info!(from = %f.path().display(), to = %path.display(), "File was renamed; still reading it.");
                f.set_path(&path);
            }
            self.by_path.insert(path, key);
            return;
        }
        // Rotated away earlier and now found under a name we also read
        // (`app.log*`): follow it there, never read it twice.
        if let Some(i) = self.draining.iter().position(|d| d.file.dev_ino() == key) {
            let Draining {
                mut file, owner, ..
            } = self.draining.swap_remove(i);
            info!(from = %file.path().display(), to = %path.display(), "File was renamed; still reading it.");
            file.set_path(&path);
            self.files.insert(key, file);
            self.owner.insert(key, owner);
            self.by_path.insert(path, key);
            self.dirty.insert(key);
            return;
        }
        // A new file at the path of one we read there (rotation): the old
        // one left the path; it is read on to its end from the descriptor
        // we hold (first, on every turn), and the new one is opened now,
        // before it too can be rotated away unseen.
        if let Some(&mapped) = self.by_path.get(&path)
            && self.files.get(&mapped).is_some_and(|f| f.path() == path)
        {
            self.detach(mapped, "File was rotated; reading the old file to its end.");
        }
        let Some(t) = self.target_of(&path).map(|i| &self.targets[i].target) else {
            return;
        };
        if !is_regular(&path) {
            self.skip(&path);
            return;
        }
        let (id, format, tags) = (t.id.clone(), t.format, t.tags.clone());
        let start = self.start_for(&path, initial);
        match TailedFile::open(&path, start, &self.opts, &self.checkpoints, (format, tags)) {
            Ok((f, resumed)) => {
                info!(path = %path.display(), target = %id, offset = f.offset(), resumed, "Started tailing file.");
                let key = f.dev_ino();
                self.stats.files_opened.inc();
                self.dirty.insert(key);
                self.by_path.insert(path, key);
                self.files.insert(key, f);
                self.owner.insert(key, id);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // Swapped for a FIFO or the like between the check and the open.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => self.skip(&path),
            Err(e) => {
                warn!(path = %path.display(), error = %e, "Cannot open file; will retry at next scan.")
            }
        }
    }

    /// Counts a non-regular file at a matching path, and warns once per path.
    fn skip(&mut self, path: &std::path::Path) {
        if self.skipped.insert(path.to_path_buf()) {
            self.stats.files_skipped.inc();
            warn!(path = %path.display(), "Skipping a path that is not a regular file (FIFO, socket or device): it is never opened.");
        }
    }

    /// Moves the open file `key` off its path into the draining list: it
    /// is read on from its descriptor until its end.
    fn detach(&mut self, key: Key, why: &'static str) {
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
            if let Some(&key) = self.by_path.get(&path) {
                self.dirty.insert(key);
                if data_only {
                    // Written to: no new file here (that is a create or rename).
                    continue;
                }
            }
            if self.target_of(&path).is_some() {
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
        let keys: Vec<Key> = self.files.keys().copied().collect();
        for key in keys {
            let Some(path) = self.files.get(&key).map(|f| f.path().to_path_buf()) else {
                continue;
            };
            let now_at_path = std::fs::metadata(&path).ok().map(|m| {
                use std::os::unix::fs::MetadataExt;
                ((m.dev(), m.ino()), m.len())
            });
            if let Some((k, len)) = now_at_path
                && k == key
            {
                let Some(file) = self.files.get_mut(&key) else {
                    continue;
                };
                // (An idle file is not hashed: only one with new bytes can
                // have been refilled.)
                if len < file.offset() || (len > file.offset() && file.replaced_in_place()) {
                    info!(path = %path.display(), offset = file.offset(), len, "File was truncated (or its first bytes replaced); reading from the start.");
                    if let Err(e) = file.restart_after_truncation(&self.stats) {
                        warn!(path = %path.display(), error = %e, "Cannot rewind truncated file.");
                    }
                    self.dirty.insert(key);
                } else if len > file.offset() {
                    self.dirty.insert(key);
                }
                continue;
            }
            // The path leads elsewhere now. Was the file renamed to a name we
            // also read? Look once per pass.
            if !rescanned {
                rescanned = true;
                self.scan(false);
            }
            let renamed = self.files.get(&key).is_some_and(|f| f.path() != path);
            if renamed {
                self.dirty.insert(key);
                continue;
            }
            // Gone from its path (deleted, or renamed to a name we do not
            // read): read on from the descriptor; open what is there now.
            self.detach(key, "File was rotated; reading the old file to its end.");
            if now_at_path.is_some() {
                self.open_if_new(path, false);
            }
        }
    }

    /// Reads files that left their path on, first on every turn (so an old
    /// generation's last lines tend to come before the new one's); closes
    /// each at its end. A deleted one is released after
    /// `release_deleted_after` even if not drained (counting the bytes
    /// given up), so a blocked output cannot hold the node's disk space.
    /// Returns true if any of them gave data (read again soon).
    fn read_draining(&mut self, sink: &mut dyn EventSink) -> bool {
        let mut busy = false;
        let mut i = 0;
        while i < self.draining.len() {
            let d = &mut self.draining[i];
            let mut at_end = false;
            if sink.ready() {
                match d
                    .file
                    .read(&mut self.buf, READ_BUDGET, sink, &self.stats, &self.stop)
                {
                    // A writer may still finish its last lines into a file
                    // renamed away (before it reopens its log): wait a
                    // moment at its end before closing it.
                    Ok(0) => {
                        at_end = !d.file.has_more()
                            && (d.file.is_deleted() || d.since.elapsed() >= self.rotate_wait)
                    }
                    Ok(_) => busy = true,
                    Err(e) => {
                        warn!(path = %d.file.path().display(), error = %e, "Read of a rotated or deleted file failed.")
                    }
                }
            }
            if at_end {
                d.file.flush_held(Instant::now(), true, sink, &self.stats);
                info!(path = %d.file.path().display(), "Read a rotated or deleted file to its end; closed it.");
            } else if d.since.elapsed() >= self.opts.release_deleted_after && d.file.is_deleted() {
                let left = d.file.bytes_not_sent();
                self.stats.files_released.inc();
                self.stats.bytes_given_up.add(left);
                warn!(path = %d.file.path().display(), bytes_given_up = left, "Released a deleted file before its end: its output is too slow.");
            } else {
                i += 1;
                continue;
            }
            self.stats.files_closed.inc();
            self.draining.swap_remove(i);
        }
        busy
    }

    /// Closes the files of removed targets once they are read to their end
    /// and [`REMOVED_QUIET`] has passed, then forgets targets with no open
    /// file left.
    fn close_removed(&mut self, sink: &mut dyn EventSink) {
        let now = Instant::now();
        let due: HashSet<Arc<str>> = self
            .targets
            .iter()
            .filter(|t| {
                t.removed_at
                    .is_some_and(|at| now.duration_since(at) >= REMOVED_QUIET)
            })
            .map(|t| t.target.id.clone())
            .collect();
        if due.is_empty() {
            return;
        }
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
            f.flush_held(now, true, sink, &self.stats);
            info!(path = %f.path().display(), target = %owner, "Read the file of a removed target to its end; closed it.");
            self.files.remove(&key);
            self.owner.remove(&key);
            self.by_path.retain(|_, k| *k != key);
            self.stats.files_closed.inc();
        }
        let before = self.targets.len();
        self.targets
            .retain(|t| !due.contains(&t.target.id) || busy.contains(&t.target.id));
        if self.targets.len() != before {
            self.reindex();
        }
        for id in due.difference(&busy) {
            self.checkpoints
                .store
                .forget_target(&self.checkpoints.input, id);
            self.stats.targets_removed.inc();
        }
        if self.targets.len() != before {
            self.watch_roots();
        }
    }

    /// Applies every update waiting in the channel.
    fn apply_pending(&mut self) {
        let Some(updates) = self.updates.clone() else {
            return;
        };
        while let Ok(u) = updates.try_recv() {
            self.apply(u);
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

    /// Reads every dirty file once, up to the per-file budget, while the
    /// sink has room; a file stays dirty until a read finds its end.
    fn read_dirty(&mut self, sink: &mut dyn EventSink) {
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
                info!(path = %file.path().display(), offset = file.offset(), "File was truncated and refilled (its first bytes changed); reading from the start.");
                if let Err(e) = file.restart_after_truncation(&self.stats) {
                    warn!(path = %file.path().display(), error = %e, "Cannot rewind truncated file.");
                }
            }
            match file.read(&mut self.buf, READ_BUDGET, sink, &self.stats, &self.stop) {
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
                if self.dirty.is_empty() && self.draining.is_empty() {
                    break;
                }
                self.read_draining(sink);
                self.read_dirty(sink);
                if !sink.ready() {
                    sink.tick(Instant::now());
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            let now = Instant::now();
            for f in self.files.values_mut() {
                f.flush_held(now, true, sink, &self.stats);
            }
            sink.flush_all();
            return;
        }
        let notes = self.notifications.clone();
        let mut updates = self.updates.clone();
        let mut next_rescan = Instant::now() + self.opts.rescan_interval;
        let mut next_poll = Instant::now() + self.opts.poll_interval;
        while !stop.load(Ordering::Relaxed) {
            let draining = self.read_draining(sink);
            self.read_dirty(sink);
            let now = Instant::now();
            for f in self.files.values_mut() {
                f.flush_held(now, false, sink, &self.stats);
            }
            sink.tick(now);
            if (!self.dirty.is_empty() || draining) && sink.ready() {
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
            if let Some(u) = &updates {
                sel.recv(u);
            }
            match sel.select_timeout(timeout) {
                Ok(op) if op.index() == note_op => match op.recv(&notes) {
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
                    Err(_) => std::thread::sleep(timeout),
                },
                Ok(op) => {
                    let got = match &updates {
                        Some(u) => op.recv(u),
                        None => continue,
                    };
                    match got {
                        Ok(update) => {
                            self.apply(update);
                            self.apply_pending();
                        }
                        // Discovery ended: the targets stay as they are.
                        Err(_) => discovery_ended = true,
                    }
                }
                Err(_) => {}
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
