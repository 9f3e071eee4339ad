//! Groups events into batches per source, bounded by events, bytes and
//! linger time, and sends full batches downstream through a bounded
//! channel (a full channel blocks the tailer: that is the back-pressure).
//! Knows events and sources, not files or plugins.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::event::Batch;
use crate::tail::EventSink;

/// The tag that names the file an event came from.
pub const SOURCE_TAG: &str = "source.path";

/// When a batch is full.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Most events.
    pub max_events: usize,
    /// Most body bytes.
    pub max_bytes: usize,
    /// Longest wait of the first event.
    pub linger: Duration,
}

struct Open {
    batch: Batch,
    since: Instant,
}

/// Builds batches from events and sends them on.
pub struct Batcher {
    limits: BatchLimits,
    open: HashMap<Arc<str>, Open>,
    /// The batch of the most recent source, kept out of `open`.
    last: Option<(Arc<str>, Open)>,
    out: Sender<Batch>,
    /// Set once the receiver is gone (pipeline shutting down).
    closed: bool,
}

impl Batcher {
    /// A batcher sending to `out`.
    pub fn new(limits: BatchLimits, out: Sender<Batch>) -> Self {
        Batcher {
            limits,
            open: HashMap::new(),
            last: None,
            out,
            closed: false,
        }
    }

    fn send(&mut self, batch: Batch) {
        if !self.closed && self.out.send(batch).is_err() {
            self.closed = true;
            tracing::warn!("Pipeline stopped receiving batches; discarding further input.");
        }
    }
}

impl EventSink for Batcher {
    fn event(&mut self, source: &Arc<str>, body: &[u8], timestamp: i64) {
        let limits = self.limits;
        // Consecutive events nearly always share a source: keep its batch
        // at hand instead of hashing the path for every line.
        let hit = self
            .last
            .as_ref()
            .is_some_and(|(s, _)| Arc::ptr_eq(s, source));
        if !hit {
            if let Some((s, o)) = self.last.take() {
                self.open.insert(s, o);
            }
            let open = self.open.remove(source).unwrap_or_else(|| Open {
                batch: Batch::with_tags(
                    vec![(SOURCE_TAG.to_owned(), source.to_string())],
                    limits.max_events.min(4096),
                    limits.max_bytes.min(1 << 20),
                ),
                since: Instant::now(),
            });
            self.last = Some((source.clone(), open));
        }
        let Some((_, open)) = self.last.as_mut() else {
            return;
        };
        open.batch.push(timestamp, body);
        let full =
            open.batch.len() >= limits.max_events || open.batch.bodies.len() >= limits.max_bytes;
        if full && let Some((_, full)) = self.last.take() {
            self.send(full.batch);
        }
    }

    fn tick(&mut self, now: Instant) {
        let linger = self.limits.linger;
        if self
            .last
            .as_ref()
            .is_some_and(|(_, o)| now.duration_since(o.since) >= linger)
            && let Some((_, o)) = self.last.take()
        {
            self.send(o.batch);
        }
        let due: Vec<Arc<str>> = self
            .open
            .iter()
            .filter(|(_, o)| now.duration_since(o.since) >= linger)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            if let Some(o) = self.open.remove(&key) {
                self.send(o.batch);
            }
        }
    }

    fn deadline(&self) -> Option<Instant> {
        let last = self.last.as_ref().map(|(_, o)| o);
        let linger = self.limits.linger;
        self.open
            .values()
            .chain(last)
            .map(|o| o.since + linger)
            .min()
    }

    fn flush_all(&mut self) {
        let last = self.last.take().map(|(_, o)| o);
        let all: Vec<Open> = self.open.drain().map(|(_, o)| o).chain(last).collect();
        for o in all {
            self.send(o.batch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(events: usize, bytes: usize) -> BatchLimits {
        BatchLimits {
            max_events: events,
            max_bytes: bytes,
            linger: Duration::from_millis(50),
        }
    }

    #[test]
    fn batches_close_at_the_event_bound_and_keep_sources_apart() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut b = Batcher::new(limits(2, 1 << 20), tx);
        let a: Arc<str> = Arc::from("/a.log");
        let c: Arc<str> = Arc::from("/c.log");
        b.event(&a, b"1", 0);
        b.event(&c, b"x", 0);
        b.event(&a, b"2", 0);
        let first = rx.try_recv().unwrap();
        assert_eq!(first.tag(SOURCE_TAG), Some("/a.log"));
        assert_eq!((first.body(0), first.body(1)), (&b"1"[..], &b"2"[..]));
        assert!(rx.try_recv().is_err());
        b.flush_all();
        assert_eq!(rx.try_recv().unwrap().tag(SOURCE_TAG), Some("/c.log"));
    }

    #[test]
    fn batches_close_at_the_byte_bound() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut b = Batcher::new(limits(100, 5), tx);
        let a: Arc<str> = Arc::from("/a.log");
        b.event(&a, b"abc", 0);
        assert!(rx.try_recv().is_err());
        b.event(&a, b"def", 0);
        assert_eq!(rx.try_recv().unwrap().len(), 2);
    }

    #[test]
    fn linger_sends_a_batch_that_is_not_full() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut b = Batcher::new(limits(100, 1 << 20), tx);
        let a: Arc<str> = Arc::from("/a.log");
        let t0 = Instant::now();
        b.event(&a, b"x", 0);
        b.tick(t0);
        assert!(rx.try_recv().is_err());
        let d = b.deadline().unwrap();
        b.tick(d + Duration::from_millis(1));
        assert_eq!(rx.try_recv().unwrap().len(), 1);
        assert_eq!(b.deadline(), None);
    }
}
