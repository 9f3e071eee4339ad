//! Discovery decides *what* to read: it watches what runs on the node (the
//! Docker engine now) and hands the tailer [`crate::tail::Target`]s (host
//! path patterns plus tags) as [`crate::tail::TargetUpdate`]s, through the
//! same seam a static `file` input uses.
//!
//! Must not open log files, build batches, or touch plugins or checkpoints:
//! the tailer does all of that, and knows nothing of where targets come from.

pub mod docker;

use crate::telemetry::Counter;

/// What one discovery did, for logs and metrics.
#[derive(Debug, Default)]
pub struct DiscoveryStats {
    /// Containers that became targets.
    pub containers_added: Counter,
    /// Containers skipped by the include/exclude filters.
    pub containers_filtered: Counter,
    /// Containers gone before they could be inspected (their output could
    /// not be read at all).
    pub containers_missed: Counter,
    /// Containers whose log driver Gleaner cannot read.
    pub unsupported_drivers: Counter,
    /// Failed connections or broken event streams.
    pub errors: Counter,
    /// Full lists of the containers.
    pub resyncs: Counter,
}
