//! The processor workers of a pipeline: each takes numbered batches, runs
//! its own chain of instances over them (swapping chains at batch
//! boundaries, with probation and rollback) and hands what comes out to
//! the reorder stage in front of the flushers. They also publish which
//! plugins run now, for metrics.

use std::sync::Arc;
use std::thread::JoinHandle;

use std::sync::atomic::Ordering;

use crossbeam_channel::Receiver;

use super::chain::{self, Abandoned, Chain, Stage};
use super::order::{Job, Reorder};
use super::swap::{Rollback, RollbackReport, SharedSwapStatus, SwapStatus, Verdict, WorkerSwap};
use crate::data::batch::{Envelope, Route};
use crate::model::ack::AckRef;
use crate::model::event::Batch;
use crate::plugin::{Instance, PluginStats};

/// The counters of one plugin in a pipeline, by its place there.
#[derive(Debug, Clone)]
pub struct PluginSeries {
    /// Its place: `processor0`, `processor1`, …, `flusher0`, ….
    pub stage: String,
    /// The plugin reference as configured (e.g. `builtin:parse-regex`).
    pub plugin: String,
    /// Its counters.
    pub stats: Arc<PluginStats>,
}

/// The counters of the plugins that run now: the processor thread
/// replaces the processors' on every swap and rollback, so a retired
/// chain's series go away.
#[derive(Debug, Default)]
pub(super) struct PluginSet {
    pub(super) processors: Vec<PluginSeries>,
    pub(super) flushers: Vec<PluginSeries>,
}

pub(super) type SharedPluginStats = Arc<std::sync::Mutex<PluginSet>>;

pub(super) fn series(kind: &str, i: usize, instance: &Instance) -> PluginSeries {
    PluginSeries {
        stage: format!("{kind}{i}"),
        plugin: instance.prepared().ident().plugin.to_string(),
        stats: instance.prepared().stats().clone(),
    }
}

/// Publishes the processors of the chain that runs now.
pub(super) fn publish(plugins: &SharedPluginStats, stages: &[Stage]) {
    let list = stages
        .iter()
        .enumerate()
        .map(|(i, s)| series("processor", i, &s.instance))
        .collect();
    plugins.lock().unwrap_or_else(|e| e.into_inner()).processors = list;
}

/// The chain a worker keeps while the one it swapped in is on probation.
struct Fallback {
    stages: Vec<Stage>,
    /// Its generation.
    generation: u64,
    rollback: Rollback,
}

/// One processor worker: its own chain of instances, run over the batches
/// it takes; swaps at batch boundaries, with probation and rollback.
pub(super) struct Worker {
    pub(super) name: String,
    pub(super) chain: Chain,
    /// The generation of its chain.
    pub(super) generation: u64,
    pub(super) swaps: Receiver<WorkerSwap>,
    /// Worker 0 measures and reports each swap's pause.
    pub(super) reports_pauses: bool,
    pub(super) status: SharedSwapStatus,
    pub(super) plugins: SharedPluginStats,
    pub(super) order: Arc<Reorder>,
}

struct Run {
    fallback: Option<Fallback>,
    /// How long the last batch took, and a swap whose pause is measured
    /// on the first batch after it: (held, last batch on the old chain).
    last_took: std::time::Duration,
    measuring: Option<(std::time::Duration, std::time::Duration, u64)>,
}

impl Worker {
    fn set_status(&self, f: &mut dyn FnMut(&mut SwapStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// A new chain takes over between two batches: the sequencer hands it
    /// over once every batch before the cut is done.
    fn take_swap(&mut self, mut swap: WorkerSwap, run: &mut Run) {
        let t0 = std::time::Instant::now();
        for stage in &mut swap.stages {
            stage.instance.abort_on(&self.chain.shared.shutdown);
        }
        let old = std::mem::replace(&mut self.chain.stages, swap.stages);
        let previous = std::mem::replace(&mut self.generation, swap.generation);
        publish(&self.plugins, &self.chain.stages);
        let back = if swap.rollback.batches == 0 {
            // Any chain still on probation is dropped too.
            if let Some(f) = run.fallback.take() {
                retire(f.stages);
            }
            Some(old)
        } else {
            match &mut run.fallback {
                // A chain replaced while on probation: the last one that
                // passed stays the fallback.
                Some(f) => {
                    f.rollback = swap.rollback;
                    Some(old)
                }
                None => {
                    run.fallback = Some(Fallback {
                        stages: old,
                        generation: previous,
                        rollback: swap.rollback,
                    });
                    None
                }
            }
        };
        let held = swap.drained + t0.elapsed();
        if self.reports_pauses {
            run.measuring = Some((held, run.last_took, swap.generation));
        }
        let _ = swap.applied.send(back);
    }

    /// Follows a verdict another worker reached on the chain this one has
    /// on probation: keep it (passed) or go back (rolled back).
    fn follow_verdict(&mut self, run: &mut Run) {
        let Some(f) = &run.fallback else { return };
        let verdict = self.status.lock().map(|s| s.verdict).unwrap_or(None);
        match verdict {
            Some((generation, passed)) if generation == self.generation => {
                if passed {
                    if let Some(f) = run.fallback.take() {
                        retire(f.stages);
                    }
                } else {
                    let restored = f.generation;
                    if let Some(f) = run.fallback.take() {
                        retire(std::mem::replace(&mut self.chain.stages, f.stages));
                        self.generation = restored;
                        publish(&self.plugins, &self.chain.stages);
                    }
                }
            }
            _ => {}
        }
    }

    /// Runs a batch on probation: a batch the new chain fails on goes
    /// through the previous chain instead, so it is lost neither way and
    /// processed by exactly one version.
    fn on_probation(
        &mut self,
        batch: Batch,
        from: usize,
        run: &mut Run,
    ) -> Result<Option<Batch>, Abandoned> {
        let Some(f) = run.fallback.as_mut() else {
            return self.chain.run(batch, from);
        };
        let copy = batch.clone();
        let (out, failure) = match self.chain.try_run(batch, from) {
            Ok(out) => (Ok(Some(out)), None),
            Err((plugin, e)) => {
                tracing::warn!(pipeline = %self.name, plugin = &*plugin, error = %e, "New processors failed on a batch during probation; the previous ones processed it.");
                let out = Chain::run_stages(&mut f.stages, from, copy, &self.chain.shared);
                (out, Some(format!("{plugin}: {e}")))
            }
        };
        let (generation, rollback, restored) = (self.generation, f.rollback, f.generation);
        let mut verdict = Verdict::Pending;
        self.set_status(&mut |s| {
            if let Some(p) = &mut s.probation
                && p.generation == generation
            {
                verdict = p.record(failure.is_some(), rollback);
                match verdict {
                    Verdict::Pending => {}
                    Verdict::Passed => {
                        s.probation = None;
                        s.verdict = Some((generation, true));
                    }
                    Verdict::Failed(p) => {
                        s.active = restored;
                        s.probation = None;
                        s.rollbacks += 1;
                        s.verdict = Some((generation, false));
                        s.last_rollback = Some(RollbackReport {
                            generation: p.generation,
                            restored,
                            failed: p.failed,
                            seen: p.seen,
                            error: failure.clone().unwrap_or_default(),
                            at: std::time::SystemTime::now(),
                        });
                    }
                }
            }
        });
        if let Verdict::Failed(p) = verdict {
            let error = failure.unwrap_or_default();
            tracing::error!(pipeline = %self.name, generation = p.generation, restored, failed = p.failed, seen = p.seen, error = %error, "New processors failed on too many of their first batches: rolled back to the previous ones.");
        }
        if verdict != Verdict::Pending {
            self.follow_verdict(run);
        }
        out
    }

    /// Takes jobs until the sequencer is done.
    pub(super) fn spawn(mut self, jobs: Receiver<Job>) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name(self.name.clone())
            .spawn(move || {
                let mut run = Run {
                    fallback: None,
                    last_took: std::time::Duration::ZERO,
                    measuring: None,
                };
                loop {
                    let (seq, Envelope { batch, ack, route }) = crossbeam_channel::select! {
                        recv(self.swaps) -> swap => {
                            if let Ok(swap) = swap {
                                self.take_swap(swap, &mut run);
                            }
                            continue;
                        }
                        recv(jobs) -> job => match job {
                            Ok(job) => job,
                            Err(_) => break,
                        },
                    };
                    let out = self.process(batch, (&ack, route), &mut run);
                    self.order
                        .done(seq, out.map(|batch| Envelope { batch, ack, route }));
                }
            })
    }

    /// One batch through the chain; `None` if nothing is to be passed on
    /// (dropped, dead-lettered, or left undelivered: its ack then fails).
    fn process(
        &mut self,
        batch: Batch,
        (ack, route): (&Option<AckRef>, Route),
        run: &mut Run,
    ) -> Option<Batch> {
        let fail = || {
            if let Some(a) = ack {
                a.fail();
            }
        };
        if self.order.abandoned.load(Ordering::Relaxed) > 0 {
            // A processor failed past the shutdown deadline: what is still
            // queued stays undelivered too (uncommitted, read again after
            // the restart), behind the batch it failed on.
            fail();
            self.order.abandoned.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.follow_verdict(run);
        let stats = self.chain.shared.stats.clone();
        stats.batches_in.inc();
        stats.events_in.add(batch.len() as u64);
        let started = std::time::Instant::now();
        let out = self.on_probation(batch, route.from_processor, run);
        run.last_took = started.elapsed();
        if let Some((held, before, generation)) = run.measuring.take() {
            let pause = held + run.last_took.saturating_sub(before);
            stats.swap_pause.observe(pause);
            tracing::info!(pipeline = %self.name, generation, pause_us = pause.as_micros() as u64, first_batch_us = run.last_took.as_micros() as u64, previous_batch_us = before.as_micros() as u64, "Swap pause measured.");
        }
        // A batch dead-lettered or dropped by a processor is done with:
        // dropping its ack counts it as delivered.
        match out {
            Ok(Some(out)) => {
                stats.events_processed.add(out.len() as u64);
                (!out.is_empty()).then_some(out)
            }
            Ok(None) => None,
            Err(chain::Abandoned) => {
                fail();
                if self.order.abandoned.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(pipeline = %self.name, "A processor failed after the shutdown deadline: this batch and every one behind it are left undelivered; they are read again after the restart.");
                }
                None
            }
        }
    }
}

/// Drops a chain that is done with on a thread of its own: tearing down
/// Wasm instances is not data-path work.
fn retire(stages: Vec<Stage>) {
    if stages.is_empty() {
        return;
    }
    if let Err(e) = std::thread::Builder::new()
        .name("gleaner-retire".into())
        .spawn(move || drop(stages))
    {
        tracing::warn!(error = %e, "Cannot spawn a thread to drop old processors; dropping them here.");
    }
}
