//! A pipeline: inputs → batcher → processor chain → every flusher, each
//! stage on its own thread(s), joined by bounded channels so a slow flusher
//! slows only its own pipeline.
//!
//! [`prepare`] compiles, links and initialises every plugin (so a bad
//! plugin or plugin config is reported before anything starts);
//! [`PreparedPipeline::start`] spawns the threads; [`RunningPipeline::stop`]
//! stops reading, and [`RunningPipeline::join`] waits for the queues to
//! drain. This module wires stages; it does not read files or call wasmtime.

mod chain;
pub mod dead_letter;
pub mod stats;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};

use self::chain::{Chain, Stage};
use self::dead_letter::DeadLetter;
use self::stats::PipelineStats;
use crate::batch::{Batcher, Envelope};
use crate::buffer::DiskBuffer;
use crate::checkpoint::CheckpointStore;
use crate::config::{DiscoveryConfig, PipelineConfig, Rollback};
use crate::discovery::DiscoveryStats;
use crate::flush::{FlushWorker, Shutdown};
use crate::plugin::{Ident, Instance, PluginError, PluginHost, PluginStats};
use crate::tail::{Checkpoints, InputStats, PatternError, Tailer};

/// Why a pipeline could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// A plugin could not be compiled, linked or initialised.
    #[error("{key} ({reference}): {source}")]
    Plugin {
        /// Key path of the plugin entry.
        key: String,
        /// The `plugin:` value.
        reference: String,
        /// What went wrong.
        source: PluginError,
    },
    /// A flusher's disk buffer directory cannot be used.
    #[error("{key}: cannot open the disk buffer {path}: {source}")]
    Buffer {
        /// Key path of the flusher entry.
        key: String,
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A pipeline whose plugins are compiled and initialised, not yet running.
pub struct PreparedPipeline {
    config: PipelineConfig,
    stages: Vec<Stage>,
    flushers: Vec<FlushWorker>,
    dead_letter: Arc<DeadLetter>,
    shutdown: Arc<Shutdown>,
    stats: Arc<PipelineStats>,
}

/// Compiles, links and initialises every plugin of `config`.
pub fn prepare(
    config: &PipelineConfig,
    host: &PluginHost,
    data_dir: &Path,
) -> Result<PreparedPipeline, PrepareError> {
    let stats = Arc::new(PipelineStats::default());
    let dead_letter = Arc::new(DeadLetter::new(
        data_dir
            .join("dead-letter")
            .join(format!("{}.ndjson", config.name)),
    ));
    let Processors { stages } = prepare_processors(config, host)?;
    let shutdown = Arc::new(Shutdown::default());
    let mut flushers = Vec::new();
    for (i, entry) in config.flushers.iter().enumerate() {
        let dir = data_dir
            .join("buffer")
            .join(&config.name)
            .join(i.to_string());
        let buffer = DiskBuffer::open(dir.clone()).map_err(|source| PrepareError::Buffer {
            key: entry.key.clone(),
            path: dir,
            source,
        })?;
        flushers.push(FlushWorker {
            instance: instance(config, host, entry)?,
            on_error: entry.on_error.clone(),
            dead_letter: dead_letter.clone(),
            buffer: Arc::new(buffer),
            shutdown: shutdown.clone(),
            spill: entry.spill,
            stats: stats.clone(),
        });
    }
    Ok(PreparedPipeline {
        config: config.clone(),
        stages,
        flushers,
        dead_letter,
        shutdown,
        stats,
    })
}

/// Compiles, links and initialises one plugin entry of `config`.
fn instance(
    config: &PipelineConfig,
    host: &PluginHost,
    entry: &crate::config::PluginEntry,
) -> Result<Instance, PrepareError> {
    let err = |source| PrepareError::Plugin {
        key: entry.key.clone(),
        reference: entry.reference.clone(),
        source,
    };
    let ident = Ident {
        pipeline: Arc::from(config.name.as_str()),
        plugin: Arc::from(entry.reference.as_str()),
    };
    let prepared = host.prepare(ident, entry.kind, &entry.spec).map_err(err)?;
    prepared.instance().map_err(err)
}

/// A pipeline's processor chain, compiled and initialised, ready to run or
/// to be swapped into a running pipeline.
pub struct Processors {
    stages: Vec<Stage>,
}

/// Compiles, links and initialises the processors of `config` only.
pub fn prepare_processors(
    config: &PipelineConfig,
    host: &PluginHost,
) -> Result<Processors, PrepareError> {
    let mut stages = Vec::new();
    for entry in &config.processors {
        stages.push(Stage {
            instance: instance(config, host, entry)?,
            on_error: entry.on_error.clone(),
        });
    }
    Ok(Processors { stages })
}

/// A processor chain handed to the processor thread.
struct Swap {
    stages: Vec<Stage>,
    /// Numbers the chain (the supervisor's count of swaps).
    generation: u64,
    /// Probation of the new chain.
    rollback: Rollback,
    /// Gets how long the swap held the processor thread, and the old
    /// chain unless it is kept for probation (dropped by the caller, off
    /// the data path).
    done: Sender<(std::time::Duration, Option<Vec<Stage>>)>,
}

/// What the processor thread reports about swaps and rollbacks.
#[derive(Debug, Clone, Default)]
pub struct SwapStatus {
    /// Generation of the chain processing now (0: the one started with).
    pub active: u64,
    /// Generation on probation: batches seen and failed so far.
    pub probation: Option<Probation>,
    /// Swaps taken.
    pub swaps: u64,
    /// Rollbacks done.
    pub rollbacks: u64,
    /// The last rollback.
    pub last_rollback: Option<RollbackReport>,
}

/// A chain on probation.
#[derive(Debug, Clone, Copy)]
pub struct Probation {
    /// Its generation.
    pub generation: u64,
    /// Batches it processed (or failed on).
    pub seen: u32,
    /// Batches it failed on (each went through the previous chain).
    pub failed: u32,
}

/// A rollback: which chain failed, which took over again, and why.
#[derive(Debug, Clone)]
pub struct RollbackReport {
    /// Generation rolled back.
    pub generation: u64,
    /// Generation processing again.
    pub restored: u64,
    /// Batches it failed on, of `seen`.
    pub failed: u32,
    /// Batches it saw.
    pub seen: u32,
    /// The last failure.
    pub error: String,
    /// When.
    pub at: std::time::SystemTime,
}

type SharedSwapStatus = Arc<std::sync::Mutex<SwapStatus>>;

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
struct PluginSet {
    processors: Vec<PluginSeries>,
    flushers: Vec<PluginSeries>,
}

type SharedPluginStats = Arc<std::sync::Mutex<PluginSet>>;

fn series(kind: &str, i: usize, instance: &Instance) -> PluginSeries {
    PluginSeries {
        stage: format!("{kind}{i}"),
        plugin: instance.prepared().ident().plugin.to_string(),
        stats: instance.prepared().stats().clone(),
    }
}

/// Publishes the processors of the chain that runs now.
fn publish(plugins: &SharedPluginStats, stages: &[Stage]) {
    let list = stages
        .iter()
        .enumerate()
        .map(|(i, s)| series("processor", i, &s.instance))
        .collect();
    plugins.lock().unwrap_or_else(|e| e.into_inner()).processors = list;
}

/// A running pipeline.
pub struct RunningPipeline {
    name: String,
    stop: Arc<AtomicBool>,
    shutdown: Arc<Shutdown>,
    threads: Vec<JoinHandle<()>>,
    stats: Arc<PipelineStats>,
    inputs: Vec<Arc<InputStats>>,
    discoveries: Vec<Arc<DiscoveryStats>>,
    plugins: SharedPluginStats,
    swap: Sender<Swap>,
    swap_status: SharedSwapStatus,
    queues: Vec<(String, Receiver<Envelope>)>,
}

/// Swaps a running pipeline's processors from another thread.
#[derive(Clone)]
pub struct Swapper {
    swap: Sender<Swap>,
}

impl Swapper {
    /// Replaces the processor chain at the next batch boundary (the batch
    /// being processed finishes on the old chain; batches already handed
    /// to flushers are not touched). With a `rollback` probation, the old
    /// chain is kept until the new one has passed its first batches, and
    /// takes over again if it fails on too many (each failed batch goes
    /// through the old chain instead). Returns how long the processor
    /// thread was held for the swap itself.
    pub fn swap(
        &self,
        processors: Processors,
        generation: u64,
        rollback: Rollback,
    ) -> Result<std::time::Duration, SwapError> {
        let (done_tx, done_rx) = bounded(1);
        self.swap
            .send(Swap {
                stages: processors.stages,
                generation,
                rollback,
                done: done_tx,
            })
            .map_err(|_| SwapError)?;
        // The old chain comes back and is dropped here, not on the
        // processor thread.
        let (held, old) = done_rx.recv().map_err(|_| SwapError)?;
        drop(old);
        Ok(held)
    }
}

impl PreparedPipeline {
    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// What it was prepared from.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// Spawns the threads. With `exit_on_eof` the inputs stop by themselves
    /// once the files present at start are read to their end. Inputs whose
    /// patterns do not compile are reported (config checking makes that
    /// unreachable in practice).
    pub fn start(
        self,
        exit_on_eof: bool,
        store: &Arc<CheckpointStore>,
    ) -> Result<RunningPipeline, PatternError> {
        let name = self.config.name.clone();
        let depth = self.config.queue_batches;
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut flush_queues: Vec<Sender<Envelope>> = Vec::new();
        // Receiver clones, only to read queue depths: they do not keep a
        // channel open (its senders do).
        let mut queues = Vec::new();
        let plugins = SharedPluginStats::default();
        plugins.lock().unwrap_or_else(|e| e.into_inner()).flushers = self
            .flushers
            .iter()
            .enumerate()
            .map(|(i, w)| series("flusher", i, &w.instance))
            .collect();
        for (i, worker) in self.flushers.into_iter().enumerate() {
            let (tx, rx) = bounded(depth);
            flush_queues.push(tx);
            queues.push((format!("flusher{i}"), rx.clone()));
            threads.push(spawn_or_log(worker.spawn(
                format!("{name}-flush{i}"),
                rx,
                stop.clone(),
            )));
        }
        let (in_tx, in_rx) = bounded::<Envelope>(depth);
        queues.insert(0, ("processors".to_owned(), in_rx.clone()));
        let mut chain = Chain {
            stages: self.stages,
            dead_letter: self.dead_letter.clone(),
            stats: self.stats.clone(),
            shutdown: self.shutdown.clone(),
        };
        for stage in &mut chain.stages {
            stage.instance.abort_on(&self.shutdown);
        }
        publish(&plugins, &chain.stages);
        let (swap_tx, swap_rx) = bounded::<Swap>(1);
        let swap_status = SharedSwapStatus::default();
        threads.push(spawn_or_log(spawn_processor(
            format!("{name}-process"),
            chain,
            in_rx,
            (swap_rx, swap_status.clone(), plugins.clone()),
            flush_queues,
        )));
        let mut inputs = Vec::new();
        let mut discoveries = Vec::new();
        for (i, input) in self.config.inputs.iter().enumerate() {
            let input_stats = Arc::new(InputStats::default());
            let checkpoints = Checkpoints {
                store: store.clone(),
                input: Arc::from(format!("{name}/{i}")),
            };
            let opts = input.read.clone();
            let tailer = match &input.discovery {
                None => Tailer::new(opts, input_stats.clone(), checkpoints)?,
                Some(discovery) => {
                    let (tx, rx) = crossbeam_channel::unbounded();
                    let stats = Arc::new(DiscoveryStats::default());
                    discoveries.push(stats.clone());
                    let spawned = match discovery {
                        DiscoveryConfig::Docker(d) => crate::discovery::docker::spawn(
                            format!("{name}-docker{i}"),
                            d.clone(),
                            tx,
                            stop.clone(),
                            stats,
                        ),
                        DiscoveryConfig::Kubernetes(k) => crate::discovery::kubernetes::spawn(
                            format!("{name}-k8s{i}"),
                            k.clone(),
                            tx,
                            stop.clone(),
                            stats,
                        ),
                    };
                    threads.push(spawn_or_log(spawned));
                    Tailer::with_discovery(opts, input_stats.clone(), checkpoints, rx)
                }
            };
            let mut batcher = Batcher::new(self.config.batch, in_tx.clone());
            let stop = stop.clone();
            inputs.push(input_stats);
            threads.push(spawn_or_log(
                std::thread::Builder::new()
                    .name(format!("{name}-input{i}"))
                    .spawn(move || tailer.run(&mut batcher, stop, exit_on_eof)),
            ));
        }
        tracing::info!(pipeline = %name, inputs = inputs.len(), "Started pipeline.");
        Ok(RunningPipeline {
            name,
            stop,
            shutdown: self.shutdown,
            threads: threads.into_iter().flatten().collect(),
            stats: self.stats,
            inputs,
            discoveries,
            plugins,
            swap: swap_tx,
            swap_status,
            queues,
        })
    }
}

/// Stops a pipeline from another thread (see [`RunningPipeline::stop`]).
#[derive(Debug, Clone)]
pub struct Stopper {
    stop: Arc<AtomicBool>,
    shutdown: Arc<Shutdown>,
}

impl Stopper {
    /// Same as [`RunningPipeline::stop`].
    pub fn stop(&self, grace: std::time::Duration) {
        self.stop.store(true, Ordering::Relaxed);
        self.shutdown.begin(grace);
    }
}

fn spawn_or_log(r: std::io::Result<JoinHandle<()>>) -> Option<JoinHandle<()>> {
    r.map_err(|e| tracing::error!(error = %e, "Cannot spawn a pipeline thread."))
        .ok()
}

fn spawn_processor(
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
                    let mut verdict = None;
                    set_status(&mut |s| {
                        if let Some(p) = &mut s.probation {
                            p.seen += 1;
                            p.failed += u32::from(failure.is_some());
                            if p.failed > rollback.max_failures {
                                verdict = Some(Err(*p));
                            } else if p.seen >= rollback.batches {
                                verdict = Some(Ok(()));
                            }
                        }
                    });
                    match verdict {
                        None => {}
                        Some(Ok(())) => {
                            set_status(&mut |s| s.probation = None);
                            if let Some((old, _, _)) = fallback.take() {
                                retire(old);
                            }
                        }
                        Some(Err(p)) => {
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

/// Why a processor swap did not happen.
#[derive(Debug, thiserror::Error)]
#[error("the pipeline's processor thread has stopped")]
pub struct SwapError;

impl RunningPipeline {
    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Pipeline counters.
    pub fn stats(&self) -> &Arc<PipelineStats> {
        &self.stats
    }

    /// Input counters, one per input.
    pub fn input_stats(&self) -> &[Arc<InputStats>] {
        &self.inputs
    }

    /// Tells the inputs to stop reading and the flushers to deliver what is
    /// queued within `grace`, then buffer the rest; returns at once.
    pub fn stop(&self, grace: std::time::Duration) {
        self.stop.store(true, Ordering::Relaxed);
        self.shutdown.begin(grace);
    }

    /// The counters of the plugins running now, processors then flushers,
    /// each named by its place.
    pub fn plugin_stats(&self) -> Vec<PluginSeries> {
        let set = self.plugins.lock().unwrap_or_else(|e| e.into_inner());
        set.processors
            .iter()
            .chain(&set.flushers)
            .cloned()
            .collect()
    }

    /// Batches waiting in front of each stage (`processors`,
    /// `flusher0`, ...).
    pub fn queue_depths(&self) -> Vec<(String, usize)> {
        self.queues
            .iter()
            .map(|(n, q)| (n.clone(), q.len()))
            .collect()
    }

    /// Swaps and rollbacks so far.
    pub fn swap_status(&self) -> SwapStatus {
        self.swap_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A handle that swaps the processors from another thread.
    pub fn swapper(&self) -> Swapper {
        Swapper {
            swap: self.swap.clone(),
        }
    }

    /// A handle that can stop the pipeline from another thread.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            stop: self.stop.clone(),
            shutdown: self.shutdown.clone(),
        }
    }

    /// Waits until every batch read has been processed and flushed.
    pub fn join(mut self) {
        for t in std::mem::take(&mut self.threads) {
            let _ = t.join();
        }
        let s = &self.stats;
        let lines: u64 = self.inputs.iter().map(|i| i.lines.get()).sum();
        let truncated: u64 = self.inputs.iter().map(|i| i.lines_truncated.get()).sum();
        let given_up: u64 = self.inputs.iter().map(|i| i.bytes_given_up.get()).sum();
        let released: u64 = self.inputs.iter().map(|i| i.files_released.get()).sum();
        let malformed: u64 = self.inputs.iter().map(|i| i.lines_malformed.get()).sum();
        tracing::info!(
            pipeline = %self.name,
            lines_read = lines,
            lines_truncated = truncated,
            lines_malformed = malformed,
            files_released = released,
            bytes_given_up = given_up,
            events_in = s.events_in.get(),
            events_processed = s.events_processed.get(),
            events_delivered = s.events_delivered.get(),
            events_dead_lettered = s.events_dead_lettered.get(),
            events_dropped = s.events_dropped.get(),
            events_buffered = s.events_buffered.get(),
            events_replayed = s.events_replayed.get(),
            "Pipeline stopped."
        );
        for d in &self.discoveries {
            tracing::info!(
                pipeline = %self.name,
                containers_added = d.containers_added.get(),
                containers_filtered = d.containers_filtered.get(),
                containers_missed = d.containers_missed.get(),
                unsupported_drivers = d.unsupported_drivers.get(),
                engine_errors = d.errors.get(),
                resyncs = d.resyncs.get(),
                "Discovery summary."
            );
        }
        for PluginSeries {
            stage,
            plugin,
            stats: p,
        } in self.plugin_stats()
        {
            let counters = format!("{:?}", p.counters_snapshot());
            tracing::info!(
                pipeline = %self.name,
                stage = %stage,
                plugin = %plugin,
                calls = p.calls.get(),
                call_ms = p.call_micros.get() / 1000,
                traps = p.traps.get(),
                errors = p.errors.get(),
                instances = p.instances.get(),
                output_bytes = p.output_bytes.get(),
                output_lines = p.output_lines.get(),
                output_lines_dropped = p.output_lines_dropped.get(),
                counters = %counters,
                "Plugin summary."
            );
        }
    }
}
