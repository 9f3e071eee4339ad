//! The set of running pipelines, by name: starts, replaces and stops whole
//! pipelines while the others run on untouched. Sources of pipelines (the
//! config file, `GleanerPipeline` resources) hand it the complete set they
//! want as an *owner*; it diffs by name and fingerprint and touches only
//! what changed.
//!
//! A changed pipeline is prepared first (plugins compiled and initialised
//! off the data path); only if that works is the old one stopped, drained
//! (its undelivered batches buffered to disk) and the new one started on
//! the same checkpoints and buffers, so nothing is lost or read twice. If
//! the new one cannot be prepared, the old one keeps running.
//!
//! Does not read configs or talk to any API; knows pipelines only as
//! [`PipelineConfig`]s.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::config::PipelineConfig;
use crate::control::assemble::{self, PrepareError};
use crate::data::pipeline::{PreparedPipeline, RunningPipeline};
use crate::data::tail::PatternError;
use crate::plugin::PluginHost;
use crate::state::checkpoint::CheckpointStore;

/// Why a pipeline was not (re)started.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Another source already runs a pipeline of that name.
    #[error("pipeline name `{name}` is already used by {owner}")]
    NameTaken {
        /// The name.
        name: String,
        /// Who runs it.
        owner: String,
    },
    /// Its plugins could not be prepared (the previous version, if any,
    /// keeps running).
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    /// Its inputs could not start.
    #[error(transparent)]
    Start(#[from] PatternError),
    /// The agent is shutting down.
    #[error("the agent is stopping")]
    Stopping,
    /// Not applied because another pipeline of the same all-or-nothing
    /// set failed.
    #[error("not applied: another pipeline of the same config failed")]
    Aborted,
    /// The running pipeline's processor thread is gone.
    #[error(transparent)]
    Swap(#[from] crate::data::pipeline::SwapError),
}

/// What happened to one pipeline in [`Supervisor::apply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Already running as wanted.
    Unchanged,
    /// Started.
    Started,
    /// Only its processors changed: the new chain took over at a batch
    /// boundary, without stopping reading or flushing.
    Swapped,
    /// The old version was drained and the new one started.
    Replaced,
    /// Stopped and drained (no longer wanted).
    Removed,
    /// Its processors as wanted were rolled back after a swap and are not
    /// tried again until they change; the previous ones run.
    HeldBack,
}

/// A running pipeline as the API and metrics see it.
pub struct PipelineView {
    /// Its name.
    pub name: String,
    /// Who runs it.
    pub owner: String,
    /// What its processing chain was built from now (after swaps and
    /// rollbacks).
    pub config: Option<PipelineConfig>,
    /// The processors the source wants were rolled back; the previous
    /// ones run.
    pub held_back: bool,
    /// Swaps, probation and rollbacks.
    pub swap: crate::data::pipeline::SwapStatus,
    /// Pipeline counters.
    pub stats: Arc<crate::telemetry::stats::PipelineStats>,
    /// Input counters.
    pub inputs: Vec<Arc<crate::data::tail::InputStats>>,
    /// Discovery counters of the inputs that discover (Docker,
    /// Kubernetes), with their input's index.
    pub discoveries: Vec<(usize, Arc<crate::data::discovery::DiscoveryStats>)>,
    /// Batches waiting per stage.
    pub queues: Vec<(String, usize)>,
    /// Plugin counters by plugin (every version that ran).
    pub plugins: Vec<crate::data::pipeline::PluginSeries>,
    /// Taps open now.
    pub taps: usize,
    /// The last replay of dead letters, if any.
    pub resend: Option<crate::data::replay::ReplayStatus>,
}

/// A pipeline a source wants running.
#[derive(Debug, Clone)]
pub struct Desired {
    /// The checked config.
    pub config: PipelineConfig,
}

/// What a running pipeline was built from, in two parts: a change in the
/// processors alone is swapped in; any other change rebuilds the pipeline.
/// Key paths are left out, so moving a pipeline within its file is no
/// change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Inputs, flushers, batching, queues and workers.
    pub rest: String,
    /// The processor chain.
    pub processors: String,
}

impl Fingerprint {
    /// The fingerprint of `c`.
    pub fn of(c: &PipelineConfig) -> Fingerprint {
        let entry = |e: &crate::config::PluginEntry| {
            format!(
                "{} {:?} {:?} {:?} {:?}",
                e.reference, e.kind, e.spec, e.on_error, e.spill
            )
        };
        Fingerprint {
            rest: format!(
                "{:?}|{:?}|{:?}|{}|{}",
                c.inputs,
                c.flushers.iter().map(entry).collect::<Vec<_>>(),
                c.batch,
                c.queue_batches,
                c.workers
            ),
            processors: format!("{:?}", c.processors.iter().map(entry).collect::<Vec<_>>()),
        }
    }
}

/// A change made ready off the data path, before anything is touched.
enum Ready {
    Unchanged,
    HeldBack,
    Swap(crate::data::pipeline::Processors),
    Build(Box<PreparedPipeline>),
}

/// What every pipeline is started with.
pub struct Context {
    /// The plugin engines.
    pub host: Arc<PluginHost>,
    /// Checkpoints (shared by all pipelines).
    pub store: Arc<CheckpointStore>,
    /// Gleaner's state directory.
    pub data_dir: PathBuf,
    /// How long a stopping pipeline may deliver before buffering.
    pub grace: Duration,
    /// Inputs stop by themselves at the end of what was there at start.
    pub exit_on_eof: bool,
}

struct Entry {
    owner: String,
    fingerprint: Fingerprint,
    pipeline: RunningPipeline,
    /// What runs now and, after swaps, what ran before, by generation
    /// (the last few, so a rollback can find what took over again).
    generations: Vec<(u64, PipelineConfig)>,
    /// Processors rolled back: not swapped in again until they change.
    rejected: Option<String>,
    /// The rollback already accounted for.
    settled_rollbacks: u64,
}

impl Entry {
    fn new(owner: &str, config: PipelineConfig, pipeline: RunningPipeline) -> Entry {
        Entry {
            owner: owner.to_owned(),
            fingerprint: Fingerprint::of(&config),
            pipeline,
            generations: vec![(0, config)],
            rejected: None,
            settled_rollbacks: 0,
        }
    }

    /// Takes note of rollbacks the processor thread did: what runs is
    /// the restored generation, and the rolled-back processors are not
    /// tried again while they are what is wanted.
    fn settle(&mut self) {
        let status = self.pipeline.swap_status();
        if status.rollbacks == self.settled_rollbacks {
            return;
        }
        self.settled_rollbacks = status.rollbacks;
        let Some(report) = status.last_rollback else {
            return;
        };
        let find = |g: u64| {
            self.generations
                .iter()
                .find(|(n, _)| *n == g)
                .map(|(_, c)| Fingerprint::of(c).processors)
        };
        self.rejected = find(report.generation);
        if let Some(restored) = find(report.restored) {
            self.fingerprint.processors = restored;
        }
    }

    /// The config of the chain processing now.
    fn active_config(&self) -> Option<&PipelineConfig> {
        let active = self.pipeline.swap_status().active;
        self.generations
            .iter()
            .find(|(g, _)| *g == active)
            .map(|(_, c)| c)
    }
}

#[derive(Default)]
struct State {
    running: BTreeMap<String, Entry>,
    stopping: bool,
    /// When [`Supervisor::stop_all`] was called.
    stopped_at: Option<std::time::Instant>,
    /// Pipelines [`Supervisor::wait`] took out to join: a stop still
    /// reaches them (a one-off run joins at once).
    joining: Vec<crate::data::pipeline::Stopper>,
    /// Applies in progress (they may hold a stopped pipeline being joined).
    busy: usize,
}

/// The running pipelines.
pub struct Supervisor {
    ctx: Context,
    state: Mutex<State>,
    changed: Condvar,
}

impl Supervisor {
    /// An empty supervisor.
    pub fn new(ctx: Context) -> Arc<Supervisor> {
        Arc::new(Supervisor {
            ctx,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a pipeline prepared by the caller (the config file's, at boot,
    /// all prepared before any starts).
    pub fn start(
        &self,
        owner: &str,
        config: PipelineConfig,
        prepared: PreparedPipeline,
    ) -> Result<(), ApplyError> {
        let name = prepared.name().to_owned();
        let mut state = self.lock();
        if state.stopping {
            return Err(ApplyError::Stopping);
        }
        if let Some(e) = state.running.get(&name) {
            return Err(ApplyError::NameTaken {
                name,
                owner: e.owner.clone(),
            });
        }
        let pipeline = prepared.start(self.ctx.exit_on_eof, &self.ctx.store)?;
        state
            .running
            .insert(name, Entry::new(owner, config, pipeline));
        Ok(())
    }

    /// Makes `owner`'s pipelines `desired`: starts new ones, swaps the
    /// processors of those where only they changed, replaces those where
    /// more changed, stops those no longer wanted, except names in `keep`
    /// (sources whose new version is invalid: the running one stays).
    /// Everything new is prepared (compiled, initialised) before anything
    /// running is touched; with `atomic`, one failure applies nothing.
    /// Returns what happened to each name. Blocks while replaced pipelines
    /// drain; other pipelines are not touched.
    pub fn apply(
        &self,
        owner: &str,
        desired: Vec<Desired>,
        keep: &[String],
        atomic: bool,
    ) -> Vec<(String, Result<Change, ApplyError>)> {
        let mine: BTreeMap<String, (Fingerprint, Option<String>)> = {
            let mut state = self.lock();
            if state.stopping {
                return desired
                    .into_iter()
                    .map(|d| (d.config.name, Err(ApplyError::Stopping)))
                    .collect();
            }
            state.busy += 1;
            state
                .running
                .iter_mut()
                .filter(|(_, e)| e.owner == owner)
                .map(|(n, e)| {
                    e.settle();
                    (n.clone(), (e.fingerprint.clone(), e.rejected.clone()))
                })
                .collect()
        };
        // 1. Prepare everything, touching nothing.
        let mut ready: Vec<(PipelineConfig, Result<Ready, ApplyError>)> = Vec::new();
        for d in desired {
            let r = self.prepare_one(mine.get(&d.config.name), &d.config);
            ready.push((d.config, r));
        }
        let failed = ready.iter().any(|(_, r)| r.is_err());
        let mut results = Vec::new();
        if atomic && failed {
            for (config, r) in ready {
                let r = r.and(Err(ApplyError::Aborted));
                results.push((config.name, r));
            }
            self.done();
            return results;
        }
        // 2. Apply.
        for gone in mine
            .keys()
            .filter(|n| !ready.iter().any(|(c, _)| &c.name == *n) && !keep.contains(n))
        {
            self.stop_one(owner, gone);
            tracing::info!(pipeline = %gone, owner, "Pipeline removed.");
            results.push((gone.clone(), Ok(Change::Removed)));
        }
        for (config, r) in ready {
            let name = config.name.clone();
            let result = r.and_then(|r| self.apply_one(owner, config, r));
            match &result {
                Ok(Change::Unchanged) => {}
                Ok(change) => tracing::info!(pipeline = %name, owner, ?change, "Pipeline applied."),
                Err(e) => {
                    tracing::error!(pipeline = %name, owner, error = %e, "Pipeline not applied.")
                }
            }
            results.push((name, result));
        }
        self.done();
        results
    }

    fn done(&self) {
        let mut state = self.lock();
        state.busy -= 1;
        self.changed.notify_all();
    }

    fn prepare_one(
        &self,
        running: Option<&(Fingerprint, Option<String>)>,
        config: &PipelineConfig,
    ) -> Result<Ready, ApplyError> {
        let fp = Fingerprint::of(config);
        match running {
            Some((old, _)) if *old == fp => return Ok(Ready::Unchanged),
            Some((old, Some(rejected))) if old.rest == fp.rest && *rejected == fp.processors => {
                return Ok(Ready::HeldBack);
            }
            Some((old, _)) if old.rest == fp.rest => {
                return Ok(Ready::Swap(assemble::prepare_processors(
                    config,
                    &self.ctx.host,
                )?));
            }
            Some(_) => {}
            None => {
                if let Some(e) = self.lock().running.get(&config.name) {
                    return Err(ApplyError::NameTaken {
                        name: config.name.clone(),
                        owner: e.owner.clone(),
                    });
                }
            }
        }
        Ok(Ready::Build(Box::new(assemble::prepare(
            config,
            &self.ctx.host,
            &self.ctx.data_dir,
        )?)))
    }

    fn apply_one(
        &self,
        owner: &str,
        config: PipelineConfig,
        ready: Ready,
    ) -> Result<Change, ApplyError> {
        let prepared = match ready {
            Ready::Unchanged => return Ok(Change::Unchanged),
            Ready::HeldBack => {
                tracing::warn!(pipeline = %config.name, "These processors were rolled back after a swap; the previous ones keep running until the config changes them again.");
                return Ok(Change::HeldBack);
            }
            Ready::Swap(processors) => {
                let (swapper, generation) = {
                    let mut state = self.lock();
                    let e = state
                        .running
                        .get_mut(&config.name)
                        .filter(|e| e.owner == owner)
                        .ok_or(ApplyError::Stopping)?;
                    let generation = e.generations.last().map_or(0, |(g, _)| g + 1);
                    e.generations.push((generation, config.clone()));
                    let keep = e.generations.len().saturating_sub(4);
                    e.generations.drain(..keep);
                    (e.pipeline.swapper(), generation)
                };
                // Not under the lock: the swap waits for the batch in hand.
                let held = swapper.swap(processors, generation, config.rollback)?;
                if let Some(e) = self.lock().running.get_mut(&config.name) {
                    e.fingerprint = Fingerprint::of(&config);
                    e.rejected = None;
                }
                tracing::info!(
                    pipeline = %config.name,
                    generation,
                    held_us = held.as_micros() as u64,
                    "Processors swapped at a batch boundary."
                );
                return Ok(Change::Swapped);
            }
            Ready::Build(p) => *p,
        };
        let replaced = self.stop_one(owner, &config.name);
        let mut state = self.lock();
        if state.stopping {
            return Err(ApplyError::Stopping);
        }
        let pipeline = prepared.start(self.ctx.exit_on_eof, &self.ctx.store)?;
        state
            .running
            .insert(config.name.clone(), Entry::new(owner, config, pipeline));
        Ok(if replaced {
            Change::Replaced
        } else {
            Change::Started
        })
    }

    /// Stops `name` (if `owner` runs it) and waits until it has drained.
    fn stop_one(&self, owner: &str, name: &str) -> bool {
        let entry = {
            let mut state = self.lock();
            match state.running.get(name) {
                Some(e) if e.owner == owner => state.running.remove(name),
                _ => None,
            }
        };
        match entry {
            Some(e) => {
                e.pipeline.stop(self.ctx.grace);
                e.pipeline.join();
                true
            }
            None => false,
        }
    }

    /// Stops every pipeline (returns at once; [`Supervisor::wait`] joins).
    pub fn stop_all(&self) {
        let mut state = self.lock();
        state.stopping = true;
        state.stopped_at.get_or_insert_with(std::time::Instant::now);
        for e in state.running.values() {
            e.pipeline.stop(self.ctx.grace);
        }
        for s in &state.joining {
            s.stop(self.ctx.grace);
        }
        self.changed.notify_all();
    }

    /// Whether [`Supervisor::stop_all`] was called.
    pub fn stopping(&self) -> bool {
        self.lock().stopping
    }

    /// When the drain deadline of [`Supervisor::stop_all`] passes (`None`
    /// while not stopping).
    pub fn stop_deadline(&self) -> Option<std::time::Instant> {
        self.lock().stopped_at.map(|t| t + self.ctx.grace)
    }

    /// Every running pipeline as reports see it.
    pub fn views(&self) -> Vec<PipelineView> {
        let mut state = self.lock();
        state
            .running
            .iter_mut()
            .map(|(name, e)| {
                e.settle();
                let p = &e.pipeline;
                PipelineView {
                    name: name.clone(),
                    owner: e.owner.clone(),
                    config: e.active_config().cloned(),
                    held_back: e.rejected.is_some(),
                    swap: p.swap_status(),
                    stats: p.stats().clone(),
                    inputs: p.input_stats().to_vec(),
                    discoveries: p.discovery_stats().to_vec(),
                    queues: p.queue_depths(),
                    plugins: p.plugin_stats(),
                    taps: p.taps().count(),
                    resend: p.resend_status(),
                }
            })
            .collect()
    }

    /// Runs `f` on the running pipeline `name` and the config of the chain
    /// processing now; `None` if no such pipeline runs.
    pub fn with_pipeline<R>(
        &self,
        name: &str,
        f: impl FnOnce(&RunningPipeline, Option<&PipelineConfig>) -> R,
    ) -> Option<R> {
        let state = self.lock();
        let e = state.running.get(name)?;
        Some(f(&e.pipeline, e.active_config()))
    }

    /// Names of the running pipelines and who runs them.
    pub fn pipelines(&self) -> Vec<(String, String)> {
        self.lock()
            .running
            .iter()
            .map(|(n, e)| (n.clone(), e.owner.clone()))
            .collect()
    }

    /// Waits until the agent is stopped (or, with `exit_on_eof`, until the
    /// pipelines end by themselves) and every pipeline has drained.
    pub fn wait(&self) {
        let mut state = self.lock();
        if !self.ctx.exit_on_eof {
            while !state.stopping {
                state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        }
        loop {
            while state.busy > 0 {
                state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            let all = std::mem::take(&mut state.running);
            if all.is_empty() {
                return;
            }
            let stoppers: Vec<_> = all.values().map(|e| e.pipeline.stopper()).collect();
            if state.stopping {
                for s in &stoppers {
                    s.stop(self.ctx.grace);
                }
            }
            state.joining.extend(stoppers);
            drop(state);
            for e in all.into_values() {
                e.pipeline.join();
            }
            state = self.lock();
        }
    }
}
