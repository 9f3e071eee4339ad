//! Sending dead letters back through their pipeline (`gleaner dead-letter
//! replay`): reads the replay file that `state::dead_letter` moved the
//! chosen records into, and queues them as batches, each record entering
//! at the stage that gave it up — a processor's at that processor, a
//! flusher's at that flusher alone, so a destination that did take an
//! event does not get it twice.
//!
//! Each batch registers the replay file's offset after its last record
//! with an ack tracker, as file inputs do with log files. What is
//! delivered in order is written to `<file>.offset`; a stopped agent
//! resumes from there, and the files are removed once every record is
//! delivered (or given up again, and so back in the dead-letter file).
//!
//! Knows records and routes; not plugins, the API or the config.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{SendTimeoutError, Sender};
use serde_json::{Map, Value};

use crate::data::batch::{BatchLimits, Envelope, Route};
use crate::model::ack::{FileIdentity, FileTracker};
use crate::model::event::{Batch, json};
use crate::model::shutdown::Shutdown;
use crate::telemetry::stats::PipelineStats;

/// The plugins of the pipeline, by place: what records' stages are
/// matched against.
#[derive(Debug, Clone, Default)]
pub struct Stages {
    /// Processor plugin references, in order.
    pub processors: Vec<String>,
    /// Flusher plugin references, in order.
    pub flushers: Vec<String>,
}

impl Stages {
    /// Where a record re-enters: the stage it names if that place still
    /// holds its plugin, else the one place that does; a record no stage
    /// matches goes through the whole pipeline.
    pub fn route(&self, record: &Map<String, Value>) -> Route {
        let plugin = record.get("plugin").and_then(Value::as_str).unwrap_or("");
        let stage = record.get("stage").and_then(Value::as_str).unwrap_or("");
        let place = |list: &[String], kind: &str| -> Option<usize> {
            let named = stage
                .strip_prefix(kind)
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&n| list.get(n).is_some_and(|p| p == plugin));
            named.or_else(|| {
                let mut at = list.iter().enumerate().filter(|(_, p)| *p == plugin);
                match (at.next(), at.next()) {
                    (Some((n, _)), None) => Some(n),
                    _ => None,
                }
            })
        };
        let is_flusher = stage.starts_with("flusher:") || stage.is_empty();
        if is_flusher && let Some(n) = place(&self.flushers, "flusher:") {
            return Route {
                from_processor: self.processors.len(),
                flusher: Some(n),
            };
        }
        if let Some(n) = place(&self.processors, "processor:") {
            return Route {
                from_processor: n,
                flusher: None,
            };
        }
        Route::default()
    }
}

/// How a replay is going.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReplayStatus {
    /// Records in the replay file.
    pub events: u64,
    /// Records queued so far.
    pub sent: u64,
    /// Records delivered, in order (or given up again).
    pub delivered: u64,
    /// Every record delivered; the replay file is gone.
    pub finished: bool,
}

/// A replay to run.
pub struct Replay {
    /// The replay file.
    pub file: PathBuf,
    /// The pipeline's plugins.
    pub stages: Stages,
    /// Batch bounds.
    pub limits: BatchLimits,
    /// The pipeline's queue.
    pub out: Sender<Envelope>,
    /// The pipeline's stop signal.
    pub shutdown: Arc<Shutdown>,
    /// The pipeline's counters.
    pub stats: Arc<PipelineStats>,
    /// Progress, for the API.
    pub status: Arc<Mutex<ReplayStatus>>,
}

/// Where the delivered offset of `file` is kept.
pub fn offset_path(file: &Path) -> PathBuf {
    file.with_extension("offset")
}

/// Starts sending `replay.file` on a thread of its own.
pub fn spawn(name: String, replay: Replay) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name)
        .spawn(move || replay.run())
}

impl Replay {
    fn set(&self, f: impl FnOnce(&mut ReplayStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn run(mut self) {
        let offsets = offset_path(&self.file);
        let start = std::fs::read_to_string(&offsets)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let text = match std::fs::read(&self.file) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(path = %self.file.display(), error = %e, "Cannot read the dead letters to send back.");
                return;
            }
        };
        // Where each record ends: how many are delivered follows from the
        // delivered offset.
        let mut ends = Vec::new();
        let mut at = 0u64;
        for line in text.split_inclusive(|b| *b == b'\n') {
            at += line.len() as u64;
            ends.push(at);
        }
        let done_before = ends.partition_point(|&e| e <= start) as u64;
        self.set(|s| {
            s.events = ends.len() as u64;
            s.sent = done_before;
            s.delivered = done_before;
        });
        tracing::info!(path = %self.file.display(), events = ends.len(), already_delivered = done_before, "Sending dead letters back through the pipeline.");
        let tracker =
            FileTracker::new(FileIdentity::default(), &self.file.to_string_lossy(), start);
        let mut written = start;
        let status = self.status.clone();
        let note = |tracker: &FileTracker, written: &mut u64| {
            let committed = tracker.committed();
            if committed != *written && write_offset(&offsets, committed).is_ok() {
                *written = committed;
            }
            let delivered = ends.partition_point(|&e| e <= committed) as u64;
            status.lock().unwrap_or_else(|p| p.into_inner()).delivered = delivered;
        };
        let mut open: Option<(Batch, Route)> = None;
        let mut offset = start;
        let mut stopped = false;
        let rest = text.get(start as usize..).unwrap_or(&[]);
        for line in rest.split_inclusive(|b| *b == b'\n') {
            offset += line.len() as u64;
            let record = match serde_json::from_slice::<Map<String, Value>>(line) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(offset, error = %e, "Skipping a replay record that is not a JSON object.");
                    continue;
                }
            };
            let (tags, route) = (json::tags_of(&record), self.stages.route(&record));
            if let Some((batch, r)) = &open
                && (batch.tags != tags || *r != route || batch.len() >= self.limits.max_events)
                && let Some((batch, r)) = open.take()
                && !self.send(batch, r, &tracker, offset - line.len() as u64)
            {
                stopped = true;
                break;
            }
            // A new batch: the one before it was just sent. Progress is
            // noted once per batch, not per record.
            if open.is_none() {
                note(&tracker, &mut written);
            }
            let (batch, _) = open.get_or_insert_with(|| (Batch::with_tags(tags, 64, 4096), route));
            if let Err(e) = json::push_object(batch, &record) {
                tracing::error!(offset, error = %e, "Skipping a replay record that is not an event.");
            }
        }
        if !stopped && let Some((batch, r)) = open.take() {
            stopped = !self.send(batch, r, &tracker, offset);
        }
        // Let go of the queue (a pipeline ends once nothing can send to it).
        drop(std::mem::replace(
            &mut self.out,
            crossbeam_channel::bounded(0).0,
        ));
        // Wait for what is in flight to be settled: delivered, given up,
        // or (past the shutdown deadline) buffered to disk — each settles
        // before the pipeline's threads end, so this ends too. Leaving
        // earlier would write an offset behind batches already buffered,
        // and send them again after the restart.
        while tracker.unsettled() > 0 {
            std::thread::sleep(Duration::from_millis(20));
            note(&tracker, &mut written);
        }
        note(&tracker, &mut written);
        if !stopped && tracker.committed() >= tracker.registered() {
            for p in [&self.file, &offsets] {
                if let Err(e) = std::fs::remove_file(p)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(path = %p.display(), error = %e, "Cannot remove a finished replay file.");
                }
            }
            let n = ends.len();
            self.set(|s| s.finished = true);
            tracing::info!(events = n, "Every dead letter sent back was delivered.");
        } else {
            tracing::info!(
                delivered_through = tracker.committed(),
                "Stopped sending dead letters back; the rest goes on at the next start."
            );
        }
    }

    /// Queues one batch; false once the pipeline stops reading.
    fn send(&self, batch: Batch, route: Route, tracker: &Arc<FileTracker>, end: u64) -> bool {
        if batch.is_empty() {
            return true;
        }
        let n = batch.len() as u64;
        let mut envelope = Envelope {
            batch,
            ack: Some(tracker.register(end)),
            route,
        };
        let started = Instant::now();
        loop {
            if self.shutdown.reading().load(Ordering::Relaxed) {
                envelope.fail();
                return false;
            }
            match self.out.send_timeout(envelope, Duration::from_millis(100)) {
                Ok(()) => break,
                Err(SendTimeoutError::Timeout(e)) => envelope = e,
                Err(SendTimeoutError::Disconnected(e)) => {
                    e.fail();
                    return false;
                }
            }
            if started.elapsed() > Duration::from_secs(60) {
                tracing::debug!(
                    "The pipeline's queue has been full for a minute; still waiting to send dead letters back."
                );
            }
        }
        self.stats.events_resent.add(n);
        self.set(|s| s.sent += n);
        true
    }
}

fn write_offset(path: &Path, offset: u64) -> std::io::Result<()> {
    let tmp = path.with_extension("offset.tmp");
    std::fs::write(&tmp, offset.to_string())?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(stage: &str, plugin: &str) -> Map<String, Value> {
        serde_json::json!({"stage": stage, "plugin": plugin})
            .as_object()
            .cloned()
            .unwrap()
    }

    #[test]
    fn records_go_back_to_the_stage_that_gave_them_up() {
        let stages = Stages {
            processors: vec!["builtin:a".into(), "builtin:b".into()],
            flushers: vec!["builtin:x".into(), "builtin:y".into()],
        };
        let r = |stage: &str, plugin: &str| stages.route(&record(stage, plugin));
        assert_eq!(
            r("processor:1", "builtin:b"),
            Route {
                from_processor: 1,
                flusher: None
            }
        );
        assert_eq!(
            r("flusher:1", "builtin:y"),
            Route {
                from_processor: 2,
                flusher: Some(1)
            }
        );
        // Moved in the config: found by plugin.
        assert_eq!(
            r("flusher:0", "builtin:y"),
            Route {
                from_processor: 2,
                flusher: Some(1)
            }
        );
        // Older records name no stage: the plugin says which.
        assert_eq!(
            r("", "builtin:x"),
            Route {
                from_processor: 2,
                flusher: Some(0)
            }
        );
        assert_eq!(r("", "builtin:a"), Route::default());
        // Gone: the whole pipeline.
        assert_eq!(r("flusher:0", "builtin:gone"), Route::default());
    }
}
