//! Taps: samples of the events passing one point of a running pipeline —
//! what its inputs read, what processor N puts out, what flusher N is
//! handed — as JSON lines, for `gleaner tap`. A tap is bounded: at most
//! `limit` events, at most `rate` events a second, into a channel it never
//! waits on (events that find it full are skipped). A point nobody taps
//! costs one atomic load per batch. Never changes, delays or holds a batch.
//!
//! Knows batches and their JSON form; not plugins or the API.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;

use crate::model::event::{Batch, json};

/// Taps open at once on one pipeline.
pub const MAX_TAPS: usize = 8;
/// Chunks (one per batch) a tap's reader may fall behind by.
const CHANNEL_CHUNKS: usize = 64;

/// A point of a pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// Batches as the inputs made them, before any processor.
    Input,
    /// What processor N (0-based, in config order) put out.
    Processor(usize),
    /// What flusher N (0-based) is handed.
    Flusher(usize),
}

impl std::fmt::Display for Point {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Point::Input => write!(f, "input"),
            Point::Processor(n) => write!(f, "processor:{n}"),
            Point::Flusher(n) => write!(f, "flusher:{n}"),
        }
    }
}

/// Why a tap was not opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{MAX_TAPS} taps are open on this pipeline already")]
pub struct TooManyTaps;

struct Tap {
    point: Point,
    /// Events still to send.
    left: u64,
    /// Events a second (0: no limit), and the token bucket.
    rate: f64,
    tokens: f64,
    refilled: Instant,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    /// Events not sent: over the rate, or the reader behind.
    skipped: u64,
}

/// The taps of one pipeline.
#[derive(Default)]
pub struct Taps {
    open: AtomicUsize,
    taps: Mutex<Vec<Tap>>,
}

impl Taps {
    /// Opens a tap at `point` for `limit` events at most `rate` a second
    /// (0: any rate); the stream ends once `limit` were sent or the
    /// pipeline stops. Dropping the receiver closes the tap.
    pub fn open(
        &self,
        point: Point,
        limit: u64,
        rate: u32,
    ) -> Result<tokio::sync::mpsc::Receiver<Bytes>, TooManyTaps> {
        let mut taps = self.taps.lock().unwrap_or_else(|p| p.into_inner());
        taps.retain(|t| !t.tx.is_closed());
        if taps.len() >= MAX_TAPS {
            self.open.store(taps.len(), Ordering::Relaxed);
            return Err(TooManyTaps);
        }
        let (tx, rx) = tokio::sync::mpsc::channel(CHANNEL_CHUNKS);
        taps.push(Tap {
            point,
            left: limit,
            rate: f64::from(rate),
            tokens: f64::from(rate),
            refilled: Instant::now(),
            tx,
            skipped: 0,
        });
        self.open.store(taps.len(), Ordering::Relaxed);
        Ok(rx)
    }

    /// Taps open now.
    pub fn count(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// `batch` passes `point`.
    #[inline]
    pub fn observe(&self, point: Point, batch: &Batch) {
        if self.open.load(Ordering::Relaxed) != 0 {
            self.sample(point, batch);
        }
    }

    #[cold]
    fn sample(&self, point: Point, batch: &Batch) {
        let mut taps = self.taps.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        for tap in taps.iter_mut().filter(|t| t.point == point) {
            let mut take = (batch.len() as u64).min(tap.left);
            if tap.rate > 0.0 {
                let secs = now.duration_since(tap.refilled).as_secs_f64();
                tap.tokens = (tap.tokens + secs * tap.rate).min(tap.rate.max(1.0));
                tap.refilled = now;
                take = take.min(tap.tokens as u64);
            }
            if take == 0 {
                tap.skipped += batch.len() as u64;
                continue;
            }
            let mut text = Vec::new();
            for i in 0..take as usize {
                if serde_json::to_writer(&mut text, &json::event_object(batch, i)).is_ok() {
                    text.push(b'\n');
                }
            }
            let skipped = batch.len() as u64 - take;
            match tap.tx.try_send(Bytes::from(text)) {
                Ok(()) => {
                    tap.left -= take;
                    tap.tokens -= take as f64;
                    tap.skipped += skipped;
                }
                Err(_) => tap.skipped += batch.len() as u64,
            }
        }
        // A tap that is done drops its sender: its stream ends.
        taps.retain(|t| {
            let done = t.left == 0 || t.tx.is_closed();
            if done && t.skipped > 0 {
                tracing::debug!(point = %t.point, skipped = t.skipped, "A tap closed; it skipped events over its rate or while its reader was behind.");
            }
            !done
        });
        self.open.store(taps.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: usize) -> Batch {
        let mut b = Batch::with_tags(vec![("source.path".into(), "/a".into())], n, 0);
        for i in 0..n {
            b.push(i as i64, format!("line {i}").as_bytes());
        }
        b
    }

    fn lines(rx: &mut tokio::sync::mpsc::Receiver<Bytes>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(chunk) = rx.try_recv() {
            let text = String::from_utf8(chunk.to_vec()).unwrap();
            out.extend(text.lines().map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["message"].as_str().unwrap().to_owned()
            }));
        }
        out
    }

    #[test]
    fn a_tap_sees_its_point_only_up_to_its_limit_then_ends() {
        let taps = Taps::default();
        let mut rx = taps.open(Point::Processor(1), 3, 0).unwrap();
        taps.observe(Point::Input, &batch(2));
        taps.observe(Point::Processor(0), &batch(2));
        assert_eq!(taps.count(), 1);
        taps.observe(Point::Processor(1), &batch(2));
        taps.observe(Point::Processor(1), &batch(2));
        assert_eq!(lines(&mut rx), ["line 0", "line 1", "line 0"]);
        assert_eq!(taps.count(), 0, "done: the sender is dropped");
        assert!(rx.is_closed());
    }

    #[test]
    fn a_tap_keeps_to_its_rate_and_a_gone_reader_closes_it() {
        let taps = Taps::default();
        let mut rx = taps.open(Point::Input, 1000, 5).unwrap();
        taps.observe(Point::Input, &batch(8));
        assert_eq!(lines(&mut rx).len(), 5, "a burst of one second's worth");
        drop(rx);
        taps.observe(Point::Input, &batch(1));
        assert_eq!(taps.count(), 0);
    }

    #[test]
    fn taps_are_bounded_per_pipeline() {
        let taps = Taps::default();
        let held: Vec<_> = (0..MAX_TAPS)
            .map(|_| taps.open(Point::Input, 1, 0).unwrap())
            .collect();
        assert_eq!(taps.open(Point::Input, 1, 0).err(), Some(TooManyTaps));
        drop(held);
        assert!(
            taps.open(Point::Input, 1, 0).is_ok(),
            "closed ones are pruned"
        );
    }
}
