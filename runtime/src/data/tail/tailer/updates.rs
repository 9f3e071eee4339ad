//! How a tailer takes discovery's changes: targets added (or replaced:
//! new tags for their open files), removed (their files read to their end
//! at once), and complete lists; a target whose files must be there and
//! are not is counted as missed. Knows targets and which files they own;
//! reading and rotation stay in the tailer.

use std::collections::HashSet;
use std::sync::Arc;

use tracing::{debug, warn};

use super::Tailer;
use crate::data::tail::glob::PatternError;
use crate::data::tail::targets::Upsert;
use crate::model::target::{Target, TargetUpdate};

impl Tailer {
    /// Adds `target`, or replaces the one with its id (it is live again:
    /// new tags apply to its open files from their next batch).
    pub(super) fn add_target(&mut self, target: Target) -> Result<usize, PatternError> {
        if self.updates.is_some() {
            self.checkpoints
                .store
                .remember_target(&self.checkpoints.input, &target);
        }
        let (id, tags, include) = (
            target.id.clone(),
            target.tags.clone(),
            target.include.clone(),
        );
        match self.targets.upsert(target)? {
            Upsert::New(i) => {
                debug!(target = %id, include = ?include, "Added target.");
                self.stats.targets_added.inc();
                Ok(i)
            }
            Upsert::Existing { index, retagged } => {
                if retagged {
                    for (key, owner) in &self.open.owner {
                        if *owner == id
                            && let Some(f) = self.open.files.get_mut(key)
                        {
                            f.set_tags(tags.clone());
                        }
                    }
                }
                Ok(index)
            }
        }
    }

    pub(super) fn remove_target(&mut self, id: &str) {
        // Files not seen yet (a Job's pod deleted right after it wrote):
        // opened now, with the target's tags, before it stops matching.
        let paths = self
            .targets
            .live_index(id)
            .map(|i| self.targets.get(i).matcher.scan());
        paths
            .into_iter()
            .flatten()
            .for_each(|p| self.open_if_new(p, false));
        if self.targets.mark_removed(id) {
            debug!(target = %id, "Target removed; reading its files to their end at once.");
            for (key, owner) in &self.open.owner {
                if &**owner == id {
                    self.open.dirty.insert(*key);
                }
            }
        }
    }

    pub(super) fn apply(&mut self, update: TargetUpdate) {
        match update {
            TargetUpdate::Added(target) => self.add_and_scan(target, false),
            TargetUpdate::Removed(id) => self.remove_target(&id),
            TargetUpdate::Sync(all) => {
                let initial = !self.synced;
                self.synced = true;
                let keep: HashSet<Arc<str>> = all.iter().map(|t| t.id.clone()).collect();
                let gone = self.targets.ids_not_in(&keep);
                for id in gone {
                    self.remove_target(&id);
                }
                // Add all, watch once, then open what they match (a node's
                // whole list can hold a thousand targets).
                let mut added = Vec::new();
                for target in all {
                    let id = target.id.clone();
                    let expect = self.expects_file(&target);
                    match self.add_target(target) {
                        Ok(i) => added.push((i, expect)),
                        Err(e) => {
                            warn!(target = %id, error = %e, "Ignoring a target with invalid patterns.")
                        }
                    }
                }
                self.watch_roots();
                for (i, expect) in added {
                    for path in self.targets.get(i).matcher.scan() {
                        self.open_if_new(path, initial);
                    }
                    if expect {
                        let id = self.targets.get(i).target.id.clone();
                        self.count_if_missed(&id);
                    }
                }
            }
        }
    }

    pub(super) fn add_and_scan(&mut self, target: Target, initial: bool) {
        let id = target.id.clone();
        let expect = self.expects_file(&target);
        match self.add_target(target) {
            Ok(i) => {
                self.watches
                    .cover(self.targets.get(i).matcher.watch_roots());
                for path in self.targets.get(i).matcher.scan() {
                    self.open_if_new(path, initial);
                }
                if expect {
                    self.count_if_missed(&id);
                }
            }
            Err(e) => warn!(target = %id, error = %e, "Ignoring a target with invalid patterns."),
        }
    }

    /// `target` must find its file now, and none of it was opened yet.
    fn expects_file(&self, target: &Target) -> bool {
        target.lost_if_absent && !self.settled.contains(&target.id)
    }

    /// After a target's scan: no file of it ever opened (now, or earlier
    /// through a notification: it may even be read and closed already)
    /// means its files were removed before they could be opened (`docker
    /// run --rm` of a short command); said and counted once, never silent.
    fn count_if_missed(&mut self, id: &Arc<str>) {
        if self.settled.insert(id.clone()) && !self.open.owns_any(id) {
            self.stats.targets_missed.inc();
            warn!(target = %id, "The log of a container was removed before it could be read; its output is lost.");
        }
    }

    /// Watches exactly what the live targets need.
    pub(super) fn watch_roots(&mut self) {
        self.watches.reconcile(self.targets.live_roots());
    }

    /// Applies every update waiting in the channel.
    pub(super) fn apply_pending(&mut self) {
        let Some(updates) = self.updates.clone() else {
            return;
        };
        while let Ok(u) = updates.try_recv() {
            self.apply(u);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::data::tail::{Checkpoints, FileInputOptions, InputStats};
    use crate::model::target::Format;
    use crate::state::checkpoint::CheckpointStore;

    fn container(dir: &std::path::Path, id: &str) -> Target {
        Target {
            id: Arc::from(format!("docker/{id}/stdout")),
            include: vec![format!("{}/{id}-json.log", dir.display())],
            exclude: Vec::new(),
            tags: Arc::from(Vec::new()),
            format: Format::DockerJson,
            lost_if_absent: true,
        }
    }

    #[test]
    fn a_container_log_gone_before_it_is_opened_is_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            CheckpointStore::open(&dir.path().join("state"), Duration::from_secs(60)).unwrap();
        let checkpoints = Checkpoints {
            store,
            input: Arc::from("c/0"),
        };
        let stats = Arc::new(InputStats::default());
        let (_tx, rx) = crossbeam_channel::unbounded();
        let opts = FileInputOptions::for_paths(Vec::new());
        let mut t = Tailer::with_discovery(opts, stats.clone(), checkpoints, rx);
        std::fs::write(dir.path().join("here-json.log"), "{}\n").unwrap();

        t.apply(TargetUpdate::Added(container(dir.path(), "here")));
        t.apply(TargetUpdate::Added(container(dir.path(), "gone")));
        assert_eq!(stats.targets_missed.get(), 1, "only the absent one");
        // Given again (a rename, a resync): not new, not counted again.
        t.apply(TargetUpdate::Added(container(dir.path(), "gone")));
        t.apply(TargetUpdate::Sync(vec![
            container(dir.path(), "here"),
            container(dir.path(), "gone"),
        ]));
        assert_eq!(stats.targets_missed.get(), 1);
        // New in a complete list, and gone: counted too.
        t.apply(TargetUpdate::Sync(vec![container(dir.path(), "late")]));
        assert_eq!(stats.targets_missed.get(), 2);
        // A target that may have no file yet (a file input) never is.
        let mut pod = container(dir.path(), "pod");
        pod.lost_if_absent = false;
        t.apply(TargetUpdate::Added(pod));
        assert_eq!(stats.targets_missed.get(), 2);
        assert!(t.open.owns_any("docker/here/stdout"));

        // Added when created (no log yet: not missed), then started.
        let mut created = container(dir.path(), "run");
        created.lost_if_absent = false;
        t.apply(TargetUpdate::Added(created.clone()));
        assert_eq!(stats.targets_missed.get(), 2);
        std::fs::write(dir.path().join("run-json.log"), "{}\n").unwrap();
        t.apply(TargetUpdate::Added(container(dir.path(), "run")));
        assert_eq!(stats.targets_missed.get(), 2, "its log was there");
        assert!(t.open.owns_any("docker/run/stdout"));
        t.apply(TargetUpdate::Added(created));
        t.apply(TargetUpdate::Added(container(dir.path(), "ran")));
        assert_eq!(stats.targets_missed.get(), 3, "started, its log gone");

        // Created, its log opened (as a notification would), read, deleted
        // and closed before the start is seen: it was read, not missed.
        let mut quick = container(dir.path(), "quick");
        quick.lost_if_absent = false;
        t.apply(TargetUpdate::Added(quick));
        let log = dir.path().join("quick-json.log");
        std::fs::write(&log, "{}\n").unwrap();
        t.open_if_new(log.clone(), false);
        std::fs::remove_file(&log).unwrap();
        let key = *t.open.by_path.get(&log).unwrap();
        t.open.detach(key, "deleted");
        t.open.draining.clear();
        assert!(!t.open.owns_any("docker/quick/stdout"));
        t.apply(TargetUpdate::Added(container(dir.path(), "quick")));
        assert_eq!(stats.targets_missed.get(), 3, "read before its start");
    }
}
