//! The processor chain of one worker: runs each processor instance in
//! order, retries traps with backoff, and applies the give-up policy
//! (skip: pass the batch on unprocessed; dead-letter; drop).

use std::sync::Arc;

use tracing::{error, warn};

use crate::data::flush::policy::{GiveUp, OnError, Step};
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

/// The chain of one worker.
pub struct Chain {
    /// Stages in order.
    pub stages: Vec<Stage>,
    /// Where given-up batches go.
    pub dead_letter: Arc<DeadLetter>,
    /// Pipeline counters.
    pub stats: Arc<PipelineStats>,
    /// The pipeline's stop signal: past its deadline, failing batches are
    /// not retried but left undelivered (read again after the restart).
    pub shutdown: Arc<Shutdown>,
}

/// The pipeline is past its shutdown deadline and a stage failed: the
/// batch is neither processed nor given up, but left undelivered (its
/// bytes stay uncommitted and are read again after the restart).
#[derive(Debug)]
pub struct Abandoned;

impl Chain {
    /// Runs the batch through every stage. `Ok(None)` if a stage gave up
    /// on it (it was dead-lettered or dropped, and counted).
    pub fn run(&mut self, batch: Batch) -> Result<Option<Batch>, Abandoned> {
        Self::run_stages(
            &mut self.stages,
            batch,
            &self.dead_letter,
            &self.stats,
            &self.shutdown,
        )
    }

    /// [`Chain::run`] over `stages` (e.g. the previous chain, kept while
    /// new processors are on probation).
    pub fn run_stages(
        stages: &mut [Stage],
        mut batch: Batch,
        dead_letter: &DeadLetter,
        stats: &PipelineStats,
        shutdown: &Shutdown,
    ) -> Result<Option<Batch>, Abandoned> {
        for stage in stages {
            if batch.is_empty() {
                break;
            }
            batch = match Self::stage(stage, batch, dead_letter, stats, shutdown)? {
                Some(b) => b,
                None => return Ok(None),
            };
        }
        Ok(Some(batch))
    }

    /// Runs the batch through every stage once, without retries or
    /// give-up policy: the first failure is returned with the plugin's
    /// name (the caller still holds a copy of the batch).
    pub fn try_run(&mut self, mut batch: Batch) -> Result<Batch, (Arc<str>, CallError)> {
        for stage in &mut self.stages {
            if batch.is_empty() {
                break;
            }
            batch = stage
                .instance
                .process(&mut batch)
                .map_err(|e| (stage.instance.prepared().ident().plugin.clone(), e))?;
        }
        Ok(batch)
    }

    fn stage(
        stage: &mut Stage,
        mut batch: Batch,
        dead_letter: &DeadLetter,
        stats: &PipelineStats,
        shutdown: &Shutdown,
    ) -> Result<Option<Batch>, Abandoned> {
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
                    dead_letter.write(&plugin, &err.to_string(), &batch, stats);
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
