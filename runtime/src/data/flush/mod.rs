//! Drives one flusher of a pipeline on its own thread.
//!
//! - At start, replays the flusher's disk buffer (batches left undelivered
//!   by the last graceful stop), oldest first, before anything new.
//! - A `retryable` error is retried with exponential backoff until the
//!   batch is delivered (an output that is down slows its own pipeline; the
//!   bounded queues stop reading upstream). A trap is retried `retries`
//!   times; a `rejected` batch is not retried. Given-up batches go to the
//!   dead-letter file (or are dropped, by policy), counted either way.
//! - When the pipeline stops, delivery goes on until the drain deadline;
//!   after it, every batch still undelivered is written to the disk buffer.
//!
//! - A flusher that answers per item (`flush-report`) has the events it
//!   refused dead-lettered with their reasons; the batch shrinks to the
//!   events it asked to retry, which are retried (or spilled, or buffered)
//!   as a whole batch would be, so accepted events are never sent again.
//!
//! A batch's acknowledgement is released (delivered) once it is delivered,
//! dead-lettered, dropped by policy or buffered, and marked failed if even
//! the buffer cannot take it. Knows plugins only through `plugin::Instance`.

pub mod policy;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use tracing::{error, info, warn};

use self::policy::{GiveUp, OnError, Spill, Step};
use crate::data::batch::Envelope;
use crate::model::event::Batch;
pub use crate::model::shutdown::Shutdown;
use crate::plugin::{CallError, FlushReport, Instance};
use crate::state::buffer::DiskBuffer;
use crate::state::dead_letter::DeadLetter;
use crate::telemetry::stats::PipelineStats;

/// One flusher worker.
pub struct FlushWorker {
    /// The flusher instance.
    pub instance: Instance,
    /// Its place among the pipeline's flushers (named in dead letters).
    pub index: usize,
    /// Failure policy.
    pub on_error: OnError,
    /// Where given-up batches go.
    pub dead_letter: Arc<DeadLetter>,
    /// Where undelivered batches go at shutdown.
    pub buffer: Arc<DiskBuffer>,
    /// The pipeline's stop signal.
    pub shutdown: Arc<Shutdown>,
    /// Spill to the disk buffer while the destination fails (else wait).
    pub spill: Option<Spill>,
    /// Pipeline counters.
    pub stats: Arc<PipelineStats>,
}

/// The result of one delivery attempt in spill mode.
enum Attempt {
    /// Delivered, dead-lettered or dropped by policy.
    Done,
    /// The destination is failing: keep the batch for later.
    Later(CallError),
}

/// How one delivery attempt sequence ended.
enum Outcome {
    /// Delivered, dead-lettered or dropped by policy: done with it.
    Done,
    /// The drain deadline passed first.
    Undelivered,
    /// The output is gone for good (stdout closed by its reader): nothing
    /// more can be delivered, so the pipeline ends.
    Closed,
}

impl FlushWorker {
    /// Replays the buffer, then runs until the queue is closed and drained.
    /// If its output closes for good, it tells the pipeline's inputs to
    /// stop reading and leaves every batch after that undelivered.
    pub fn spawn(
        mut self,
        name: String,
        queue: Receiver<Envelope>,
    ) -> std::io::Result<JoinHandle<()>> {
        // The previous version of this pipeline (a reload) may have
        // buffered batches since this one was prepared.
        self.buffer.rescan()?;
        self.instance.abort_on(&self.shutdown);
        // Every line this thread logs names its pipeline.
        let span =
            tracing::info_span!("flusher", pipeline = %self.instance.prepared().ident().pipeline);
        std::thread::Builder::new().name(name).spawn(move || {
            span.in_scope(|| match self.spill {
                Some(spill) => self.run_spilling(&queue, spill),
                None => {
                    let mut closed = matches!(self.replay(), Outcome::Closed);
                    for mut envelope in queue {
                        if closed {
                            // Read again on a later start, by then with
                            // somewhere to go.
                            envelope.fail();
                            continue;
                        }
                        if self.shutdown.expired() {
                            self.to_buffer(&envelope);
                            continue;
                        }
                        match self.deliver(&mut envelope.batch) {
                            Outcome::Done => {}
                            Outcome::Undelivered => self.to_buffer(&envelope),
                            Outcome::Closed => {
                                closed = true;
                                self.shutdown.reading().store(true, Ordering::Relaxed);
                                envelope.fail();
                            }
                        }
                    }
                }
            })
        })
    }

    /// Spill mode: while the destination fails, batches go to the disk
    /// buffer (and count as delivered: reading goes on); the buffer is
    /// delivered oldest first whenever the destination answers again, and
    /// new batches queue behind it on disk so the order is kept.
    fn run_spilling(&mut self, queue: &Receiver<Envelope>, spill: Spill) {
        let mut backoff = self.on_error.backoff;
        let mut retry_at = Instant::now();
        loop {
            // Buffered batches first, when it is time to try again.
            while !self.shutdown.expired() && Instant::now() >= retry_at {
                let Some(seg) = self.buffer.oldest() else {
                    break;
                };
                match DiskBuffer::read(&seg) {
                    Err(e) => {
                        error!(error = %e, "Setting aside an unreadable buffer segment.");
                        let _ = self.buffer.set_aside(&seg);
                    }
                    Ok(mut batch) => match (batch.len(), self.attempt(&mut batch)) {
                        (_, Attempt::Done) => {
                            self.stats.events_replayed.add(batch.len() as u64);
                            backoff = self.on_error.backoff;
                            if let Err(e) = self.buffer.remove(&seg) {
                                warn!(error = %e, "Cannot remove a delivered buffer segment: it will be sent again.");
                            }
                        }
                        (before, Attempt::Later(err)) => {
                            self.keep_rest(&seg, before, &batch);
                            warn!(error = %err, backoff_ms = backoff.as_millis() as u64, "Destination still failing; keeping the disk buffer.");
                            retry_at = Instant::now() + backoff;
                            backoff = self.on_error.next_backoff(backoff);
                        }
                    },
                }
            }
            let buffered = self.buffer.oldest().is_some();
            let wait = if buffered {
                retry_at
                    .saturating_duration_since(Instant::now())
                    .clamp(Duration::from_millis(1), Duration::from_millis(100))
            } else {
                Duration::from_millis(100)
            };
            let mut envelope = match queue.recv_timeout(wait) {
                Ok(e) => e,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            };
            if self.shutdown.expired() {
                self.to_buffer(&envelope);
                continue;
            }
            if !buffered {
                match self.attempt(&mut envelope.batch) {
                    Attempt::Done => continue,
                    Attempt::Later(err) => {
                        warn!(error = %err, "Flush failed; spilling to the disk buffer.");
                        retry_at = Instant::now() + backoff;
                    }
                }
            }
            self.spill(&envelope, spill, &mut retry_at, &mut backoff);
        }
    }

    /// Writes a batch behind the buffered ones, making room per policy.
    fn spill(
        &mut self,
        envelope: &Envelope,
        spill: Spill,
        retry_at: &mut Instant,
        backoff: &mut Duration,
    ) {
        if spill.drop_oldest {
            while self.buffer.size() >= spill.max_bytes {
                let Some(seg) = self.buffer.oldest() else {
                    break;
                };
                let events = DiskBuffer::read(&seg).map(|b| b.len() as u64).unwrap_or(0);
                if self.buffer.remove(&seg).is_err() {
                    break;
                }
                self.stats.events_dropped.add(events);
                warn!(events, "Disk buffer full: dropped its oldest batch.");
            }
        } else {
            // Block: deliver the oldest buffered batches until there is room.
            while self.buffer.size() >= spill.max_bytes && !self.shutdown.expired() {
                let Some(seg) = self.buffer.oldest() else {
                    break;
                };
                let Ok(mut batch) = DiskBuffer::read(&seg) else {
                    let _ = self.buffer.set_aside(&seg);
                    continue;
                };
                let before = batch.len();
                match self.attempt(&mut batch) {
                    Attempt::Done => {
                        self.stats.events_replayed.add(batch.len() as u64);
                        let _ = self.buffer.remove(&seg);
                        *backoff = self.on_error.backoff;
                    }
                    Attempt::Later(_) => {
                        self.keep_rest(&seg, before, &batch);
                        self.shutdown.sleep(*backoff);
                        *backoff = self.on_error.next_backoff(*backoff);
                    }
                }
            }
            *retry_at = (*retry_at).min(Instant::now() + *backoff);
        }
        match self.buffer.write(&envelope.batch) {
            Ok(_) => self.stats.events_buffered.add(envelope.batch.len() as u64),
            Err(e) => {
                envelope.fail();
                error!(error = %e, "Cannot spill to the disk buffer; the batch will be read again after restart.");
            }
        }
    }

    /// One delivery attempt: traps are retried per policy, a `retryable`
    /// error is handed back, a rejection is dead-lettered.
    fn attempt(&mut self, batch: &mut Batch) -> Attempt {
        let mut traps = 0;
        let plugin = self.instance.prepared().ident().plugin.clone();
        loop {
            let err = match self.instance.flush(batch) {
                Ok(report) if report.is_empty() => {
                    self.stats.events_delivered.add(batch.len() as u64);
                    return Attempt::Done;
                }
                Ok(report) => match self.settle(batch, report) {
                    None => return Attempt::Done,
                    Some(err) => return Attempt::Later(err),
                },
                Err(e) => e,
            };
            match self.on_error.after(&err, traps) {
                Step::Later => return Attempt::Later(err),
                Step::Retry => {
                    traps += 1;
                    self.stats.flush_retries.inc();
                    warn!(plugin = &*plugin, attempt = traps, error = %err, "Flusher trapped; retrying the batch.");
                    self.shutdown.sleep(self.on_error.backoff);
                    continue;
                }
                Step::GiveUp => {}
            }
            error!(plugin = &*plugin, events = batch.len(), error = %err, "Giving up on a batch.");
            match self.on_error.then {
                GiveUp::DeadLetter | GiveUp::Skip => {
                    let stage = format!("flusher:{}", self.index);
                    self.dead_letter
                        .write((&stage, &*plugin), &err.to_string(), batch, &self.stats)
                }
                GiveUp::Drop => self.stats.events_dropped.add(batch.len() as u64),
            }
            return Attempt::Done;
        }
    }

    /// Applies a per-item answer: counts what was delivered, gives up on
    /// what was refused (dead letter or drop, by policy, with each event's
    /// reason), and leaves in `batch` only the events to retry; `Some`
    /// error if there are any.
    fn settle(&mut self, batch: &mut Batch, report: FlushReport) -> Option<CallError> {
        let plugin = self.instance.prepared().ident().plugin.clone();
        let total = batch.len();
        let delivered = total - report.retry.len() - report.rejected.len();
        self.stats.events_delivered.add(delivered as u64);
        // One dead-letter write per distinct reason.
        let mut by_reason: Vec<(&str, Vec<u32>)> = Vec::new();
        for (i, reason) in &report.rejected {
            match by_reason.iter_mut().find(|(r, _)| r == reason) {
                Some((_, events)) => events.push(*i),
                None => by_reason.push((reason, vec![*i])),
            }
        }
        for (reason, events) in by_reason {
            let refused = batch.select(&events);
            warn!(
                plugin = &*plugin,
                events = refused.len(),
                reason,
                "The destination refused events for good."
            );
            match self.on_error.then {
                GiveUp::DeadLetter | GiveUp::Skip => self.dead_letter.write(
                    (&format!("flusher:{}", self.index), &*plugin),
                    &format!("flusher rejected the event: {reason}"),
                    &refused,
                    &self.stats,
                ),
                GiveUp::Drop => self.stats.events_dropped.add(refused.len() as u64),
            }
        }
        if report.retry.is_empty() {
            return None;
        }
        *batch = batch.select(&report.retry);
        Some(CallError::Retryable(format!(
            "the destination asked for {} of {total} events again",
            batch.len()
        )))
    }

    /// Delivers what the last graceful stop left in the buffer.
    fn replay(&mut self) -> Outcome {
        let segments = match self.buffer.segments() {
            Ok(s) => s,
            Err(e) => {
                error!(error = %e, "Cannot list the disk buffer; its batches stay there.");
                return Outcome::Done;
            }
        };
        if !segments.is_empty() {
            info!(
                segments = segments.len(),
                "Replaying the disk buffer before new input."
            );
        }
        for seg in segments {
            let mut batch = match DiskBuffer::read(&seg) {
                Ok(b) => b,
                Err(e) => {
                    error!(error = %e, "Skipping an unreadable buffer segment (left in place).");
                    continue;
                }
            };
            let before = batch.len();
            match self.deliver(&mut batch) {
                Outcome::Done => {
                    self.stats.events_replayed.add(batch.len() as u64);
                    if let Err(e) = std::fs::remove_file(&seg) {
                        warn!(path = %seg.display(), error = %e, "Cannot remove a delivered buffer segment: it will be sent again.");
                    }
                }
                // Still undeliverable at shutdown: it stays in the buffer
                // (only what the destination did not take).
                Outcome::Undelivered => {
                    self.keep_rest(&seg, before, &batch);
                    return Outcome::Undelivered;
                }
                Outcome::Closed => return Outcome::Closed,
            }
        }
        Outcome::Done
    }

    /// After a partial delivery of a buffered batch, rewrites its segment
    /// with what is left, so what was delivered is not sent again.
    fn keep_rest(&self, seg: &std::path::Path, before: usize, rest: &Batch) {
        // Unchanged batches keep their segment as it is.
        if rest.len() == before {
            return;
        }
        if let Err(e) = self.buffer.rewrite(seg, rest) {
            warn!(error = %e, "Cannot rewrite a partly delivered buffer segment: all of it will be sent again.");
        }
    }

    fn to_buffer(&self, envelope: &Envelope) {
        match self.buffer.write(&envelope.batch) {
            Ok(path) => {
                self.stats.events_buffered.add(envelope.batch.len() as u64);
                info!(path = %path.display(), events = envelope.batch.len(), "Buffered an undelivered batch for the next start.");
            }
            Err(e) => {
                envelope.fail();
                error!(error = %e, events = envelope.batch.len(), "Cannot write the disk buffer; the batch will be read again after restart.");
            }
        }
    }

    /// Delivers a batch, retrying `retryable` errors with backoff until it
    /// is delivered or the drain deadline passes.
    fn deliver(&mut self, batch: &mut Batch) -> Outcome {
        let mut backoff = self.on_error.backoff;
        let plugin = self.instance.prepared().ident().plugin.clone();
        loop {
            let err = match self.attempt(batch) {
                Attempt::Done => return Outcome::Done,
                Attempt::Later(err) => err,
            };
            if self.instance.prepared().writes_stdout() && crate::plugin::stdout_closed() {
                error!(plugin = &*plugin, error = %err, "Stdout is closed: this pipeline can deliver nothing more, so it ends (what it read and did not deliver is read again on the next start).");
                return Outcome::Closed;
            }
            if self.shutdown.expired() {
                return Outcome::Undelivered;
            }
            self.stats.flush_retries.inc();
            warn!(plugin = &*plugin, error = %err, backoff_ms = backoff.as_millis() as u64, "Flush failed; retrying.");
            self.shutdown.sleep(backoff);
            if self.shutdown.expired() {
                return Outcome::Undelivered;
            }
            backoff = self.on_error.next_backoff(backoff);
        }
    }
}
