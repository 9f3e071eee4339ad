//! The tailer's targets: what it was told to read (a fixed set, or what
//! discovery adds and removes), each with its compiled patterns, indexed by
//! the literal directories their patterns start from so that a path is
//! matched against the few targets above it, not all of them.
//!
//! Owns the target list only: it opens no file and keeps no offsets.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::glob::{PathMatcher, PatternError};
use crate::model::target::Target;

/// One target and its compiled patterns.
pub struct TargetState {
    /// The target as given.
    pub target: Target,
    /// Its patterns, compiled.
    pub matcher: PathMatcher,
    /// When discovery removed it; its files are then drained and closed.
    pub removed_at: Option<Instant>,
}

/// What [`Targets::upsert`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Upsert {
    /// A new target, at this index.
    New(usize),
    /// A target of that id was there (and is live again); its tags changed
    /// if `retagged`.
    Existing {
        /// Its index.
        index: usize,
        /// The tags differ from the ones it had.
        retagged: bool,
    },
}

/// Every target of one tailer.
#[derive(Default)]
pub struct Targets {
    list: Vec<TargetState>,
    by_root: HashMap<PathBuf, Vec<usize>>,
}

impl Targets {
    /// Target `i`.
    pub fn get(&self, i: usize) -> &TargetState {
        &self.list[i]
    }

    /// Adds `target`, or replaces the one with its id (it is live again).
    pub fn upsert(&mut self, target: Target) -> Result<Upsert, PatternError> {
        let matcher = PathMatcher::new(&target.include, &target.exclude)?;
        if let Some(i) = self.list.iter().position(|t| t.target.id == target.id) {
            let t = &mut self.list[i];
            let retagged = t.target.tags != target.tags;
            let moved = t.target.include != target.include || t.target.exclude != target.exclude;
            t.target = target;
            t.matcher = matcher;
            t.removed_at = None;
            if moved {
                self.reindex();
            }
            return Ok(Upsert::Existing { index: i, retagged });
        }
        let i = self.list.len();
        for root in matcher.watch_roots() {
            self.by_root.entry(root).or_default().push(i);
        }
        self.list.push(TargetState {
            target,
            matcher,
            removed_at: None,
        });
        Ok(Upsert::New(i))
    }

    /// Rebuilds the index by root after targets moved or were dropped.
    fn reindex(&mut self) {
        self.by_root.clear();
        for (i, t) in self.list.iter().enumerate() {
            for root in t.matcher.watch_roots() {
                self.by_root.entry(root).or_default().push(i);
            }
        }
    }

    /// The index of live target `id`.
    pub fn live_index(&self, id: &str) -> Option<usize> {
        self.list
            .iter()
            .position(|t| &*t.target.id == id && t.removed_at.is_none())
    }

    /// Marks target `id` removed now; false if it is unknown or was
    /// removed already.
    pub fn mark_removed(&mut self, id: &str) -> bool {
        match self.list.iter_mut().find(|t| &*t.target.id == id) {
            Some(t) if t.removed_at.is_none() => {
                t.removed_at = Some(Instant::now());
                true
            }
            _ => false,
        }
    }

    /// The live target `path` belongs to (the earliest added, if several).
    pub fn of(&self, path: &Path) -> Option<usize> {
        path.ancestors()
            .filter_map(|a| self.by_root.get(a))
            .flatten()
            .copied()
            .filter(|&i| {
                let t = &self.list[i];
                t.removed_at.is_none() && t.matcher.matches(path)
            })
            .min()
    }

    fn live(&self) -> impl Iterator<Item = &TargetState> {
        self.list.iter().filter(|t| t.removed_at.is_none())
    }

    /// The root directories of every live target.
    pub fn live_roots(&self) -> impl Iterator<Item = PathBuf> + '_ {
        self.live().flat_map(|t| t.matcher.watch_roots())
    }

    /// Every path that matches a live target now.
    pub fn scan(&self) -> Vec<PathBuf> {
        self.live().flat_map(|t| t.matcher.scan()).collect()
    }

    /// Paths matching the live targets whose roots are at, above or below
    /// `dir` (a new directory): with a thousand pods on a node, a new pod's
    /// directory concerns its own targets, not everyone's.
    pub fn scan_around(&self, dir: &Path) -> Vec<PathBuf> {
        self.live()
            .filter(|t| {
                t.matcher
                    .watch_roots()
                    .iter()
                    .any(|r| r.starts_with(dir) || dir.starts_with(r))
            })
            .flat_map(|t| t.matcher.scan())
            .collect()
    }

    /// Ids of the targets not in `keep`.
    pub fn ids_not_in(&self, keep: &HashSet<Arc<str>>) -> Vec<Arc<str>> {
        self.list
            .iter()
            .filter(|t| !keep.contains(&t.target.id))
            .map(|t| t.target.id.clone())
            .collect()
    }

    /// Ids of the targets removed at least `quiet` before `now`.
    pub fn removed_before(&self, now: Instant, quiet: Duration) -> HashSet<Arc<str>> {
        self.list
            .iter()
            .filter(|t| {
                t.removed_at
                    .is_some_and(|at| now.duration_since(at) >= quiet)
            })
            .map(|t| t.target.id.clone())
            .collect()
    }

    /// Forgets the targets in `gone`; true if any was forgotten.
    pub fn forget(&mut self, gone: &HashSet<Arc<str>>) -> bool {
        let before = self.list.len();
        self.list.retain(|t| !gone.contains(&t.target.id));
        let changed = self.list.len() != before;
        if changed {
            self.reindex();
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(id: &str, include: &str, tag: &str) -> Target {
        Target {
            id: Arc::from(id),
            include: vec![include.to_owned()],
            exclude: vec![],
            tags: Arc::from(vec![("t".to_owned(), tag.to_owned())]),
            format: Default::default(),
            lost_if_absent: false,
        }
    }

    #[test]
    fn a_path_belongs_to_the_earliest_live_target_that_matches_it() {
        let mut t = Targets::default();
        assert_eq!(
            t.upsert(target("a", "/logs/*.log", "1")).unwrap(),
            Upsert::New(0)
        );
        assert_eq!(
            t.upsert(target("b", "/logs/**/*.log", "1")).unwrap(),
            Upsert::New(1)
        );
        assert_eq!(t.of(Path::new("/logs/x.log")), Some(0));
        assert_eq!(t.of(Path::new("/logs/sub/x.log")), Some(1));
        assert_eq!(t.of(Path::new("/other/x.log")), None);
        assert!(t.mark_removed("a"));
        assert!(!t.mark_removed("a"), "once");
        assert_eq!(
            t.of(Path::new("/logs/x.log")),
            Some(1),
            "removed targets match nothing"
        );
    }

    #[test]
    fn a_target_given_again_is_live_again_with_its_new_tags_and_patterns() {
        let mut t = Targets::default();
        t.upsert(target("a", "/logs/*.log", "1")).unwrap();
        t.mark_removed("a");
        assert_eq!(
            t.upsert(target("a", "/srv/*.log", "2")).unwrap(),
            Upsert::Existing {
                index: 0,
                retagged: true
            }
        );
        assert_eq!(
            t.of(Path::new("/srv/x.log")),
            Some(0),
            "reindexed by its new root"
        );
        assert_eq!(t.of(Path::new("/logs/x.log")), None);
    }

    #[test]
    fn forgetting_targets_keeps_the_index_of_the_rest_right() {
        let mut t = Targets::default();
        t.upsert(target("a", "/a/*.log", "1")).unwrap();
        t.upsert(target("b", "/b/*.log", "1")).unwrap();
        t.mark_removed("a");
        let due = t.removed_before(
            Instant::now() + Duration::from_secs(5),
            Duration::from_secs(1),
        );
        assert_eq!(due, HashSet::from([Arc::from("a")]));
        assert!(t.forget(&due));
        assert_eq!(t.of(Path::new("/b/x.log")), Some(0));
        assert_eq!(t.ids_not_in(&HashSet::new()), vec![Arc::<str>::from("b")]);
    }
}
