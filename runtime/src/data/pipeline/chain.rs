//! The processor chain of one worker: runs each processor instance in
//! order, retries traps with backoff, and applies the give-up policy
//! (skip: pass the batch on unprocessed; dead-letter; drop).

use std::sync::Arc;

use tracing::{error, warn};

use crate::data::flush::policy::{GiveUp, OnError, Step};
use crate::data::tap::{Point, Taps};
use crate::model::event::Batch;
use crate::model::shutdown::Shutdown;
use crate::plugin::{CallError, Instance};
use crate::state::dead_letter::DeadLetter;
use crate::telemetry::stats::PipelineStats;

/// One processor in the chain.
pub struct Stage {
    /// Its instance (owned by this worker).
    pub instance: Instance,
    /// Its failure policy.
    pub on_error: OnError,
}

/// What every chain of a pipeline shares.
pub struct Shared {
    /// Where given-up batches go.
    pub dead_letter: Arc<DeadLetter>,
    /// Pipeline counters.
    pub stats: Arc<PipelineStats>,
    /// The pipeline's stop signal: past its deadline, failing batches are
    /// not retried but left undelivered (read again after the restart).
    pub shutdown: Arc<Shutdown>,
    /// Samples of each processor's output.
    pub taps: Arc<Taps>,
}

/// The chain of one worker.
pub struct Chain {
    /// Stages in order.
    pub stages: Vec<Stage>,
    /// The pipeline's dead letters, counters, stop signal and taps.
    pub shared: Arc<Shared>,
}

/// The pipeline is past its shutdown deadline and a stage failed: the
/// batch is neither processed nor given up, but left undelivered (its
/// bytes stay uncommitted and are read again after the restart).
#[derive(Debug)]
pub struct Abandoned;

impl Chain {
    /// Runs the batch through every stage from `from` on (0 but for
    /// replayed dead letters). `Ok(None)` if a stage gave up on it (it was
    /// dead-lettered or dropped, and counted).
    pub fn run(&mut self, batch: Batch, from: usize) -> Result<Option<Batch>, Abandoned> {
        Self::run_stages(&mut self.stages, from, batch, &self.shared)
    }

    /// [`Chain::run`] over `stages` (e.g. the previous chain, kept while
    /// new processors are on probation).
    pub fn run_stages(
        stages: &mut [Stage],
        from: usize,
        mut batch: Batch,
        shared: &Shared,
    ) -> Result<Option<Batch>, Abandoned> {
        for (n, stage) in stages.iter_mut().enumerate().skip(from) {
            if batch.is_empty() {
                break;
            }
            batch = match Self::stage(stage, n, batch, shared)? {
                Some(b) => b,
                None => return Ok(None),
            };
            shared.taps.observe(Point::Processor(n), &batch);
        }
        Ok(Some(batch))
    }

    /// Runs the batch through every stage from `from` on once, without
    /// retries or give-up policy: the first failure is returned with the
    /// plugin's name (the caller still holds a copy of the batch).
    pub fn try_run(
        &mut self,
        mut batch: Batch,
        from: usize,
    ) -> Result<Batch, (Arc<str>, CallError)> {
        for (n, stage) in self.stages.iter_mut().enumerate().skip(from) {
            if batch.is_empty() {
                break;
            }
            batch = stage
                .instance
                .process(&mut batch)
                .map_err(|e| (stage.instance.prepared().ident().plugin.clone(), e))?;
            self.shared.taps.observe(Point::Processor(n), &batch);
        }
        Ok(batch)
    }

    fn stage(
        stage: &mut Stage,
        n: usize,
        mut batch: Batch,
        shared: &Shared,
    ) -> Result<Option<Batch>, Abandoned> {
        let (stats, shutdown) = (&shared.stats, &shared.shutdown);
        let mut backoff = stage.on_error.backoff;
        let mut attempt = 0;
        loop {
            let err = match stage.instance.process(&mut batch) {
                Ok(out) => return Ok(Some(out)),
                Err(e) => e,
            };
            let plugin = stage.instance.prepared().ident().plugin.clone();
            if shutdown.expired() {
                warn!(plugin = &*plugin, events = batch.len(), error = %err, "Processor failed after the shutdown deadline; leaving the batch undelivered (it is read again after the restart).");
                return Err(Abandoned);
            }
            if stage.on_error.after(&err, attempt) == Step::Retry {
                attempt += 1;
                stats.process_retries.inc();
                warn!(plugin = &*plugin, attempt, error = %err, "Processor failed; retrying the batch.");
                shutdown.sleep(backoff);
                if shutdown.expired() {
                    return Err(Abandoned);
                }
                backoff = stage.on_error.next_backoff(backoff);
                continue;
            }
            error!(plugin = &*plugin, attempts = attempt + 1, events = batch.len(), error = %err, policy = ?stage.on_error.then, "Processor gave up on a batch.");
            return Ok(match stage.on_error.then {
                GiveUp::Skip => {
                    stats.batches_skipped.inc();
                    Some(batch)
                }
                GiveUp::DeadLetter => {
                    let at = format!("processor:{n}");
                    let reason = err.to_string();
                    shared
                        .dead_letter
                        .write((&at, &*plugin), &reason, &batch, stats);
                    None
                }
                GiveUp::Drop => {
                    stats.events_dropped.add(batch.len() as u64);
                    None
                }
            });
        }
    }
}
