//! The one stop signal of a pipeline, in two phases. First its inputs stop
//! reading ([`Shutdown::reading`], the flag the tailers and discovery
//! threads poll; also raised by a flusher whose output closed for good).
//! Then its stages may deliver for a grace period (`shutdown_timeout`);
//! after that deadline, what is left is buffered on disk or left
//! uncommitted (read again after the restart), and plugin calls still
//! running are interrupted.
//!
//! Plain data below every stage that uses it (flush, the processor chain,
//! plugin calls); it starts and stops nothing itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A pipeline's stop signal, with its drain deadline.
#[derive(Debug, Default)]
pub struct Shutdown {
    reading: Arc<AtomicBool>,
    deadline: Mutex<Option<Instant>>,
}

impl Shutdown {
    /// The flag that tells inputs to stop reading (set by [`Shutdown::stop`],
    /// or by a stage whose output is gone for good).
    pub fn reading(&self) -> &Arc<AtomicBool> {
        &self.reading
    }

    /// Stops reading and starts draining: delivery may go on for `grace`.
    pub fn stop(&self, grace: Duration) {
        self.reading.store(true, Ordering::Relaxed);
        self.begin(grace);
    }

    /// Starts draining: delivery may go on for `grace` (a later call does
    /// not move the deadline).
    pub fn begin(&self, grace: Duration) {
        let mut d = self.deadline.lock().unwrap_or_else(|p| p.into_inner());
        if d.is_none() {
            *d = Some(Instant::now() + grace);
        }
    }

    fn deadline(&self) -> Option<Instant> {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True once draining has begun.
    pub fn stopping(&self) -> bool {
        self.deadline().is_some()
    }

    /// True once the drain deadline has passed.
    pub fn expired(&self) -> bool {
        self.deadline().is_some_and(|d| Instant::now() >= d)
    }

    /// Sleeps up to `d`, waking early when the drain deadline passes.
    pub fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && !self.expired() {
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(20)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_is_set_once_and_cuts_sleeps_short() {
        let s = Shutdown::default();
        assert!(!s.stopping() && !s.expired());
        s.begin(Duration::from_millis(30));
        s.begin(Duration::from_secs(3600));
        assert!(s.stopping());
        let t0 = Instant::now();
        s.sleep(Duration::from_secs(30));
        assert!(s.expired());
        assert!(t0.elapsed() < Duration::from_secs(30));
    }
}
