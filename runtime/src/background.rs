//! Async work for the parts of the agent that talk to APIs (Docker,
//! Kubernetes discovery, pipeline resources), each on a thread of its own
//! with a current-thread runtime: the data path itself is not async. Also
//! the backoff they share and a `select!` helper for optional streams.
//! Imports nothing from the rest of the crate.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Runs `work` on a thread of its own with a current-thread tokio runtime
/// (the API clients are async; the data path is not).
pub fn spawn_on_runtime<F>(name: String, work: F) -> std::io::Result<JoinHandle<()>>
where
    F: Future<Output = ()> + Send + 'static,
{
    let thread = name.clone();
    std::thread::Builder::new().name(thread).spawn(move || {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(work),
            Err(e) => {
                tracing::error!(thread = %name, error = %e, "Cannot start an async runtime.")
            }
        }
    })
}

/// Waits `backoff` (waking early if `stop` is set), then doubles it up to
/// 30 s. Returns false if stopped.
pub async fn back_off(backoff: &mut Duration, stop: &AtomicBool) -> bool {
    let until = tokio::time::Instant::now() + *backoff;
    while !stop.load(Ordering::Relaxed) && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    *backoff = (*backoff * 2).min(Duration::from_secs(30));
    !stop.load(Ordering::Relaxed)
}

/// The next item of an optional stream; never, if there is none (for a
/// `select!` over watches some configs do not open).
pub async fn next_of<S: futures_util::Stream + Unpin>(s: &mut Option<S>) -> Option<S::Item> {
    use futures_util::StreamExt;
    match s {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// The first backoff after a failure.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_thirty_seconds_and_stops_early() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let stop = AtomicBool::new(false);
        let mut b = Duration::from_millis(1);
        assert!(rt.block_on(back_off(&mut b, &stop)));
        assert_eq!(b, Duration::from_millis(2));
        let mut b = Duration::from_secs(20);
        stop.store(true, Ordering::Relaxed);
        let t0 = std::time::Instant::now();
        assert!(!rt.block_on(back_off(&mut b, &stop)), "stopped");
        assert!(t0.elapsed() < Duration::from_secs(5), "woke early");
        assert_eq!(b, Duration::from_secs(30));
    }
}
