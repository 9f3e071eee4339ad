//! Which files an input reads: include and exclude glob patterns (with
//! `**`), the directories to watch for them, and a full scan. Knows paths
//! only; opening and reading is `file.rs`'s job.

use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// A compiled set of include and exclude patterns.
#[derive(Debug, Clone)]
pub struct PathMatcher {
    include: GlobSet,
    exclude: GlobSet,
    /// Per include pattern: the directory before the first glob character
    /// and how deep below it a match can be (`None` = any depth, `**`).
    roots: Vec<(PathBuf, Option<usize>)>,
}

/// A pattern that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("invalid glob pattern `{pattern}`: {source}")]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
    /// Why it is invalid.
    pub source: globset::Error,
}

fn compile(pattern: &str) -> Result<Glob, PatternError> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|source| PatternError {
            pattern: pattern.to_owned(),
            source,
        })
}

fn set(patterns: &[String]) -> Result<GlobSet, PatternError> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(compile(p)?);
    }
    b.build().map_err(|source| PatternError {
        pattern: patterns.join(", "),
        source,
    })
}

fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// The literal directory prefix of `pattern` and the depth limit below it.
pub fn root_of(pattern: &str) -> (PathBuf, Option<usize>) {
    let mut root = PathBuf::new();
    let mut rest = Vec::new();
    let mut in_glob = false;
    for c in Path::new(pattern).components() {
        let s = c.as_os_str().to_string_lossy();
        if !in_glob && !has_meta(&s) {
            root.push(c);
        } else {
            in_glob = true;
            rest.push(s.into_owned());
        }
    }
    if rest.is_empty() {
        // A literal path: its parent is the root, the file is one level down.
        let parent = root
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        return (parent, Some(1));
    }
    let depth = if rest.iter().any(|s| s.contains("**")) {
        None
    } else {
        Some(rest.len())
    };
    (root, depth)
}

impl PathMatcher {
    /// Compiles the patterns.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, PatternError> {
        Ok(PathMatcher {
            include: set(include)?,
            exclude: set(exclude)?,
            roots: include.iter().map(|p| root_of(p)).collect(),
        })
    }

    /// True if `path` is included and not excluded.
    pub fn matches(&self, path: &Path) -> bool {
        self.include.is_match(path) && !self.exclude.is_match(path)
    }

    /// The directories to watch, deduplicated, each an ancestor-free root.
    pub fn watch_roots(&self) -> Vec<PathBuf> {
        let mut roots: Vec<PathBuf> = self.roots.iter().map(|(r, _)| r.clone()).collect();
        roots.sort();
        roots.dedup();
        let all = roots.clone();
        roots.retain(|r| !all.iter().any(|o| o != r && r.starts_with(o)));
        roots
    }

    /// Every matching path that is not a directory, sorted: regular files,
    /// and also FIFOs, sockets and devices, which the tailer skips with a
    /// warning and a count (rather than never saying it saw them).
    pub fn scan(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for (root, depth) in &self.roots {
            let mut walk = walkdir::WalkDir::new(root).follow_links(true);
            if let Some(d) = depth {
                walk = walk.max_depth(*d);
            }
            for entry in walk.into_iter().filter_map(Result::ok) {
                if !entry.file_type().is_dir() && self.matches(entry.path()) {
                    found.push(entry.into_path());
                }
            }
        }
        found.sort();
        found.dedup();
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_stop_at_the_first_glob_component() {
        assert_eq!(
            root_of("/var/log/*.log"),
            (PathBuf::from("/var/log"), Some(1))
        );
        assert_eq!(
            root_of("/var/log/**/x.log"),
            (PathBuf::from("/var/log"), None)
        );
        assert_eq!(
            root_of("/var/log/a/b.log"),
            (PathBuf::from("/var/log/a"), Some(1))
        );
        assert_eq!(
            root_of("/srv/*/logs/*.log"),
            (PathBuf::from("/srv"), Some(3))
        );
    }

    #[test]
    fn star_does_not_cross_directories_but_double_star_does() {
        let m = PathMatcher::new(
            &["/l/*.log".into(), "/d/**/*.log".into()],
            &["/d/**/skip*.log".into()],
        )
        .unwrap();
        assert!(m.matches(Path::new("/l/a.log")));
        assert!(!m.matches(Path::new("/l/sub/a.log")));
        assert!(m.matches(Path::new("/d/a.log")));
        assert!(m.matches(Path::new("/d/x/y/a.log")));
        assert!(!m.matches(Path::new("/d/x/skip1.log")));
    }

    #[test]
    fn scan_finds_files_at_any_depth_under_double_star() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        std::fs::create_dir_all(base.join("a/b")).unwrap();
        for f in ["top.log", "a/mid.log", "a/b/deep.log", "a/b/other.txt"] {
            std::fs::write(base.join(f), "x\n").unwrap();
        }
        let m = PathMatcher::new(&[format!("{}/**/*.log", base.display())], &[]).unwrap();
        let names: Vec<_> = m
            .scan()
            .iter()
            .map(|p| p.strip_prefix(base).unwrap().to_path_buf())
            .collect();
        assert_eq!(
            names,
            vec![
                PathBuf::from("a/b/deep.log"),
                PathBuf::from("a/mid.log"),
                PathBuf::from("top.log")
            ]
        );
    }

    #[test]
    fn watch_roots_drop_nested_roots() {
        let m = PathMatcher::new(
            &["/a/*.log".into(), "/a/b/**/*.log".into(), "/c/x.log".into()],
            &[],
        )
        .unwrap();
        assert_eq!(
            m.watch_roots(),
            vec![PathBuf::from("/a"), PathBuf::from("/c")]
        );
    }
}
