//! Assembles a pipeline from its checked config: compiles, links and
//! initialises every plugin entry, opens each flusher's disk buffer and
//! the dead-letter file, and hands the data path a
//! [`PreparedPipeline`] that only needs starting. Nothing runs here, so a
//! bad plugin or plugin config is reported before anything starts.

use std::path::Path;
use std::sync::Arc;

use crate::config::{PipelineConfig, PluginEntry};
use crate::data::flush::{FlushWorker, Shutdown};
use crate::data::pipeline::{PipelineSpec, PreparedPipeline, Processors};
use crate::plugin::{Ident, Instance, PluginError, PluginHost, Prepared};
use crate::state::buffer::DiskBuffer;
use crate::state::dead_letter::DeadLetter;
use crate::telemetry::stats::PipelineStats;

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
    let processors = prepare_processors(config, host)?;
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
            index: i,
            on_error: entry.on_error.clone(),
            dead_letter: dead_letter.clone(),
            buffer: Arc::new(buffer),
            shutdown: shutdown.clone(),
            spill: entry.spill,
            stats: stats.clone(),
        });
    }
    let spec = PipelineSpec {
        name: config.name.clone(),
        inputs: config.inputs.clone(),
        batch: config.batch,
        queue_batches: config.queue_batches,
    };
    Ok(PreparedPipeline::new(
        spec,
        processors,
        flushers,
        dead_letter,
        (shutdown, stats),
    ))
}

/// Compiles and links one plugin entry of `config`.
fn prepared(
    config: &PipelineConfig,
    host: &PluginHost,
    entry: &PluginEntry,
) -> Result<Arc<Prepared>, PrepareError> {
    let ident = Ident {
        pipeline: Arc::from(config.name.as_str()),
        plugin: Arc::from(entry.reference.as_str()),
    };
    host.prepare(ident, entry.kind, &entry.spec)
        .map_err(|source| plugin_error(entry, source))
}

fn plugin_error(entry: &PluginEntry, source: PluginError) -> PrepareError {
    PrepareError::Plugin {
        key: entry.key.clone(),
        reference: entry.reference.clone(),
        source,
    }
}

/// Compiles, links and initialises one plugin entry of `config`.
fn instance(
    config: &PipelineConfig,
    host: &PluginHost,
    entry: &PluginEntry,
) -> Result<Instance, PrepareError> {
    prepared(config, host, entry)?
        .instance()
        .map_err(|source| plugin_error(entry, source))
}

/// Compiles and links the processors of `config` once, and initialises an
/// instance of each for every worker (the workers' instances of one
/// processor share its compiled code and counters).
pub fn prepare_processors(
    config: &PipelineConfig,
    host: &PluginHost,
) -> Result<Processors, PrepareError> {
    let mut compiled = Vec::new();
    for entry in &config.processors {
        compiled.push((prepared(config, host, entry)?, entry));
    }
    let mut workers = Vec::new();
    for _ in 0..config.workers.max(1) {
        let mut stages = Vec::new();
        for (p, entry) in &compiled {
            let instance = p.instance().map_err(|source| plugin_error(entry, source))?;
            stages.push((instance, entry.on_error.clone()));
        }
        workers.push(stages);
    }
    Ok(Processors::new(workers))
}
