//! The processor thread of a pipeline: takes batches from the inputs,
//! runs the chain (swapping chains at batch boundaries, with probation and
//! rollback), and hands what comes out to every flusher's queue. It also
//! publishes which plugins run now, for metrics.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use super::chain::{self, Chain, Stage};
use super::swap::{
    Probation, Rollback, RollbackReport, SharedSwapStatus, Swap, SwapStatus, Verdict,
};
use crate::data::batch::Envelope;
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

pub(super) fn spawn_processor(
    name: String,
    mut chain: Chain,
    input: Receiver<Envelope>,
    (swaps, status, plugins): (Receiver<Swap>, SharedSwapStatus, SharedPluginStats),
    outputs: Vec<Sender<Envelope>>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.clone()).spawn(move || {
        // The previous chain and its generation, while the current one is
        // on probation.
        let mut fallback: Option<(Vec<Stage>, u64, Rollback)> = None;
        // How long the last batch took, and a swap whose pause is measured
        // on the first batch after it: (held, last batch on the old chain).
        let mut last_took = std::time::Duration::ZERO;
        let mut measuring: Option<(std::time::Duration, std::time::Duration, u64)> = None;
        // Batches left undelivered after the shutdown deadline.
        let mut abandoned = 0u64;
        let set_status = |f: &mut dyn FnMut(&mut SwapStatus)| {
            f(&mut status.lock().unwrap_or_else(|e| e.into_inner()));
        };
        loop {
            // A new chain takes over between two batches: the batch in
            // hand finished on the old one, the next starts on the new.
            let Envelope { batch, ack } = crossbeam_channel::select! {
                recv(swaps) -> swap => {
                    if let Ok(mut swap) = swap {
                        let t0 = std::time::Instant::now();
                        for stage in &mut swap.stages {
                            stage.instance.abort_on(&chain.shutdown);
                        }
                        let old = std::mem::replace(&mut chain.stages, swap.stages);
                        publish(&plugins, &chain.stages);
                        let back = if swap.rollback.batches == 0 {
                            // Any chain still on probation is dropped too.
                            if let Some((stages, _, _)) = fallback.take() {
                                retire(stages);
                            }
                            Some(old)
                        } else {
                            match &fallback {
                                // A chain replaced while on probation: the
                                // last one that passed stays the fallback.
                                Some(_) => Some(old),
                                None => {
                                    let prev = status.lock().map(|s| s.active).unwrap_or(0);
                                    fallback = Some((old, prev, swap.rollback));
                                    None
                                }
                            }
                        };
                        let held = t0.elapsed();
                        measuring = Some((held, last_took, swap.generation));
                        set_status(&mut |s| {
                            s.active = swap.generation;
                            s.swaps += 1;
                            s.probation = (swap.rollback.batches > 0).then_some(Probation {
                                generation: swap.generation,
                                seen: 0,
                                failed: 0,
                            });
                        });
                        if let Some((_, _, r)) = &mut fallback {
                            *r = swap.rollback;
                        }
                        let _ = swap.done.send((held, back));
                    }
                    continue;
                }
                recv(input) -> envelope => match envelope {
                    Ok(e) => e,
                    Err(_) => {
                        if abandoned > 0 {
                            tracing::warn!(pipeline = %name, batches = abandoned, "A processor failed after the shutdown deadline: these batches were left undelivered; they are read again after the restart.");
                        }
                        break;
                    }
                },
            };
            if abandoned > 0 {
                // A processor failed past the shutdown deadline: what is
                // still queued stays undelivered too (uncommitted, read
                // again after the restart), behind the batch it failed on.
                // Until then batches are processed as usual (and buffered
                // by the flushers if they cannot be delivered).
                if let Some(a) = &ack {
                    a.fail();
                }
                abandoned += 1;
                continue;
            }
            chain.stats.batches_in.inc();
            chain.stats.events_in.add(batch.len() as u64);
            let started = std::time::Instant::now();
            let out = match fallback.as_mut() {
                None => chain.run(batch),
                Some((old, prev, rollback)) => {
                    // On probation: a batch the new chain fails on goes
                    // through the previous chain instead, so it is lost
                    // neither way and processed by exactly one version.
                    let copy = batch.clone();
                    let (out, failure) = match chain.try_run(batch) {
                        Ok(out) => (Ok(Some(out)), None),
                        Err((plugin, e)) => {
                            tracing::warn!(pipeline = %name, plugin = &*plugin, error = %e, "New processors failed on a batch during probation; the previous ones processed it.");
                            let out = Chain::run_stages(
                                old,
                                copy,
                                &chain.dead_letter,
                                &chain.stats,
                                &chain.shutdown,
                            );
                            (out, Some(format!("{plugin}: {e}")))
                        }
                    };
                    let mut verdict = Verdict::Pending;
                    set_status(&mut |s| {
                        if let Some(p) = &mut s.probation {
                            verdict = p.record(failure.is_some(), *rollback);
                        }
                    });
                    match verdict {
                        Verdict::Pending => {}
                        Verdict::Passed => {
                            set_status(&mut |s| s.probation = None);
                            if let Some((old, _, _)) = fallback.take() {
                                retire(old);
                            }
                        }
                        Verdict::Failed(p) => {
                            let restored = *prev;
                            if let Some((old, _, _)) = fallback.take() {
                                retire(std::mem::replace(&mut chain.stages, old));
                                publish(&plugins, &chain.stages);
                            }
                            let error = failure.unwrap_or_default();
                            tracing::error!(pipeline = %name, generation = p.generation, restored, failed = p.failed, seen = p.seen, error = %error, "New processors failed on too many of their first batches: rolled back to the previous ones.");
                            set_status(&mut |s| {
                                s.active = restored;
                                s.probation = None;
                                s.rollbacks += 1;
                                s.last_rollback = Some(RollbackReport {
                                    generation: p.generation,
                                    restored,
                                    failed: p.failed,
                                    seen: p.seen,
                                    error: error.clone(),
                                    at: std::time::SystemTime::now(),
                                });
                            });
                        }
                    }
                    out
                }
            };
            last_took = started.elapsed();
            if let Some((held, before, generation)) = measuring.take() {
                let pause = held + last_took.saturating_sub(before);
                chain.stats.swap_pause.observe(pause);
                tracing::info!(pipeline = %name, generation, pause_us = pause.as_micros() as u64, first_batch_us = last_took.as_micros() as u64, previous_batch_us = before.as_micros() as u64, "Swap pause measured.");
            }
            // A batch dead-lettered or dropped by a processor is done with:
            // dropping its ack here counts it as delivered.
            let out = match out {
                Ok(Some(out)) => out,
                Ok(None) => continue,
                Err(chain::Abandoned) => {
                    if let Some(a) = &ack {
                        a.fail();
                    }
                    abandoned += 1;
                    continue;
                }
            };
            chain.stats.events_processed.add(out.len() as u64);
            if out.is_empty() {
                continue;
            }
            if let Some((last, rest)) = outputs.split_last() {
                for q in rest {
                    let _ = q.send(Envelope {
                        batch: out.clone(),
                        ack: ack.clone(),
                    });
                }
                let _ = last.send(Envelope { batch: out, ack });
            }
        }
    })
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
