//! What a start created, so that a refused config leaves nothing behind:
//! the directories (data dir, plugin cache, disk buffers, granted
//! directories) that did not exist before the attempt are removed again
//! if it fails. Touches only the paths it is given.

use std::path::PathBuf;

/// The paths of a start that did not exist before it.
#[derive(Debug)]
pub struct Created {
    missing: Vec<PathBuf>,
}

impl Created {
    /// Notes which of `paths` do not exist now.
    pub fn before(paths: &[PathBuf]) -> Created {
        let mut missing: Vec<PathBuf> = paths
            .iter()
            .filter(|p| std::fs::symlink_metadata(p).is_err())
            .cloned()
            .collect();
        // Outermost first: removing it removes what it holds.
        missing.sort_by_key(|p| p.components().count());
        missing.dedup();
        Created { missing }
    }

    /// Removes every noted path that exists now (with what it holds):
    /// this attempt made it.
    pub fn undo(self) {
        for p in &self.missing {
            match std::fs::remove_dir_all(p) {
                Ok(()) => {
                    tracing::debug!(path = %p.display(), "Removed what a refused start created.")
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "Cannot remove what a refused start created.")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undo_removes_only_what_did_not_exist_before() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old");
        std::fs::create_dir_all(&old).unwrap();
        let new = dir.path().join("new");
        let nested = new.join("a/b");
        let created = Created::before(&[old.clone(), new.clone(), nested.clone()]);
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(old.join("keep"), "x").unwrap();
        created.undo();
        assert!(old.join("keep").exists());
        assert!(!new.exists());
    }
}
