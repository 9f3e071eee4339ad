//! Counters of one pipeline.

use crate::telemetry::Counter;

/// What a pipeline did.
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Events that entered the processor chain.
    pub events_in: Counter,
    /// Batches that entered the processor chain.
    pub batches_in: Counter,
    /// Events that left the processor chain (after drops and splits).
    pub events_processed: Counter,
    /// Events each flusher confirmed, summed over flushers.
    pub events_delivered: Counter,
    /// Events written to the dead-letter file.
    pub events_dead_lettered: Counter,
    /// Events discarded by a `drop` policy.
    pub events_dropped: Counter,
    /// Batches a processor failed on and that were passed on unprocessed.
    pub batches_skipped: Counter,
    /// Retries of flush calls.
    pub flush_retries: Counter,
    /// Retries of process calls.
    pub process_retries: Counter,
    /// Events written to the disk buffer at shutdown.
    pub events_buffered: Counter,
    /// Events replayed from the disk buffer and delivered.
    pub events_replayed: Counter,
    /// Per processor swap: how long it held the processor thread, plus how
    /// much longer the first batch on the new chain took than the last one
    /// on the old (a cold instance's warm-up).
    pub swap_pause: crate::telemetry::Histogram,
}
