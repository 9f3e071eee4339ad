//! A pipeline: inputs → batcher → processor chain → every flusher, each
//! stage on its own thread(s), joined by bounded channels so a slow flusher
//! slows only its own pipeline.
//!
//! The control plane assembles a [`PreparedPipeline`] from a config (every
//! plugin compiled and initialised first, so a bad plugin or plugin config
//! is reported before anything starts); [`PreparedPipeline::start`] spawns
//! the threads; [`RunningPipeline::stop`]
//! stops reading, and [`RunningPipeline::join`] waits for the queues to
//! drain. This module wires stages; it does not read files or call wasmtime.

mod chain;
mod order;
mod processor;
mod resend;
mod swap;

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};

use self::chain::{Chain, Shared, Stage};
use self::order::{Job, Reorder, spawn_sequencer};
pub use self::processor::PluginSeries;
use self::processor::{SharedPluginStats, Worker, publish, series};
pub use self::resend::ResendError;
use self::resend::{Resend, stages_of};
pub use self::swap::{Probation, Rollback, RollbackReport, SwapError, SwapStatus, Swapper};
use self::swap::{SharedSwapStatus, Swap, WorkerSwap};
use crate::data::batch::{Batcher, Envelope, Outlet};
use crate::data::discovery::DiscoveryConfig;
use crate::data::discovery::DiscoveryStats;
use crate::data::flush::policy::OnError;
use crate::data::flush::{FlushWorker, Shutdown};
use crate::data::kafka::KafkaOptions;
use crate::data::kube_events::KubeEventsOptions;
use crate::data::replay::ReplayStatus;
use crate::data::tail::FileInputOptions;
use crate::data::tail::{Checkpoints, InputStats, PatternError, Tailer};
use crate::data::tap::Taps;
use crate::plugin::Instance;
use crate::state::checkpoint::CheckpointStore;
use crate::state::dead_letter::{DeadLetter, Taken};
use crate::telemetry::stats::PipelineStats;

/// What a pipeline reads and how it batches and queues: the part of its
/// config the data path needs (the control plane resolves the rest).
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    /// Unique name.
    pub name: String,
    /// Inputs.
    pub inputs: Vec<InputConfig>,
    /// Batch bounds.
    pub batch: crate::data::batch::BatchLimits,
    /// Queue depth between stages, in batches.
    pub queue_batches: usize,
}

/// A pipeline whose plugins are compiled and initialised, not yet running.
pub struct PreparedPipeline {
    spec: PipelineSpec,
    workers: Vec<Vec<Stage>>,
    flushers: Vec<FlushWorker>,
    dead_letter: Arc<DeadLetter>,
    shutdown: Arc<Shutdown>,
    stats: Arc<PipelineStats>,
}

impl PreparedPipeline {
    /// A pipeline of `spec` with its processor chain and flushers (their
    /// instances initialised), its dead letters, stop signal and counters.
    pub fn new(
        spec: PipelineSpec,
        processors: Processors,
        flushers: Vec<FlushWorker>,
        dead_letter: Arc<DeadLetter>,
        (shutdown, stats): (Arc<Shutdown>, Arc<PipelineStats>),
    ) -> Self {
        PreparedPipeline {
            spec,
            workers: processors.workers,
            flushers,
            dead_letter,
            shutdown,
            stats,
        }
    }
}

/// A pipeline's processor chains, one per worker, compiled and
/// initialised, ready to run or to be swapped into a running pipeline.
pub struct Processors {
    workers: Vec<Vec<Stage>>,
}

impl Processors {
    /// One chain of `(instance, failure policy)` in order per worker (at
    /// least one worker).
    pub fn new(workers: Vec<Vec<(Instance, OnError)>>) -> Self {
        Processors {
            workers: workers
                .into_iter()
                .map(|chain| {
                    chain
                        .into_iter()
                        .map(|(instance, on_error)| Stage { instance, on_error })
                        .collect()
                })
                .collect(),
        }
    }
}

/// One checked input.
// A handful per config, built once: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum InputConfig {
    /// Files: a `file` input's, or those a `docker` or `kubernetes`
    /// input discovers.
    Files {
        /// How files are read (and, for a `file` input, which).
        read: FileInputOptions,
        /// For `docker` and `kubernetes` inputs: where their targets come from.
        discovery: Option<DiscoveryConfig>,
    },
    /// A Kafka consumer group's partitions.
    Kafka(KafkaOptions),
    /// The cluster's Kubernetes Events.
    KubernetesEvents(KubeEventsOptions),
}

impl InputConfig {
    /// How files are read, for inputs of files.
    pub fn read(&self) -> Option<&FileInputOptions> {
        match self {
            InputConfig::Files { read, .. } => Some(read),
            InputConfig::Kafka(_) | InputConfig::KubernetesEvents(_) => None,
        }
    }

    /// Where targets come from, for `docker` and `kubernetes` inputs.
    pub fn discovery(&self) -> Option<&DiscoveryConfig> {
        match self {
            InputConfig::Files { discovery, .. } => discovery.as_ref(),
            InputConfig::Kafka(_) | InputConfig::KubernetesEvents(_) => None,
        }
    }
}

/// A running pipeline.
pub struct RunningPipeline {
    name: String,
    shutdown: Arc<Shutdown>,
    threads: Vec<JoinHandle<()>>,
    stats: Arc<PipelineStats>,
    inputs: Vec<Arc<InputStats>>,
    /// Per discovering input: its index and counters.
    discoveries: Vec<(usize, Arc<DiscoveryStats>)>,
    plugins: SharedPluginStats,
    swap: Sender<Swap>,
    workers: usize,
    swap_status: SharedSwapStatus,
    queues: Vec<(String, Receiver<Envelope>)>,
    taps: Arc<Taps>,
    resend: Resend,
}

impl PreparedPipeline {
    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.spec.name
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
        let name = self.spec.name.clone();
        let depth = self.spec.queue_batches;
        // The inputs' view of the pipeline's one stop signal.
        let stop = self.shutdown.reading().clone();
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
            threads.push(spawn_or_log(worker.spawn(format!("{name}-flush{i}"), rx)));
        }
        let (in_tx, in_rx) = bounded::<Envelope>(depth);
        queues.insert(0, ("processors".to_owned(), in_rx.clone()));
        // Workers run at most a few batches each ahead of the oldest one
        // unfinished; the reorder stage passes results on in read order.
        let workers = self.workers.len().max(1);
        let taps = Arc::new(Taps::default());
        let order = Reorder::new(flush_queues, 2 * workers as u64 + 2, taps.clone());
        let shared = Arc::new(Shared {
            dead_letter: self.dead_letter.clone(),
            stats: self.stats.clone(),
            shutdown: self.shutdown.clone(),
            taps: taps.clone(),
        });
        let (jobs_tx, jobs_rx) = bounded::<Job>(workers);
        let (swap_tx, swap_rx) = bounded::<Swap>(1);
        let swap_status = SharedSwapStatus::default();
        let mut worker_swaps = Vec::new();
        for (w, mut stages) in self.workers.into_iter().enumerate() {
            for stage in &mut stages {
                stage.instance.abort_on(&self.shutdown);
            }
            if w == 0 {
                publish(&plugins, &stages);
            }
            let (tx, rx) = bounded::<WorkerSwap>(1);
            worker_swaps.push(tx);
            let worker = Worker {
                name: format!("{name}-process{w}"),
                chain: Chain {
                    stages,
                    shared: shared.clone(),
                },
                generation: 0,
                swaps: rx,
                reports_pauses: w == 0,
                status: swap_status.clone(),
                plugins: plugins.clone(),
                order: order.clone(),
            };
            threads.push(spawn_or_log(worker.spawn(jobs_rx.clone())));
        }
        threads.push(spawn_or_log(spawn_sequencer(
            format!("{name}-sequence"),
            (in_rx, taps.clone()),
            jobs_tx,
            order.clone(),
            (swap_rx, worker_swaps),
        )));
        drop(order);
        let mut inputs = Vec::new();
        let mut discoveries = Vec::new();
        let outlet = |stats| Outlet {
            limits: self.spec.batch,
            out: in_tx.clone(),
            shutdown: self.shutdown.clone(),
            stats,
            exit_on_eof,
        };
        for (i, input) in self.spec.inputs.iter().enumerate() {
            let input_stats = Arc::new(InputStats::default());
            inputs.push(input_stats.clone());
            let (opts, discovery) = match input {
                InputConfig::Files { read, discovery } => (read.clone(), discovery),
                InputConfig::Kafka(k) => {
                    threads.push(spawn_or_log(crate::data::kafka::spawn(
                        format!("{name}-kafka{i}"),
                        k.clone(),
                        outlet(input_stats),
                    )));
                    continue;
                }
                InputConfig::KubernetesEvents(k) => {
                    threads.push(spawn_or_log(crate::data::kube_events::spawn(
                        format!("{name}-events{i}"),
                        k.clone(),
                        outlet(input_stats),
                    )));
                    continue;
                }
            };
            let checkpoints = Checkpoints {
                store: store.clone(),
                input: Arc::from(format!("{name}/{i}")),
            };
            let tailer = match discovery {
                None => Tailer::new(opts, input_stats.clone(), checkpoints)?,
                Some(discovery) => {
                    let (tx, rx) = crossbeam_channel::unbounded();
                    let stats = Arc::new(DiscoveryStats::default());
                    discoveries.push((i, stats.clone()));
                    let spawned = match discovery {
                        DiscoveryConfig::Docker(d) => crate::data::discovery::docker::spawn(
                            format!("{name}-docker{i}"),
                            d.clone(),
                            tx,
                            stop.clone(),
                            stats,
                        ),
                        DiscoveryConfig::Kubernetes(k) => {
                            crate::data::discovery::kubernetes::spawn(
                                format!("{name}-k8s{i}"),
                                k.clone(),
                                tx,
                                stop.clone(),
                                stats,
                            )
                        }
                    };
                    threads.push(spawn_or_log(spawned));
                    Tailer::with_discovery(opts, input_stats.clone(), checkpoints, rx)
                }
            };
            let mut batcher = Batcher::new(self.spec.batch, in_tx.clone());
            let stop = stop.clone();
            threads.push(spawn_or_log(
                std::thread::Builder::new()
                    .name(format!("{name}-input{i}"))
                    .spawn(move || tailer.run(&mut batcher, stop, exit_on_eof)),
            ));
        }
        tracing::info!(pipeline = %name, inputs = inputs.len(), "Started pipeline.");
        let resend = Resend {
            // A one-off run ends when its inputs are done: nothing may
            // hold its queue open but a replay already due.
            queue: std::sync::Mutex::new((!exit_on_eof).then(|| in_tx.clone())),
            limits: self.spec.batch,
            dead_letter: self.dead_letter.clone(),
            shutdown: self.shutdown.clone(),
            stats: self.stats.clone(),
            status: Arc::default(),
            thread: std::sync::Mutex::new(None),
        };
        if resend.dead_letter.replay_path().exists() {
            // Left by a stop in the middle of a replay: it goes on.
            *resend.queue.lock().unwrap_or_else(|p| p.into_inner()) = Some(in_tx.clone());
            if let Err(e) = resend.start(&name, stages_of(&plugins)) {
                tracing::error!(pipeline = %name, error = %e, "Cannot go on sending dead letters back.");
            }
            if exit_on_eof {
                *resend.queue.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
        }
        drop(in_tx);
        Ok(RunningPipeline {
            name,
            shutdown: self.shutdown,
            threads: threads.into_iter().flatten().collect(),
            stats: self.stats,
            inputs,
            discoveries,
            plugins,
            swap: swap_tx,
            workers,
            swap_status,
            queues,
            taps,
            resend,
        })
    }
}

/// Stops a pipeline from another thread (see [`RunningPipeline::stop`]).
#[derive(Debug, Clone)]
pub struct Stopper {
    shutdown: Arc<Shutdown>,
}

impl Stopper {
    /// Same as [`RunningPipeline::stop`].
    pub fn stop(&self, grace: std::time::Duration) {
        self.shutdown.stop(grace);
    }
}

fn spawn_or_log(r: std::io::Result<JoinHandle<()>>) -> Option<JoinHandle<()>> {
    r.map_err(|e| tracing::error!(error = %e, "Cannot spawn a pipeline thread."))
        .ok()
}

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

    /// Discovery counters, with the index of their input.
    pub fn discovery_stats(&self) -> &[(usize, Arc<DiscoveryStats>)] {
        &self.discoveries
    }

    /// Tells the inputs to stop reading and the flushers to deliver what is
    /// queued within `grace`, then buffer the rest; returns at once.
    pub fn stop(&self, grace: std::time::Duration) {
        self.resend
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        self.shutdown.stop(grace);
    }

    /// The pipeline's taps (`gleaner tap`).
    pub fn taps(&self) -> &Arc<Taps> {
        &self.taps
    }

    /// Sends the dead-lettered records `chosen` picks back through the
    /// pipeline, each at the stage that gave it up; returns what was moved
    /// out of the dead-letter file (nothing is sent if that is none).
    pub fn resend_dead_letters(
        &self,
        chosen: &dyn Fn(&serde_json::Map<String, serde_json::Value>) -> bool,
    ) -> Result<Taken, ResendError> {
        if self
            .resend
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
        {
            return Err(ResendError::Closed);
        }
        let taken = self.resend.dead_letter.take(chosen)?;
        if taken.events > 0 {
            self.resend.start(&self.name, stages_of(&self.plugins))?;
        }
        Ok(taken)
    }

    /// How the last replay of dead letters went (`None`: there was none).
    pub fn resend_status(&self) -> Option<ReplayStatus> {
        let started = self
            .resend
            .thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        started.then(|| {
            self.resend
                .status
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        })
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
            workers: self.workers,
            status: self.swap_status.clone(),
        }
    }

    /// A handle that can stop the pipeline from another thread.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            shutdown: self.shutdown.clone(),
        }
    }

    /// Waits until every batch read has been processed and flushed.
    pub fn join(mut self) {
        self.resend
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        for t in std::mem::take(&mut self.threads) {
            let _ = t.join();
        }
        if let Some(t) = self
            .resend
            .thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = t.join();
        }
        // One line: every input counter summed over the inputs, then every
        // pipeline counter, as declared (`telemetry::counters!`).
        let inputs = crate::telemetry::summary(self.inputs.iter().flat_map(|i| i.each()));
        let pipeline = crate::telemetry::summary(self.stats.each());
        tracing::info!(
            "Pipeline stopped. pipeline={} {inputs} {pipeline}",
            self.name
        );
        for (_, d) in &self.discoveries {
            let summary = crate::telemetry::summary(d.each());
            tracing::info!("Discovery summary. pipeline={} {summary}", self.name);
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
                plugin = ?plugin,
                calls = p.calls.get(),
                call_ms = p.call_micros.get() / 1000,
                traps = p.traps.get(),
                errors = p.errors.get(),
                instances = p.instances.get(),
                output_bytes = p.output_bytes.get(),
                output_lines = p.output_lines.get(),
                output_lines_dropped = p.output_lines_dropped.get(),
                denied = p.denied.get(),
                counters = %counters,
                "Plugin summary."
            );
        }
    }
}
