//! The processor chain of one worker: runs each processor instance in
//! order, retries traps with backoff, and applies the give-up policy
//! (skip: pass the batch on unprocessed; dead-letter; drop).

use std::sync::Arc;

use tracing::{error, warn};

use super::dead_letter::DeadLetter;
use super::stats::PipelineStats;
use crate::config::{GiveUp, OnError};
use crate::event::Batch;
use crate::plugin::{CallError, Instance};

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
}

impl Chain {
    /// Runs the batch through every stage. `None` if a stage gave up on it
    /// (it was dead-lettered or dropped, and counted).
    pub fn run(&mut self, batch: Batch) -> Option<Batch> {
        Self::run_stages(&mut self.stages, batch, &self.dead_letter, &self.stats)
    }

    /// [`Chain::run`] over `stages` (e.g. the previous chain, kept while
    /// new processors are on probation).
    pub fn run_stages(
        stages: &mut [Stage],
        mut batch: Batch,
        dead_letter: &DeadLetter,
        stats: &PipelineStats,
    ) -> Option<Batch> {
        for stage in stages {
            if batch.is_empty() {
                break;
            }
            batch = Self::stage(stage, batch, dead_letter, stats)?;
        }
        Some(batch)
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
    ) -> Option<Batch> {
        let mut backoff = stage.on_error.backoff;
        let mut attempt = 0;
        loop {
            let err = match stage.instance.process(&mut batch) {
                Ok(out) => return Some(out),
                Err(e) => e,
            };
            let plugin = stage.instance.prepared().ident().plugin.clone();
            if matches!(err, CallError::Trap(_)) && attempt < stage.on_error.retries {
                attempt += 1;
                stats.process_retries.inc();
                warn!(plugin = &*plugin, attempt, error = %err, "Processor failed; retrying the batch.");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(stage.on_error.max_backoff);
                continue;
            }
            error!(plugin = &*plugin, attempts = attempt + 1, events = batch.len(), error = %err, policy = ?stage.on_error.then, "Processor gave up on a batch.");
            return match stage.on_error.then {
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
            };
        }
    }
}
