//! Instances of a prepared plugin: instantiating it in a sandboxed store,
//! calling `init`, `process` and `flush` whichever version of the contract
//! it was built against, and turning traps into [`CallError`]s (the
//! instance is dropped and rebuilt on the next call). Knows nothing of
//! pipelines or of what a caller does with a failed batch.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::{Engine, Store, UpdateDeadline};

use super::bindings::{flusher, processor, v0_2, wit};
use super::store::{Egress, Ident, PluginStats, StoreState};
use super::{CallError, PluginError, PluginSpec, SLICE_TICKS, convert};
use crate::model::event::Batch;
use crate::model::shutdown::Shutdown;

/// A linked component, by the version of the contract it exports.
pub(super) enum Pre {
    Processor(processor::ProcessorPre<StoreState>),
    Flusher(flusher::FlusherPre<StoreState>),
    /// Built against 0.2.0 or 0.1.0.
    ProcessorV0_2(v0_2::processor::ProcessorPre<StoreState>),
    /// Built against 0.2.0 or 0.1.0.
    FlusherV0_2(v0_2::flusher::FlusherPre<StoreState>),
}

enum Exports {
    Processor(processor::Processor),
    Flusher(flusher::Flusher),
    ProcessorV0_2(v0_2::processor::Processor),
    FlusherV0_2(v0_2::flusher::Flusher),
}

/// A flusher's answer item by item (see `flush-report` in the WIT):
/// events not listed were delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Events to send again, ascending.
    pub retry: Vec<u32>,
    /// Events refused for good, ascending, each with the reason.
    pub rejected: Vec<(u32, String)>,
}

impl FlushReport {
    /// True when every event was delivered.
    pub fn is_empty(&self) -> bool {
        self.retry.is_empty() && self.rejected.is_empty()
    }

    /// Checks a plugin's report against a batch of `events`: indices in
    /// range, ascending, none both retried and rejected, a reason for each.
    fn check(raw: wit::FlushReport, events: usize) -> Result<FlushReport, String> {
        let bad = |m: String| Err(format!("malformed flush report: {m}"));
        if raw.reasons.len() != raw.rejected.len() {
            return bad(format!(
                "{} rejected events but {} reasons",
                raw.rejected.len(),
                raw.reasons.len()
            ));
        }
        for (name, list) in [("retry", &raw.retry), ("rejected", &raw.rejected)] {
            if list.windows(2).any(|w| w[0] >= w[1]) {
                return bad(format!("`{name}` is not ascending"));
            }
            if let Some(i) = list.iter().find(|&&i| i as usize >= events) {
                return bad(format!("`{name}` names event {i} of a batch of {events}"));
            }
        }
        if let Some(i) = raw
            .retry
            .iter()
            .find(|i| raw.rejected.binary_search(i).is_ok())
        {
            return bad(format!("event {i} is both retried and rejected"));
        }
        Ok(FlushReport {
            retry: raw.retry,
            rejected: raw.rejected.into_iter().zip(raw.reasons).collect(),
        })
    }
}

/// A compiled, linked plugin: makes instances.
pub struct Prepared {
    engine: Engine,
    pre: Pre,
    spec: PluginSpec,
    ident: Ident,
    stats: Arc<PluginStats>,
    egress: Option<Egress>,
}

impl Prepared {
    pub(super) fn new(
        engine: Engine,
        pre: Pre,
        spec: PluginSpec,
        ident: Ident,
        egress: Option<Egress>,
    ) -> Self {
        Prepared {
            engine,
            pre,
            spec,
            ident,
            stats: Arc::new(PluginStats::default()),
            egress,
        }
    }

    /// Counters of this plugin across its instances.
    pub fn stats(&self) -> &Arc<PluginStats> {
        &self.stats
    }

    /// The names used in logs.
    pub fn ident(&self) -> &Ident {
        &self.ident
    }

    /// True if the plugin was granted Gleaner's stdout.
    pub fn writes_stdout(&self) -> bool {
        self.spec.grants.stdout
    }

    /// A new, initialised instance.
    pub fn instance(self: &Arc<Self>) -> Result<Instance, PluginError> {
        let live = self.start(None).inspect_err(|e| {
            if matches!(e, PluginError::Trap(_)) {
                self.stats.traps.inc();
            }
        })?;
        Ok(Instance {
            prepared: self.clone(),
            live: Some(live),
            abort: None,
        })
    }

    fn start(&self, abort: Option<&Arc<Shutdown>>) -> Result<Live, PluginError> {
        let state = StoreState::new(
            self.ident.clone(),
            self.stats.clone(),
            &self.spec,
            self.egress.clone(),
        )?;
        let mut store = Store::new(&self.engine, state);
        store.data_mut().abort = abort.cloned();
        store.limiter(|s| &mut s.limits);
        if self.spec.limits.epoch_deadline {
            let timeout = self.spec.limits.call_timeout;
            store.epoch_deadline_callback(move |ctx| {
                let s = ctx.data();
                let aborted = s.abort.as_ref().is_some_and(|a| a.expired());
                Ok(if aborted || s.call_started.elapsed() >= timeout {
                    UpdateDeadline::Interrupt
                } else {
                    UpdateDeadline::Continue(SLICE_TICKS)
                })
            });
            store.data_mut().call_started = Instant::now();
            store.set_epoch_deadline(SLICE_TICKS);
        }
        let trap = |e: wasmtime::Error| PluginError::Trap(format!("{e:#}"));
        let exports = match &self.pre {
            Pre::Processor(pre) => Exports::Processor(pre.instantiate(&mut store).map_err(trap)?),
            Pre::Flusher(pre) => Exports::Flusher(pre.instantiate(&mut store).map_err(trap)?),
            Pre::ProcessorV0_2(pre) => {
                Exports::ProcessorV0_2(pre.instantiate(&mut store).map_err(trap)?)
            }
            Pre::FlusherV0_2(pre) => {
                Exports::FlusherV0_2(pre.instantiate(&mut store).map_err(trap)?)
            }
        };
        let config = &self.spec.config_json;
        let init = match &exports {
            Exports::Processor(p) => p.call_init(&mut store, config),
            Exports::Flusher(f) => f.call_init(&mut store, config),
            Exports::ProcessorV0_2(p) => p.call_init(&mut store, config),
            Exports::FlusherV0_2(f) => f.call_init(&mut store, config),
        };
        self.stats.instances.inc();
        match init {
            Ok(Ok(())) => Ok(Live { store, exports }),
            Ok(Err(msg)) => Err(PluginError::Init(msg)),
            Err(e) => Err(trap(e)),
        }
    }
}

struct Live {
    store: Store<StoreState>,
    exports: Exports,
}

/// One long-lived instance, used by one thread at a time.
pub struct Instance {
    prepared: Arc<Prepared>,
    live: Option<Live>,
    /// The pipeline's stop signal: once its deadline passes, a running
    /// call is interrupted.
    abort: Option<Arc<Shutdown>>,
}

impl Instance {
    /// The plugin this is an instance of.
    pub fn prepared(&self) -> &Arc<Prepared> {
        &self.prepared
    }

    /// Interrupts calls (within about 100 ms) once `shutdown`'s deadline
    /// has passed, whatever the plugin does.
    pub fn abort_on(&mut self, shutdown: &Arc<Shutdown>) {
        self.abort = Some(shutdown.clone());
        if let Some(live) = self.live.as_mut() {
            live.store.data_mut().abort = Some(shutdown.clone());
        }
    }

    fn live(&mut self) -> Result<&mut Live, CallError> {
        if self.live.is_none() {
            let live = self
                .prepared
                .start(self.abort.as_ref())
                .map_err(|e| match e {
                    PluginError::Trap(m) => {
                        // A trap in `init` while rebuilding counts like any trap.
                        self.prepared.stats.traps.inc();
                        CallError::Trap(m)
                    }
                    other => CallError::Failed(other.to_string()),
                })?;
            self.live = Some(live);
        }
        self.live
            .as_mut()
            .ok_or_else(|| CallError::Failed("instance unavailable".into()))
    }

    fn before_call(&mut self) -> Result<(), CallError> {
        let epoch = self.prepared.spec.limits.epoch_deadline;
        let live = self.live()?;
        if epoch {
            live.store.data_mut().call_started = Instant::now();
            live.store.set_epoch_deadline(SLICE_TICKS);
        }
        Ok(())
    }

    fn trapped(&mut self, e: wasmtime::Error) -> CallError {
        self.live = None;
        self.prepared.stats.traps.inc();
        let msg = match e.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) if self.abort.as_ref().is_some_and(|a| a.expired()) => {
                "call interrupted: the pipeline is stopping and its shutdown_timeout has passed"
                    .to_owned()
            }
            Some(wasmtime::Trap::Interrupt) => {
                format!(
                    "call exceeded its deadline of {:?}",
                    self.prepared.spec.limits.call_timeout
                )
            }
            _ => format!("{e:#}"),
        };
        tracing::warn!(pipeline = &*self.prepared.ident.pipeline, plugin = &*self.prepared.ident.plugin, error = %msg, "Plugin trapped; its instance will be rebuilt.");
        CallError::Trap(msg)
    }

    /// Runs a processor over `batch`. The input batch is left as it was (its
    /// buffers are lent to the call and given back), so it can be retried.
    pub fn process(&mut self, batch: &mut Batch) -> Result<Batch, CallError> {
        self.before_call()?;
        let started = Instant::now();
        self.account_in(batch);
        let live = self.live()?;
        let result = match &live.exports {
            Exports::Processor(p) => {
                let input = convert::take_into_wit(batch);
                let result = p.call_process(&mut live.store, &input);
                *batch = convert::from_wit(input);
                result.map(|r| r.map(convert::from_wit))
            }
            Exports::ProcessorV0_2(p) => {
                let input = convert::lend_to_v0_2(batch);
                let result = p.call_process(&mut live.store, &input);
                convert::give_back_v0_2(batch, input);
                result.map(|r| r.map(convert::from_v0_2))
            }
            _ => return Err(CallError::Failed("not a processor".into())),
        };
        self.account(started);
        match result {
            Ok(Ok(out)) => {
                out.check_layout().map_err(|e| {
                    self.prepared.stats.errors.inc();
                    CallError::Failed(e.to_string())
                })?;
                self.account_out(&out);
                Ok(out)
            }
            Ok(Err(msg)) => {
                self.prepared.stats.errors.inc();
                Err(CallError::Failed(msg))
            }
            Err(e) => Err(self.trapped(e)),
        }
    }

    /// Runs a flusher over `batch` (left as it was, for retries). `Ok` with
    /// the destination's answer per item (empty: all delivered).
    pub fn flush(&mut self, batch: &mut Batch) -> Result<FlushReport, CallError> {
        self.before_call()?;
        let started = Instant::now();
        self.account_in(batch);
        let live = self.live()?;
        let result = match &live.exports {
            Exports::Flusher(f) => {
                let input = convert::take_into_wit(batch);
                let result = f.call_flush(&mut live.store, &input);
                *batch = convert::from_wit(input);
                result
            }
            Exports::FlusherV0_2(f) => {
                let input = convert::lend_to_v0_2(batch);
                let result = f.call_flush(&mut live.store, &input);
                convert::give_back_v0_2(batch, input);
                result.map(|r| {
                    r.map(|()| wit::FlushReport {
                        retry: Vec::new(),
                        rejected: Vec::new(),
                        reasons: Vec::new(),
                    })
                    .map_err(|e| match e {
                        v0_2::types::FlushError::Retryable(m) => wit::FlushError::Retryable(m),
                        v0_2::types::FlushError::Rejected(m) => wit::FlushError::Rejected(m),
                    })
                })
            }
            _ => return Err(CallError::Failed("not a flusher".into())),
        };
        self.account(started);
        match result {
            Ok(Ok(report)) => {
                let report = FlushReport::check(report, batch.len()).map_err(|e| {
                    self.prepared.stats.errors.inc();
                    CallError::Failed(e)
                })?;
                self.account_out(batch);
                Ok(report)
            }
            Ok(Err(e)) => {
                self.prepared.stats.errors.inc();
                Err(match e {
                    wit::FlushError::Retryable(m) => CallError::Retryable(m),
                    wit::FlushError::Rejected(m) => CallError::Rejected(m),
                })
            }
            Err(e) => Err(self.trapped(e)),
        }
    }

    fn account(&self, started: Instant) {
        let took = started.elapsed();
        let stats = &self.prepared.stats;
        stats.calls.inc();
        stats.call_micros.add(took.as_micros() as u64);
        stats.latency.observe(took);
    }

    fn account_in(&self, batch: &Batch) {
        let stats = &self.prepared.stats;
        stats.events_in.add(batch.len() as u64);
        stats
            .bytes_in
            .add((batch.bodies.len() + batch.values.len()) as u64);
    }

    fn account_out(&self, batch: &Batch) {
        let stats = &self.prepared.stats;
        stats.events_out.add(batch.len() as u64);
        stats
            .bytes_out
            .add((batch.bodies.len() + batch.values.len()) as u64);
    }
}
