//! Plugins: loading, compiling (cached on disk), sandboxing and calling
//! WebAssembly components of the `processor` and `flusher` worlds.
//!
//! This is the only module that names wasmtime types. What crosses its
//! border: [`PluginSpec`] in (what the config says), [`Prepared`] (a compiled
//! and linked plugin, shared by a pipeline's workers), [`Instance`] (one
//! long-lived instance, owned by one worker thread) and [`CallError`] out.
//!
//! A trap (panic, out of memory, deadline) never escapes as a panic: the
//! instance is dropped, the error returned, and the next call builds a new
//! instance from the shared `InstancePre`. What to do with the batch is the
//! caller's policy (`pipeline/`, `flush/`).

mod bindings;
pub mod builtin;
pub mod bundle;
mod cache;
mod compat;
mod convert;
mod host;
mod instance;
pub mod kernels;
mod sockets;
mod stdio;
mod store;
mod tls;
mod tls_client;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

use self::bindings::{flusher, processor, v0_2};
pub use self::cache::{compile_in, compile_to, digest};
use self::instance::Pre;
pub use self::instance::{FlushReport, Instance, Prepared};
pub use self::stdio::stdout_closed;
use self::store::StoreState;
pub use self::store::{Ident, PluginStats};
pub use self::tls::{TlsError, TlsSpec};

/// How often the epoch advances; per-call deadlines are counted in ticks.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// A running call is looked at every this many ticks (100 ms): past its
/// `call_timeout`, or past its pipeline's shutdown deadline, it is
/// interrupted.
const SLICE_TICKS: u64 = 20;

/// Which world a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// `gleaner:plugin/processor`.
    Processor,
    /// `gleaner:plugin/flusher`.
    Flusher,
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PluginKind::Processor => "processor",
            PluginKind::Flusher => "flusher",
        })
    }
}

/// Where a plugin's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// Embedded first-party plugin.
    Builtin(String),
    /// A `.wasm` component file.
    File(PathBuf),
    /// A component from a plugin bundle (`bundle/`): loaded only if it
    /// still has the digest its manifest gave when the config was checked.
    Bundle {
        /// `name@version`.
        id: String,
        /// The component file.
        path: PathBuf,
        /// Its SHA-256, as checked against the manifest.
        sha256: String,
    },
}

/// Per-instance limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Linear memory cap in bytes.
    pub memory_bytes: usize,
    /// Deadline of one call.
    pub call_timeout: Duration,
    /// Enforce the deadline with epoch interruption.
    pub epoch_deadline: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 128 << 20,
            call_timeout: Duration::from_secs(10),
            epoch_deadline: true,
        }
    }
}

/// What a plugin may reach.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Host directories, preopened under the same path.
    pub dirs: Vec<PathBuf>,
    /// `host:port` destinations for outgoing HTTP requests.
    pub hosts: Vec<String>,
    /// May write to Gleaner's stdout.
    pub stdout: bool,
}

/// One configured plugin.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// Where the component is.
    pub source: PluginSource,
    /// The plugin's config as JSON, handed to `init`.
    pub config_json: String,
    /// The config file's directory: the plugin's working directory and
    /// `GLEANER_CONFIG_DIR`, so relative paths in its config mean the same
    /// as everywhere else in the config.
    pub config_dir: PathBuf,
    /// Limits.
    pub limits: Limits,
    /// Grants.
    pub grants: Grants,
    /// TLS of a flusher's `https://` requests.
    pub tls: TlsSpec,
}

/// Why a plugin could not be prepared or started.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// `builtin:NAME` names no builtin plugin.
    #[error("there is no builtin plugin `{0}` (builtins: {names})", names = builtin::names().collect::<Vec<_>>().join(", "))]
    UnknownBuiltin(String),
    /// The component file cannot be read.
    #[error("cannot read plugin {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a valid component, or it needs imports Gleaner does not offer.
    #[error("cannot load plugin: {0}")]
    Load(String),
    /// It is a component, but of the other world.
    #[error("plugin is not a {expected}: {detail}")]
    WrongKind {
        /// What the config needs.
        expected: PluginKind,
        /// What wasmtime said.
        detail: String,
    },
    /// A bundle's component changed after its manifest was checked
    /// (the message names the bundle, the file and both digests).
    #[error("{0}")]
    Digest(String),
    /// A grant cannot be honoured (e.g. a directory cannot be opened).
    #[error("{0}")]
    Grant(String),
    /// The plugin's `init` refused its config.
    #[error("plugin refused its config: {0}")]
    Init(String),
    /// The plugin trapped while starting.
    #[error("plugin trapped while starting: {0}")]
    Trap(String),
}

/// Why a call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The instance trapped (panic, out of memory, deadline) and was dropped.
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The processor returned an error, or a batch that breaks the layout rules.
    #[error("plugin failed: {0}")]
    Failed(String),
    /// The flusher asked for a retry.
    #[error("flusher asked to retry: {0}")]
    Retryable(String),
    /// The flusher rejected the batch for good.
    #[error("flusher rejected the batch: {0}")]
    Rejected(String),
}

/// The engine configuration of plugins with (or without) epoch deadlines;
/// also what the compiler child process uses, so its artifacts load here.
fn engine_config(epoch: bool) -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(epoch);
    config.concurrency_support(false);
    // `GLEANER_WASM_PROFILER=perfmap` names plugin functions for `perf`
    // (docs/benchmarks.md).
    if std::env::var_os("GLEANER_WASM_PROFILER").is_some_and(|v| v == "perfmap") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    config
}

struct Runtime {
    engine: Engine,
    epoch: bool,
    processor_linker: Linker<StoreState>,
    flusher_linker: Linker<StoreState>,
}

impl Runtime {
    fn new(epoch: bool) -> anyhow::Result<Self> {
        let engine = Engine::new(&engine_config(epoch))?;
        let mut processor_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut processor_linker)?;
        processor::Processor::add_to_linker::<_, HasSelf<_>>(&mut processor_linker, |s| s)?;
        bindings::v0_3::Processor::add_to_linker::<_, HasSelf<_>>(&mut processor_linker, |s| s)?;
        v0_2::processor::Processor::add_to_linker::<_, HasSelf<_>>(&mut processor_linker, |s| s)?;
        bindings::v0_1::Processor::add_to_linker::<_, HasSelf<_>>(&mut processor_linker, |s| s)?;
        let mut flusher_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut flusher_linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut flusher_linker)?;
        flusher::Flusher::add_to_linker::<_, HasSelf<_>>(&mut flusher_linker, |s| s)?;
        bindings::tls::TlsClient::add_to_linker::<_, HasSelf<_>>(&mut flusher_linker, |s| s)?;
        bindings::v0_3::Processor::add_to_linker::<_, HasSelf<_>>(&mut flusher_linker, |s| s)?;
        v0_2::processor::Processor::add_to_linker::<_, HasSelf<_>>(&mut flusher_linker, |s| s)?;
        bindings::v0_1::Processor::add_to_linker::<_, HasSelf<_>>(&mut flusher_linker, |s| s)?;
        if epoch {
            let weak = engine.weak();
            std::thread::Builder::new()
                .name("gleaner-epoch".into())
                .spawn(move || {
                    while let Some(engine) = weak.upgrade() {
                        engine.increment_epoch();
                        drop(engine);
                        std::thread::sleep(EPOCH_TICK);
                    }
                })?;
        }
        Ok(Runtime {
            engine,
            epoch,
            processor_linker,
            flusher_linker,
        })
    }
}

/// The engines, linkers and compile cache shared by all pipelines.
pub struct PluginHost {
    with_epoch: Runtime,
    without_epoch: Runtime,
    cache_dir: PathBuf,
}

impl PluginHost {
    /// Sets up engines and linkers; compiled components are cached in `cache_dir`.
    pub fn new(cache_dir: &Path) -> anyhow::Result<Self> {
        Ok(PluginHost {
            with_epoch: Runtime::new(true)?,
            without_epoch: Runtime::new(false)?,
            cache_dir: cache_dir.to_path_buf(),
        })
    }

    /// Reads the component bytes of `source`.
    pub fn component_bytes(
        source: &PluginSource,
    ) -> Result<std::borrow::Cow<'static, [u8]>, PluginError> {
        match source {
            PluginSource::Builtin(name) => builtin::get(name)
                .map(std::borrow::Cow::Borrowed)
                .ok_or_else(|| PluginError::UnknownBuiltin(name.clone())),
            PluginSource::File(path) => {
                std::fs::read(path)
                    .map(std::borrow::Cow::Owned)
                    .map_err(|source| PluginError::Read {
                        path: path.clone(),
                        source,
                    })
            }
            PluginSource::Bundle { id, path, sha256 } => {
                let bytes = std::fs::read(path).map_err(|source| PluginError::Read {
                    path: path.clone(),
                    source,
                })?;
                let actual = digest(&bytes);
                if actual != *sha256 {
                    return Err(PluginError::Digest(format!(
                        "bundle {id}: {} has SHA-256 {actual}, the manifest says {sha256}: refused",
                        path.display()
                    )));
                }
                Ok(std::borrow::Cow::Owned(bytes))
            }
        }
    }

    /// Compiles (or loads from cache) and links a plugin, checking that it
    /// implements `kind`. Does not instantiate it.
    pub fn prepare(
        &self,
        ident: Ident,
        kind: PluginKind,
        spec: &PluginSpec,
    ) -> Result<Arc<Prepared>, PluginError> {
        let rt = if spec.limits.epoch_deadline {
            &self.with_epoch
        } else {
            &self.without_epoch
        };
        let wasm = Self::component_bytes(&spec.source)?;
        let component = cache::load_or_compile(&rt.engine, rt.epoch, &self.cache_dir, &wasm)
            .map_err(|e| PluginError::Load(format!("{e:#}")))?;
        let linker = match kind {
            PluginKind::Processor => &rt.processor_linker,
            PluginKind::Flusher => &rt.flusher_linker,
        };
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| PluginError::Load(format!("{e:#}")))?;
        // The current world first (whose exports 0.3.0 plugins share),
        // then 0.2.0's (whose exports 0.1.0 plugins share); the error is
        // the current world's.
        let pre = match kind {
            PluginKind::Processor => processor::ProcessorPre::new(pre.clone())
                .map(Pre::Processor)
                .or_else(|e| {
                    v0_2::processor::ProcessorPre::new(pre)
                        .map(Pre::ProcessorV0_2)
                        .map_err(|_| e)
                }),
            PluginKind::Flusher => flusher::FlusherPre::new(pre.clone())
                .map(Pre::Flusher)
                .or_else(|e| {
                    v0_2::flusher::FlusherPre::new(pre)
                        .map(Pre::FlusherV0_2)
                        .map_err(|_| e)
                }),
        }
        .map_err(|e| PluginError::WrongKind {
            expected: kind,
            detail: format!("{e:#}"),
        })?;
        let client = (kind == PluginKind::Flusher && !spec.grants.hosts.is_empty())
            .then(|| store::Egress::new(&spec.tls))
            .transpose()
            .map_err(|e| PluginError::Grant(format!("tls.{e}")))?;
        if client.is_some() && !spec.tls.verify {
            tracing::warn!(
                pipeline = &*ident.pipeline,
                plugin = &*ident.plugin,
                "tls.verify is false: the certificates of https:// destinations are not checked."
            );
        }
        Ok(Arc::new(Prepared::new(
            rt.engine.clone(),
            pre,
            spec.clone(),
            ident,
            client,
        )))
    }
}
