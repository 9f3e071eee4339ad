//! Keeping batches in order across processor workers: the sequencer
//! numbers batches as they leave the inputs' queue and hands them to
//! whichever worker is free; [`Reorder`] takes the workers' results in any
//! order and passes them to the flushers in the order they were numbered,
//! so each source's events reach every flusher in read order. A window
//! bounds how far ahead of the oldest unfinished batch the workers may run
//! (a worker retrying one batch holds back at most a window of results).
//!
//! The sequencer also makes a processor swap one cut in the stream: it
//! stops handing out batches, waits until every batch handed out is done,
//! gives each worker its new chain, and goes on once all have taken it, so
//! every batch before the cut ran on the old chain and every one after it
//! on the new.
//!
//! Knows envelopes, sequence numbers and chains as opaque stages; not
//! plugins or files.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use super::swap::{Swap, WorkerSwap};
use crate::data::batch::{Envelope, Route};
use crate::data::tap::{Point, Taps};

/// A numbered batch for a worker.
pub(super) type Job = (u64, Envelope);

struct State {
    /// The oldest number not yet passed on.
    next: u64,
    /// Results that came before their turn (`None`: nothing to pass on).
    held: BTreeMap<u64, Option<Envelope>>,
}

/// Passes the workers' results to the flushers in sequence order.
pub(super) struct Reorder {
    state: Mutex<State>,
    advanced: Condvar,
    outputs: Vec<Sender<Envelope>>,
    window: u64,
    /// Samples of what each flusher is handed.
    taps: Arc<Taps>,
    /// Batches left undelivered after a processor failed past the
    /// shutdown deadline (every later batch is left too).
    pub(super) abandoned: AtomicU64,
}

impl Reorder {
    /// Results go to every one of `outputs`; workers run at most `window`
    /// batches ahead of the oldest unfinished one.
    pub(super) fn new(outputs: Vec<Sender<Envelope>>, window: u64, taps: Arc<Taps>) -> Arc<Self> {
        Arc::new(Reorder {
            state: Mutex::new(State {
                next: 0,
                held: BTreeMap::new(),
            }),
            advanced: Condvar::new(),
            outputs,
            window: window.max(1),
            taps,
            abandoned: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Batch `seq` is done: `Some` to pass on, `None` if it was dropped,
    /// dead-lettered or left undelivered. Passes on every result whose
    /// turn has come (blocking while a flusher queue is full: that is the
    /// back-pressure).
    pub(super) fn done(&self, seq: u64, out: Option<Envelope>) {
        let mut s = self.lock();
        s.held.insert(seq, out);
        let mut moved = false;
        loop {
            let next = s.next;
            let Some(out) = s.held.remove(&next) else {
                break;
            };
            s.next += 1;
            moved = true;
            if let Some(envelope) = out {
                self.send(envelope);
            }
        }
        drop(s);
        if moved {
            self.advanced.notify_all();
        }
    }

    fn send(&self, Envelope { batch, ack, route }: Envelope) {
        // A flusher that is gone did not deliver: its copy fails the ack,
        // so the bytes stay uncommitted.
        let put = |n: usize, e: Envelope| {
            self.taps.observe(Point::Flusher(n), &e.batch);
            if let Err(e) = self.outputs[n].send(e) {
                e.into_inner().fail();
            }
        };
        // Every flusher, or the one a replayed dead letter goes back to:
        // a range, so the data path allocates nothing here.
        let to = match route.flusher {
            Some(n) if n < self.outputs.len() => n..n + 1,
            _ => 0..self.outputs.len(),
        };
        if let Some(last) = to.end.checked_sub(1).filter(|l| *l >= to.start) {
            for n in to.start..last {
                let (batch, ack) = (batch.clone(), ack.clone());
                put(n, Envelope { batch, ack, route });
            }
            put(last, Envelope { batch, ack, route });
        }
    }

    /// Waits until batch `seq` is within the window.
    fn wait_turn(&self, seq: u64) {
        self.wait_until(|next| seq < next + self.window);
    }

    /// Waits until every batch before `seq` is done.
    fn wait_drained(&self, seq: u64) {
        self.wait_until(|next| next >= seq);
    }

    fn wait_until(&self, ok: impl Fn(u64) -> bool) {
        let mut s = self.lock();
        while !ok(s.next) {
            s = self.advanced.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Numbers the batches of `input` and hands them to the workers through
/// `jobs`, each within `order`'s window; takes processor swaps from
/// `swaps` between two batches and hands each of `workers` its chain. Ends
/// when the inputs are done.
pub(super) fn spawn_sequencer(
    name: String,
    (input, taps): (Receiver<Envelope>, Arc<Taps>),
    jobs: Sender<Job>,
    order: Arc<Reorder>,
    (swaps, workers): (Receiver<Swap>, Vec<Sender<WorkerSwap>>),
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name).spawn(move || {
        let mut seq = 0u64;
        let mut swaps = swaps;
        loop {
            crossbeam_channel::select! {
                recv(swaps) -> swap => match swap {
                    Ok(swap) => cut(swap, seq, &order, &workers),
                    // Nobody can swap any more.
                    Err(_) => swaps = crossbeam_channel::never(),
                },
                recv(input) -> envelope => {
                    let Ok(envelope) = envelope else { break };
                    if envelope.route == Route::default() {
                        taps.observe(Point::Input, &envelope.batch);
                    }
                    order.wait_turn(seq);
                    if jobs.send((seq, envelope)).is_err() {
                        break;
                    }
                    seq += 1;
                }
            }
        }
    })
}

/// Swaps every worker's chain between batch `seq - 1` and batch `seq`.
fn cut(swap: Swap, seq: u64, order: &Reorder, workers: &[Sender<WorkerSwap>]) {
    let t0 = std::time::Instant::now();
    order.wait_drained(seq);
    let drained = t0.elapsed();
    let (applied_tx, applied) = crossbeam_channel::bounded(workers.len());
    let mut sent = 0;
    for (worker, stages) in workers.iter().zip(swap.workers) {
        let handed = worker.send(WorkerSwap {
            stages,
            generation: swap.generation,
            rollback: swap.rollback,
            drained,
            applied: applied_tx.clone(),
        });
        sent += usize::from(handed.is_ok());
    }
    drop(applied_tx);
    // The old chains come back to the swapper, to be dropped off the
    // data path.
    let old: Vec<_> = applied.iter().take(sent).collect();
    let _ = swap.done.send((t0.elapsed(), old));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::Batch;

    fn envelope(body: &str) -> Envelope {
        let mut batch = Batch::default();
        batch.push(0, body.as_bytes());
        Envelope::new(batch, None)
    }

    #[test]
    fn results_pass_on_in_sequence_order_whatever_order_they_finish_in() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let order = Reorder::new(vec![tx], 8, Arc::default());
        order.done(2, Some(envelope("c")));
        order.done(1, None);
        assert!(rx.try_recv().is_err(), "0 is not done yet");
        order.done(0, Some(envelope("a")));
        let got: Vec<Vec<u8>> = rx.try_iter().map(|e| e.batch.body(0).to_vec()).collect();
        assert_eq!(got, vec![b"a".to_vec(), b"c".to_vec()]);
        order.done(3, Some(envelope("d")));
        assert_eq!(rx.try_recv().unwrap().batch.body(0), b"d");
    }

    #[test]
    fn a_batch_routed_to_one_flusher_reaches_it_alone_and_its_tap() {
        let (a, a_rx) = crossbeam_channel::unbounded();
        let (b, b_rx) = crossbeam_channel::unbounded();
        let taps: Arc<Taps> = Arc::default();
        let mut to_a = taps.open(Point::Flusher(0), 10, 0).unwrap();
        let mut to_b = taps.open(Point::Flusher(1), 10, 0).unwrap();
        let order = Reorder::new(vec![a, b], 8, taps.clone());
        order.done(0, Some(envelope("both")));
        let mut only_b = envelope("b");
        only_b.route.flusher = Some(1);
        order.done(1, Some(only_b));
        let bodies = |rx: &Receiver<Envelope>| -> Vec<Vec<u8>> {
            rx.try_iter().map(|e| e.batch.body(0).to_vec()).collect()
        };
        assert_eq!(bodies(&a_rx), vec![b"both".to_vec()]);
        assert_eq!(bodies(&b_rx), vec![b"both".to_vec(), b"b".to_vec()]);
        let chunks = |rx: &mut tokio::sync::mpsc::Receiver<bytes::Bytes>| {
            let mut n = 0;
            while rx.try_recv().is_ok() {
                n += 1;
            }
            n
        };
        assert_eq!((chunks(&mut to_a), chunks(&mut to_b)), (1, 2));
    }

    #[test]
    fn the_sequencer_waits_while_the_oldest_batch_is_unfinished() {
        let (tx, _rx) = crossbeam_channel::unbounded();
        let order = Reorder::new(vec![tx], 2, Arc::default());
        let (in_tx, in_rx) = crossbeam_channel::unbounded();
        let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded();
        for b in ["a", "b", "c"] {
            in_tx.send(envelope(b)).unwrap();
        }
        drop(in_tx);
        let (_swap_tx, swaps) = crossbeam_channel::bounded(1);
        let t = spawn_sequencer(
            "seq".into(),
            (in_rx, Arc::default()),
            jobs_tx,
            order.clone(),
            (swaps, Vec::new()),
        )
        .unwrap();
        let first: Vec<u64> = (0..2).map(|_| jobs_rx.recv().unwrap().0).collect();
        assert_eq!(first, vec![0, 1]);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(jobs_rx.try_recv().is_err(), "2 is outside the window");
        order.done(1, None);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(jobs_rx.try_recv().is_err(), "0 still holds the window");
        order.done(0, None);
        assert_eq!(jobs_rx.recv().unwrap().0, 2);
        t.join().unwrap();
    }
}
