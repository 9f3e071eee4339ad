//! Groups events into batches per source (one generation of one file),
//! bounded by events, bytes and linger time, registers each batch with its
//! file's ack tracker, and sends it downstream through a bounded channel (a
//! full channel blocks the tailer: that is the back-pressure). Knows events,
//! sources and offsets, not plugins.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::data::tail::{EventSink, Meta, Source};
use crate::model::ack::AckRef;
use crate::model::event::Batch;

/// The tag that names the file an event came from.
pub const SOURCE_TAG: &str = "source.path";

/// The field that names a container's stream (`stdout` / `stderr`).
pub const STREAM_FIELD: &str = "stream";

/// The tags of batches from `source`: its path, then its target's tags.
fn tags_of(source: &Source) -> Vec<(String, String)> {
    let mut tags = Vec::with_capacity(1 + source.tags.len());
    tags.push((SOURCE_TAG.to_owned(), source.path.to_string()));
    tags.extend(source.tags.iter().cloned());
    tags
}

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

/// Where an input that is not a file (the `kafka` and
/// `kubernetes_events` inputs) puts what it reads: the pipeline's queue,
/// with the pipeline's batch limits, stop signal and input counters.
#[derive(Debug, Clone)]
pub struct Outlet {
    /// How big batches may get, and how long the first event waits.
    pub limits: BatchLimits,
    /// The pipeline's queue.
    pub out: Sender<Envelope>,
    /// The pipeline's stop signal.
    pub shutdown: Arc<crate::model::shutdown::Shutdown>,
    /// This input's counters.
    pub stats: Arc<crate::data::tail::InputStats>,
    /// Stop once what is there at the start was read (`--exit-on-eof`).
    pub exit_on_eof: bool,
}

/// A batch on its way through a pipeline, with the acknowledgement that
/// moves its file's checkpoint once every holder has dropped it.
#[derive(Debug)]
pub struct Envelope {
    /// The events.
    pub batch: Batch,
    /// `None` for batches with no file position (replayed from the disk buffer).
    pub ack: Option<AckRef>,
    /// Where it enters the pipeline.
    pub route: Route,
}

impl Envelope {
    /// A batch for the whole pipeline.
    pub fn new(batch: Batch, ack: Option<AckRef>) -> Self {
        Envelope {
            batch,
            ack,
            route: Route::default(),
        }
    }
}

/// Where a batch enters a pipeline: read batches at its first processor
/// and on to every flusher; dead letters sent back (`gleaner dead-letter
/// replay`) at the stage that gave them up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Route {
    /// The first processor to run (past the last: none).
    pub from_processor: usize,
    /// Only this flusher (by place), or every one.
    pub flusher: Option<usize>,
}

impl Envelope {
    /// Marks the batch as not delivered (its bytes stay uncommitted).
    pub fn fail(&self) {
        if let Some(a) = &self.ack {
            a.fail();
        }
    }
}

struct Open {
    source: Arc<Source>,
    batch: Batch,
    since: Instant,
    /// File offset just after the last event.
    end: u64,
}

/// Builds batches from events and sends them on.
pub struct Batcher {
    limits: BatchLimits,
    open: Vec<Open>,
    /// Index in `open` of the most recent source: consecutive events nearly
    /// always share a source.
    last: usize,
    out: Sender<Envelope>,
    /// Full batches the channel had no room for yet, oldest first: at most
    /// what one read chunk completes, since the tailer reads only while
    /// [`EventSink::ready`].
    pending: std::collections::VecDeque<Envelope>,
    /// Set once the receiver is gone (pipeline shutting down).
    closed: bool,
}

impl Batcher {
    /// A batcher sending to `out`.
    pub fn new(limits: BatchLimits, out: Sender<Envelope>) -> Self {
        Batcher {
            limits,
            open: Vec::new(),
            last: usize::MAX,
            out,
            pending: std::collections::VecDeque::new(),
            closed: false,
        }
    }

    fn send(&mut self, open: Open) {
        let ack = open.source.tracker.register(open.end);
        self.pending.push_back(Envelope::new(open.batch, Some(ack)));
        self.pump();
    }

    /// Moves pending batches into the channel while it has room.
    fn pump(&mut self) {
        while let Some(envelope) = self.pending.pop_front() {
            if self.closed {
                envelope.fail();
                continue;
            }
            match self.out.try_send(envelope) {
                Ok(()) => {}
                Err(crossbeam_channel::TrySendError::Full(envelope)) => {
                    self.pending.push_front(envelope);
                    return;
                }
                Err(crossbeam_channel::TrySendError::Disconnected(envelope)) => {
                    envelope.fail();
                    self.closed = true;
                    tracing::warn!(
                        "Pipeline stopped receiving batches; further input stays unread."
                    );
                }
            }
        }
    }

    fn send_at(&mut self, index: usize) {
        let open = self.open.swap_remove(index);
        self.last = usize::MAX;
        self.send(open);
    }
}

impl EventSink for Batcher {
    fn event(&mut self, source: &Arc<Source>, body: &[u8], meta: Meta, end: u64) {
        let limits = self.limits;
        let hit = self
            .open
            .get(self.last)
            .is_some_and(|o| Arc::ptr_eq(&o.source, source));
        if !hit {
            self.last = match self
                .open
                .iter()
                .position(|o| Arc::ptr_eq(&o.source, source))
            {
                Some(i) => i,
                None => {
                    // The same file under a new source (reopened, or new
                    // tags): its earlier batch goes first, so batches
                    // register with the file's tracker in read order.
                    if let Some(i) = self
                        .open
                        .iter()
                        .position(|o| Arc::ptr_eq(&o.source.tracker, &source.tracker))
                    {
                        self.send_at(i);
                    }
                    // Sized by need: a lone file read in bulk fills its
                    // batches, so they get their room at once; with other
                    // batches open (a node's worth of quiet containers)
                    // each starts small and grows, so 1,000 open batches
                    // do not hold 1,000 × 1 MiB.
                    let (events, bytes) = if self.open.is_empty() {
                        (4096, 1 << 20)
                    } else {
                        (64, 4096)
                    };
                    self.open.push(Open {
                        source: source.clone(),
                        batch: Batch::with_tags(
                            tags_of(source),
                            limits.max_events.min(events),
                            limits.max_bytes.min(bytes),
                        ),
                        since: Instant::now(),
                        end,
                    });
                    self.open.len() - 1
                }
            };
        }
        let open = &mut self.open[self.last];
        open.batch.push(meta.timestamp, body);
        if let Some(stream) = meta.stream {
            open.batch
                .push_field(STREAM_FIELD, stream.as_str().as_bytes());
        }
        open.end = end;
        if open.batch.len() >= limits.max_events || open.batch.bodies.len() >= limits.max_bytes {
            self.send_at(self.last);
        }
    }

    fn ready(&self) -> bool {
        self.pending.is_empty() && !self.out.is_full()
    }

    fn wait_room<'a>(&'a self, sel: &mut crossbeam_channel::Select<'a>) -> Option<usize> {
        (!self.ready() && !self.closed).then(|| sel.send(&self.out))
    }

    fn tick(&mut self, now: Instant) {
        self.pump();
        let linger = self.limits.linger;
        let mut i = 0;
        while i < self.open.len() {
            if now.duration_since(self.open[i].since) >= linger {
                self.send_at(i);
            } else {
                i += 1;
            }
        }
    }

    fn deadline(&self) -> Option<Instant> {
        // Pending batches wait for room through `wait_room`, not a timer.
        self.open.iter().map(|o| o.since + self.limits.linger).min()
    }

    fn flush_all(&mut self) {
        while !self.open.is_empty() {
            self.send_at(0);
        }
        // The pipeline drains (or buffers) on shutdown, so waiting is safe.
        while let Some(envelope) = self.pending.pop_front() {
            if self.closed {
                envelope.fail();
            } else if let Err(e) = self.out.send(envelope) {
                e.into_inner().fail();
                self.closed = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ack::{FileIdentity, FileTracker};

    fn limits(events: usize, bytes: usize) -> BatchLimits {
        BatchLimits {
            max_events: events,
            max_bytes: bytes,
            linger: Duration::from_millis(50),
        }
    }

    fn source(path: &str) -> Arc<Source> {
        let id = FileIdentity {
            dev: 1,
            ino: path.len() as u64,
            fingerprint: 0,
            fingerprint_len: 0,
            born_ns: 0,
        };
        Arc::new(Source {
            path: Arc::from(path),
            tracker: FileTracker::new(id, path, 0),
            tags: Arc::from(vec![("container.name".to_owned(), "web".to_owned())]),
        })
    }

    fn meta() -> Meta {
        Meta {
            timestamp: 0,
            stream: None,
        }
    }

    #[test]
    fn batches_close_at_the_event_bound_and_keep_sources_apart() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut b = Batcher::new(limits(2, 1 << 20), tx);
        let a = source("/a.log");
        let c = source("/cc.log");
        b.event(&a, b"1", meta(), 2);
        b.event(&c, b"x", meta(), 2);
        b.event(&a, b"2", meta(), 4);
        let first = rx.try_recv().unwrap();
        assert_eq!(first.batch.tag(SOURCE_TAG), Some("/a.log"));
        assert_eq!(
            (first.batch.body(0), first.batch.body(1)),
            (&b"1"[..], &b"2"[..])
        );
        assert!(rx.try_recv().is_err());
        b.flush_all();
        assert_eq!(
            rx.try_recv().unwrap().batch.tag(SOURCE_TAG),
            Some("/cc.log")
        );
    }

    #[test]
    fn a_delivered_batch_commits_the_offset_after_its_last_event() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut b = Batcher::new(limits(2, 1 << 20), tx);
        let a = source("/a.log");
        b.event(&a, b"1", meta(), 2);
        b.event(&a, b"2", meta(), 4);
        b.event(&a, b"3", meta(), 6);
        assert_eq!(a.tracker.committed(), 0);
        drop(rx.try_recv().unwrap());
        assert_eq!(
            a.tracker.committed(),
            4,
            "the third event is not delivered yet"
        );
        b.flush_all();
        let last = rx.try_recv().unwrap();
        last.fail();
        drop(last);
        assert_eq!(a.tracker.committed(), 4, "a failed batch commits nothing");
    }

    #[test]
    fn batches_carry_target_tags_and_the_stream_field() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut b = Batcher::new(limits(2, 1 << 20), tx);
        let a = source("/a.log");
        let err = Meta {
            timestamp: 5,
            stream: Some(crate::data::tail::Stream::Stderr),
        };
        b.event(&a, b"x", meta(), 2);
        b.event(&a, b"y", err, 4);
        let got = rx.try_recv().unwrap().batch;
        assert_eq!(got.tag(SOURCE_TAG), Some("/a.log"));
        assert_eq!(got.tag("container.name"), Some("web"));
        assert_eq!(got.fields_of(0).count(), 0);
        assert_eq!(
            got.fields_of(1).collect::<Vec<_>>(),
            vec![(
                STREAM_FIELD,
                crate::model::event::value::STRING,
                &b"stderr"[..]
            )]
        );
        assert_eq!(got.timestamps, vec![0, 5]);
        assert!(got.check_layout().is_ok());
    }

    #[test]
    fn a_new_source_of_the_same_file_sends_the_earlier_batch_first() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut b = Batcher::new(limits(100, 1 << 20), tx);
        let a = source("/a.log");
        b.event(&a, b"1", meta(), 2);
        let renamed = Arc::new(Source {
            path: a.path.clone(),
            tracker: a.tracker.clone(),
            tags: Arc::from(vec![("container.name".to_owned(), "new".to_owned())]),
        });
        b.event(&renamed, b"2", meta(), 4);
        let first = rx.try_recv().unwrap();
        assert_eq!(first.batch.tag("container.name"), Some("web"));
        assert_eq!(first.batch.len(), 1);
        b.flush_all();
        let second = rx.try_recv().unwrap();
        assert_eq!(second.batch.tag("container.name"), Some("new"));
        drop(second);
        assert_eq!(
            a.tracker.committed(),
            0,
            "the first batch is not delivered yet"
        );
        drop(first);
        assert_eq!(a.tracker.committed(), 4);
    }

    #[test]
    fn batches_close_at_the_byte_bound() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut b = Batcher::new(limits(100, 5), tx);
        let a = source("/a.log");
        b.event(&a, b"abc", meta(), 4);
        assert!(rx.try_recv().is_err());
        b.event(&a, b"def", meta(), 8);
        assert_eq!(rx.try_recv().unwrap().batch.len(), 2);
    }

    #[test]
    fn linger_sends_a_batch_that_is_not_full() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut b = Batcher::new(limits(100, 1 << 20), tx);
        let a = source("/a.log");
        let t0 = Instant::now();
        b.event(&a, b"x", meta(), 2);
        b.tick(t0);
        assert!(rx.try_recv().is_err());
        let d = b.deadline().unwrap();
        b.tick(d + Duration::from_millis(1));
        assert_eq!(rx.try_recv().unwrap().batch.len(), 1);
        assert_eq!(b.deadline(), None);
    }
}
