//! Counters of one pipeline, declared once with their metric names.

crate::telemetry::counters! {
    /// What a pipeline did.
    pub struct PipelineStats {
        /// Events that entered the processor chain.
        events_in => "pipeline_events_in_total",
        /// Batches that entered the processor chain.
        batches_in => "pipeline_batches_in_total",
        /// Events that left the processor chain.
        events_processed => "pipeline_events_processed_total",
        /// Events every flusher delivered (per flusher).
        events_delivered => "pipeline_events_delivered_total",
        /// Events written to the dead-letter file.
        events_dead_lettered => "pipeline_events_dead_lettered_total",
        /// Events dropped by policy.
        events_dropped => "pipeline_events_dropped_total",
        /// Batches a processor failed on and passed on unprocessed (skip).
        batches_skipped => "pipeline_batches_skipped_total",
        /// Flush attempts retried.
        flush_retries => "pipeline_flush_retries_total",
        /// Processor calls retried.
        process_retries => "pipeline_process_retries_total",
        /// Events written to the disk buffer.
        events_buffered => "pipeline_events_buffered_total",
        /// Events replayed from the disk buffer.
        events_replayed => "pipeline_events_replayed_total",
        /// Dead-lettered events sent back (`gleaner dead-letter replay`).
        events_resent => "pipeline_events_resent_total",
    }
    extra {
        /// Per processor swap: how long it held the processor thread, plus
        /// how much longer the first batch on the new chain took than the
        /// last one on the old (a cold instance's warm-up).
        swap_pause: crate::telemetry::Histogram,
    }
}
