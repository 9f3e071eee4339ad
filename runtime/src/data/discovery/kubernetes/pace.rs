//! How soon a Kubernetes watch tries again after an error: at once after
//! `410 Gone` (the resourceVersion was compacted or a restarted server's
//! cache starts later; the server is fine, and client-go relists at once
//! too); quickly, capped at a second, while the server cannot be reached
//! (a refused connection costs it nothing, and a restarted server is found
//! within a second); exponentially, up to 30 s, when it answered with an
//! error (it may be overloaded). Any success resets both. Wraps `kube`'s
//! watcher stream in place of its `default_backoff`, whose delay (800 ms
//! doubling, reset only after two quiet minutes) also applied to 410.
//! Owns the waiting only; knows nothing of what is watched.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::Stream;
use kube::runtime::watcher;

/// The first wait while the server cannot be reached.
const UNREACHABLE_FIRST: Duration = Duration::from_millis(100);
/// The longest wait while the server cannot be reached.
const UNREACHABLE_MAX: Duration = Duration::from_secs(1);
/// The first wait after the server answered with an error.
const REFUSED_FIRST: Duration = Duration::from_millis(800);
/// The longest wait after the server answered with an error.
const REFUSED_MAX: Duration = Duration::from_secs(30);

/// What an error says about trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// 410: list again now.
    Now,
    /// The server was not reached.
    Unreachable,
    /// The server answered with an error.
    Refused,
}

/// Classifies a watcher error.
pub fn retry_after(e: &watcher::Error) -> Retry {
    let client = match e {
        watcher::Error::WatchError(status) => {
            return if status.code == 410 {
                Retry::Now
            } else {
                Retry::Refused
            };
        }
        watcher::Error::InitialListFailed(c)
        | watcher::Error::WatchStartFailed(c)
        | watcher::Error::WatchFailed(c) => c,
        watcher::Error::NoResourceVersion => return Retry::Refused,
    };
    match client {
        kube::Error::Api(status) if status.code == 410 => Retry::Now,
        kube::Error::Api(_) => Retry::Refused,
        // Transport: refused or reset connections, timeouts, a stream cut.
        _ => Retry::Unreachable,
    }
}

/// The two backoffs of one watch.
#[derive(Debug)]
pub struct Pacer {
    unreachable: Duration,
    refused: Duration,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer {
            unreachable: UNREACHABLE_FIRST,
            refused: REFUSED_FIRST,
        }
    }
}

impl Pacer {
    /// How long to wait after `e`, advancing the backoff it uses.
    pub fn after_error(&mut self, e: &watcher::Error) -> Duration {
        let (current, max) = match retry_after(e) {
            Retry::Now => return Duration::ZERO,
            Retry::Unreachable => (&mut self.unreachable, UNREACHABLE_MAX),
            Retry::Refused => (&mut self.refused, REFUSED_MAX),
        };
        let d = *current;
        *current = (*current * 2).min(max);
        d
    }

    /// Something succeeded: both backoffs start over.
    pub fn succeeded(&mut self) {
        *self = Pacer::default();
    }
}

/// A watcher stream paced as the module says.
pub struct Paced<S> {
    inner: S,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
    pacer: Pacer,
}

/// Paces `inner`.
pub fn paced<S>(inner: S) -> Paced<S> {
    Paced {
        inner,
        wait: None,
        pacer: Pacer::default(),
    }
}

impl<S, T> Stream for Paced<S>
where
    S: Stream<Item = Result<T, watcher::Error>> + Unpin,
{
    type Item = Result<T, watcher::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(w) = this.wait.as_mut() {
            ready!(w.as_mut().poll(cx));
            this.wait = None;
        }
        let item = ready!(Pin::new(&mut this.inner).poll_next(cx));
        match &item {
            Some(Ok(_)) => this.pacer.succeeded(),
            Some(Err(e)) => {
                let d = this.pacer.after_error(e);
                if !d.is_zero() {
                    this.wait = Some(Box::pin(tokio::time::sleep(d)));
                }
            }
            None => {}
        }
        Poll::Ready(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn status(code: u16) -> Box<Status> {
        Box::new(Status::failure("x", "Expired").with_code(code))
    }

    #[test]
    fn gone_relists_now_and_other_errors_back_off_by_kind() {
        assert_eq!(
            retry_after(&watcher::Error::WatchError(status(410))),
            Retry::Now
        );
        assert_eq!(
            retry_after(&watcher::Error::InitialListFailed(kube::Error::Api(
                status(410)
            ))),
            Retry::Now
        );
        assert_eq!(
            retry_after(&watcher::Error::InitialListFailed(kube::Error::Api(
                status(503)
            ))),
            Retry::Refused
        );
        assert_eq!(
            retry_after(&watcher::Error::WatchFailed(
                kube::Error::LinesCodecMaxLineLengthExceeded
            )),
            Retry::Unreachable
        );
    }

    #[test]
    fn waits_grow_per_kind_and_start_over_after_a_success() {
        let gone = || watcher::Error::WatchError(status(410));
        let cut = || watcher::Error::WatchFailed(kube::Error::LinesCodecMaxLineLengthExceeded);
        let refused = || watcher::Error::WatchError(status(500));
        let mut p = Pacer::default();
        let ms = |d: Duration| d.as_millis();
        assert_eq!(ms(p.after_error(&gone())), 0);
        let unreachable: Vec<u128> = (0..6).map(|_| ms(p.after_error(&cut()))).collect();
        assert_eq!(unreachable, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(ms(p.after_error(&gone())), 0, "410 never waits");
        let refusals: Vec<u128> = (0..8).map(|_| ms(p.after_error(&refused()))).collect();
        assert_eq!(
            refusals,
            vec![800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]
        );
        p.succeeded();
        assert_eq!(ms(p.after_error(&cut())), 100);
        assert_eq!(ms(p.after_error(&refused())), 800);
    }
}
