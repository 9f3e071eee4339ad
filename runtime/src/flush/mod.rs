//! Drives one flusher of a pipeline on its own thread: takes batches from
//! its bounded queue, calls the plugin, retries `retryable` errors and traps
//! with exponential backoff, and gives up per policy (dead-letter or drop,
//! both counted). Knows plugins only through `plugin::Instance`.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Receiver;
use tracing::{error, warn};

use crate::config::{GiveUp, OnError};
use crate::event::Batch;
use crate::pipeline::dead_letter::DeadLetter;
use crate::pipeline::stats::PipelineStats;
use crate::plugin::{CallError, Instance};

/// One flusher worker.
pub struct FlushWorker {
    /// The flusher instance.
    pub instance: Instance,
    /// Failure policy.
    pub on_error: OnError,
    /// Where given-up batches go.
    pub dead_letter: Arc<DeadLetter>,
    /// Pipeline counters.
    pub stats: Arc<PipelineStats>,
}

impl FlushWorker {
    /// Runs until the queue is closed and drained.
    pub fn spawn(
        mut self,
        name: String,
        queue: Receiver<Batch>,
    ) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new().name(name).spawn(move || {
            for mut batch in queue {
                self.deliver(&mut batch);
            }
        })
    }

    fn deliver(&mut self, batch: &mut Batch) {
        let mut backoff = self.on_error.backoff;
        let mut attempt = 0;
        let plugin = self.instance.prepared().ident().plugin.clone();
        loop {
            let err = match self.instance.flush(batch) {
                Ok(()) => {
                    self.stats.events_delivered.add(batch.len() as u64);
                    return;
                }
                Err(e) => e,
            };
            let retryable = matches!(err, CallError::Retryable(_) | CallError::Trap(_));
            if retryable && attempt < self.on_error.retries {
                attempt += 1;
                self.stats.flush_retries.inc();
                warn!(plugin = &*plugin, attempt, error = %err, backoff_ms = backoff.as_millis() as u64, "Flush failed; retrying.");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(self.on_error.max_backoff);
                continue;
            }
            error!(plugin = &*plugin, attempts = attempt + 1, events = batch.len(), error = %err, "Giving up on a batch.");
            match self.on_error.then {
                GiveUp::DeadLetter | GiveUp::Skip => {
                    self.dead_letter
                        .write(&plugin, &err.to_string(), batch, &self.stats);
                }
                GiveUp::Drop => self.stats.events_dropped.add(batch.len() as u64),
            }
            return;
        }
    }
}
