//! The tailer's directory watches: which directories are watched
//! (recursively) so that new files and renames are seen at once, kept to
//! the smallest set that covers every live target's roots. Rescans find
//! what a watch cannot (a platform without notifications, an overflow).
//!
//! Owns the `notify` watcher and nothing else: it does not open files or
//! know targets, only the root directories it is given.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crossbeam_channel::Receiver;
use notify::{RecursiveMode, Watcher};
use tracing::{debug, warn};

/// What the watcher reports.
pub type Notification = notify::Result<notify::Event>;

/// The watched directories of one tailer.
pub struct Watches {
    watcher: Option<notify::RecommendedWatcher>,
    watched: HashSet<PathBuf>,
}

impl Watches {
    /// A watcher and the channel it reports on (if the platform has no
    /// notifications, polling alone still works: the channel stays quiet).
    pub fn new() -> (Watches, Receiver<Notification>) {
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
        (
            Watches {
                watcher,
                watched: HashSet::new(),
            },
            rx,
        )
    }

    /// The directory to watch for `root`: itself, or, while it does not
    /// exist yet (a container creates its log directory after it starts),
    /// its parent or grandparent, so its creation is noticed. Never higher
    /// (a recursive watch of e.g. /var/lib/docker would cost thousands of
    /// watches; rescans find the rest), never `/`.
    pub fn dir_for(root: &Path) -> Option<PathBuf> {
        root.ancestors()
            .take(3)
            .find(|a| a.is_dir())
            .filter(|a| a.parent().is_some())
            .map(PathBuf::from)
    }

    fn watch(&mut self, dir: PathBuf) {
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

    /// Watches what `roots` need, unless a watched directory (watches are
    /// recursive) covers them already: cheap enough for every new pod.
    pub fn cover(&mut self, roots: Vec<PathBuf>) {
        for root in roots {
            if let Some(dir) = Self::dir_for(&root)
                && !dir.ancestors().any(|a| self.watched.contains(a))
            {
                self.watch(dir);
            }
        }
    }

    /// Makes the watched set the smallest one covering `roots` (every
    /// live target's): watches what is missing, drops what no root needs.
    pub fn reconcile(&mut self, roots: impl Iterator<Item = PathBuf>) {
        if self.watcher.is_none() {
            return;
        }
        let keep = smallest_cover(roots.filter_map(|r| Self::dir_for(&r)).collect());
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
                self.watch(dir);
            }
        }
    }
}

/// The directories of `dirs` that no other one contains (watches are
/// recursive), sorted and without repeats.
fn smallest_cover(mut dirs: Vec<PathBuf>) -> Vec<PathBuf> {
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
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_cover_drops_directories_inside_others() {
        let p = |s: &str| PathBuf::from(s);
        let cover = smallest_cover(vec![
            p("/var/log/pods/b/c"),
            p("/var/log/pods"),
            p("/srv/app"),
            p("/var/log/pods/a"),
            p("/srv/app"),
            p("/srv/application"),
        ]);
        assert_eq!(
            cover,
            vec![p("/srv/app"), p("/srv/application"), p("/var/log/pods")]
        );
    }

    #[test]
    fn a_missing_root_is_watched_through_a_near_ancestor_never_far_up() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("pods");
        std::fs::create_dir_all(&base).unwrap();
        // Not there yet: its parent is watched, so its creation is seen.
        assert_eq!(Watches::dir_for(&base.join("new-pod")), Some(base.clone()));
        assert_eq!(
            Watches::dir_for(&base.join("a/b")),
            Some(base.clone()),
            "grandparent at most"
        );
        assert_eq!(Watches::dir_for(&base.join("a/b/c")), None, "never higher");
        assert_eq!(Watches::dir_for(Path::new("/")), None, "never /");
    }

    #[test]
    fn reconciling_unwatches_what_no_root_needs() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let (mut w, _rx) = Watches::new();
        w.cover(vec![a.clone(), b.clone()]);
        assert_eq!(w.watched.len(), 2);
        w.cover(vec![a.join("inner")]);
        assert_eq!(w.watched.len(), 2, "covered by `a` already");
        w.reconcile([b.clone()].into_iter());
        assert_eq!(w.watched, HashSet::from([b]));
    }
}
