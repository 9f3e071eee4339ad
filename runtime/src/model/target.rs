//! The seam between discovery and the tailer: a target is a set of host
//! path patterns plus the tags and line format shared by everything read
//! there. A static `file` input is one fixed target; discovery (Docker,
//! Kubernetes) adds and removes targets while the tailer runs.
//!
//! Plain data: the tailer decides how to read, discovery what to read.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// How lines of a file are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// The line is the event body.
    #[default]
    Raw,
    /// Docker's json-file log driver.
    DockerJson,
    /// The CRI log format (Kubernetes nodes with containerd or CRI-O);
    /// json-file lines are recognised too (nodes running Docker).
    Cri,
}

/// Tags shared by every event of a target, e.g. `container.name`.
pub type Tags = Arc<[(String, String)]>;

/// What to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Stable identity, e.g. `docker/<container id>/stdout`.
    pub id: Arc<str>,
    /// Absolute glob patterns of host files.
    pub include: Vec<String>,
    /// Absolute glob patterns to skip.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Tags put on every batch read from these files.
    pub tags: Tags,
    /// How lines are decoded.
    #[serde(default)]
    pub format: Format,
    /// Its files exist when it is added (a started container's own log):
    /// finding none then means they were removed before they could be
    /// read, which is logged and counted, never silent.
    #[serde(default)]
    pub lost_if_absent: bool,
}

/// A change of what to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetUpdate {
    /// Read this target (replaces one with the same id: new tags apply to
    /// its open files from their next batch on, e.g. after a rename).
    Added(Target),
    /// Stop reading this target: its files are read to their end (after a
    /// short quiet period, for writers still flushing), then released.
    Removed(Arc<str>),
    /// The complete set as discovery sees it now: targets not in it are
    /// removed as above, new ones added. Sent after every (re)list.
    Sync(Vec<Target>),
}
