//! Swapping a running pipeline's processor chain at a batch boundary, and
//! what the processor thread reports about it: the chain handed over
//! ([`Swap`]), probation and rollbacks ([`SwapStatus`]), and the handle
//! other threads swap through ([`Swapper`]).

use std::sync::Arc;

use crossbeam_channel::{Sender, bounded};

use super::Processors;
use super::chain::Stage;

/// Checked `rollback`: new processors are on probation for their first
/// `batches`; more than `max_failures` failed batches roll them back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rollback {
    /// Probation length in batches (0: none).
    pub batches: u32,
    /// Failed batches tolerated during probation.
    pub max_failures: u32,
}

/// New processor chains (one per worker) handed to the sequencer.
pub(super) struct Swap {
    pub(super) workers: Vec<Vec<Stage>>,
    /// Numbers the chain (the supervisor's count of swaps).
    pub(super) generation: u64,
    /// Probation of the new chain.
    pub(super) rollback: Rollback,
    /// Gets how long the swap held the pipeline (waiting for the batches
    /// in hand, then the workers), and the old chains that are not kept
    /// for probation (dropped by the caller, off the data path).
    pub(super) done: Sender<(std::time::Duration, Vec<Option<Vec<Stage>>>)>,
}

/// One worker's new chain, handed over at the cut.
pub(super) struct WorkerSwap {
    pub(super) stages: Vec<Stage>,
    pub(super) generation: u64,
    pub(super) rollback: Rollback,
    /// How long the sequencer waited for the batches in hand.
    pub(super) drained: std::time::Duration,
    /// Gets the old chain, unless it is kept for probation.
    pub(super) applied: Sender<Option<Vec<Stage>>>,
}

/// What the processor thread reports about swaps and rollbacks.
#[derive(Debug, Clone, Default)]
pub struct SwapStatus {
    /// Generation of the chain processing now (0: the one started with).
    pub active: u64,
    /// Generation on probation: batches seen and failed so far.
    pub probation: Option<Probation>,
    /// Swaps taken.
    pub swaps: u64,
    /// Rollbacks done.
    pub rollbacks: u64,
    /// The last rollback.
    pub last_rollback: Option<RollbackReport>,
    /// The last probation verdict, `(generation, passed)`: how every
    /// worker learns what the one that reached it decided.
    pub(super) verdict: Option<(u64, bool)>,
}

/// A chain on probation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probation {
    /// Its generation.
    pub generation: u64,
    /// Batches it processed (or failed on).
    pub seen: u32,
    /// Batches it failed on (each went through the previous chain).
    pub failed: u32,
}

/// What probation says after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Still on probation.
    Pending,
    /// Passed: the previous chain can go.
    Passed,
    /// Failed on more batches than allowed: roll back.
    Failed(Probation),
}

impl Probation {
    /// Counts one batch the new chain processed (`failed`: it failed on it
    /// and the previous chain processed it instead) and says whether
    /// probation is over. More than `max_failures` failures fail it at
    /// once; otherwise it passes after `batches` batches.
    pub fn record(&mut self, failed: bool, rollback: Rollback) -> Verdict {
        self.seen += 1;
        self.failed += u32::from(failed);
        if self.failed > rollback.max_failures {
            Verdict::Failed(*self)
        } else if self.seen >= rollback.batches {
            Verdict::Passed
        } else {
            Verdict::Pending
        }
    }
}

/// A rollback: which chain failed, which took over again, and why.
#[derive(Debug, Clone)]
pub struct RollbackReport {
    /// Generation rolled back.
    pub generation: u64,
    /// Generation processing again.
    pub restored: u64,
    /// Batches it failed on, of `seen`.
    pub failed: u32,
    /// Batches it saw.
    pub seen: u32,
    /// The last failure.
    pub error: String,
    /// When.
    pub at: std::time::SystemTime,
}

pub(super) type SharedSwapStatus = Arc<std::sync::Mutex<SwapStatus>>;

/// Why a processor swap did not happen.
#[derive(Debug, thiserror::Error)]
#[error("the pipeline's processor thread has stopped")]
pub struct SwapError;

/// Swaps a running pipeline's processors from another thread.
#[derive(Clone)]
pub struct Swapper {
    /// To the sequencer.
    pub(super) swap: Sender<Swap>,
    /// How many workers (chains) the pipeline runs.
    pub(super) workers: usize,
    pub(super) status: SharedSwapStatus,
}

impl Swapper {
    /// Replaces the processor chains at the next batch boundary (batches
    /// already handed to flushers are not touched). With a `rollback` probation, the old
    /// chain is kept until the new one has passed its first batches, and
    /// takes over again if it fails on too many (each failed batch goes
    /// through the old chain instead). The batches in hand finish on the
    /// old chains first, then every worker swaps at once. Returns how long
    /// the pipeline was held for the swap.
    pub fn swap(
        &self,
        processors: Processors,
        generation: u64,
        rollback: Rollback,
    ) -> Result<std::time::Duration, SwapError> {
        if processors.workers.len() != self.workers {
            return Err(SwapError);
        }
        {
            let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
            s.active = generation;
            s.swaps += 1;
            s.probation = (rollback.batches > 0).then_some(Probation {
                generation,
                seen: 0,
                failed: 0,
            });
        }
        let (done_tx, done_rx) = bounded(1);
        self.swap
            .send(Swap {
                workers: processors.workers,
                generation,
                rollback,
                done: done_tx,
            })
            .map_err(|_| SwapError)?;
        // The old chains come back and are dropped here, not on the
        // processor threads.
        let (held, old) = done_rx.recv().map_err(|_| SwapError)?;
        drop(old);
        Ok(held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probation() -> Probation {
        Probation {
            generation: 3,
            seen: 0,
            failed: 0,
        }
    }

    #[test]
    fn probation_passes_after_its_batches_with_failures_tolerated() {
        let rule = Rollback {
            batches: 4,
            max_failures: 1,
        };
        let mut p = probation();
        assert_eq!(p.record(false, rule), Verdict::Pending);
        assert_eq!(
            p.record(true, rule),
            Verdict::Pending,
            "one failure tolerated"
        );
        assert_eq!(p.record(false, rule), Verdict::Pending);
        assert_eq!(p.record(false, rule), Verdict::Passed);
    }

    #[test]
    fn probation_fails_at_once_past_the_failures_it_tolerates() {
        let rule = Rollback {
            batches: 100,
            max_failures: 1,
        };
        let mut p = probation();
        assert_eq!(p.record(true, rule), Verdict::Pending);
        let failed = Probation {
            generation: 3,
            seen: 2,
            failed: 2,
        };
        assert_eq!(p.record(true, rule), Verdict::Failed(failed));
    }

    #[test]
    fn no_failure_allowed_fails_on_the_first() {
        let rule = Rollback {
            batches: 5,
            max_failures: 0,
        };
        let mut p = probation();
        assert!(matches!(p.record(true, rule), Verdict::Failed(_)));
    }
}
