//! # gleaner-sdk: write Gleaner plugins in Rust
//!
//! A plugin is a WebAssembly component that implements one of two worlds of
//! `gleaner:plugin` (see `wit/plugin.wit`): a **processor** transforms batches
//! of events, a **flusher** delivers them. With this crate you implement a
//! trait and export it with one macro; the flat wire encoding stays hidden
//! behind [`Batch`] and [`BatchBuilder`].
//!
//! ```no_run
//! use gleaner_sdk::{Batch, Processor};
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config { field: String, value: String }
//!
//! struct AddField(Config);
//!
//! impl Processor for AddField {
//!     fn init(config: &str) -> Result<Self, String> {
//!         gleaner_sdk::parse_config(config).map(AddField)
//!     }
//!     fn process(&mut self, input: Batch) -> Result<Batch, String> {
//!         let mut out = input.builder();
//!         let key = out.key(&self.0.field);
//!         for event in input.events() {
//!             out.push_copy(&event).field_by_key(key, &self.0.value);
//!         }
//!         Ok(out.finish())
//!     }
//! }
//! gleaner_sdk::export_processor!(AddField);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2` (a `cdylib`
//! crate); test the logic natively with [`testing`].
//!
//! Map: [`batch`] (reading and building batches), [`value`] (typed field
//! values and severities), [`host`] (log, counters, compression), [`kernels`] (regexes and JSON members run natively by the
//! host over a whole batch), [`json`] (the JSON lines encoding the
//! first-party flushers share), [`tls`] (TLS over TCP made by the host,
//! for flushers), [`testing`] (native helpers).

extern crate self as gleaner_sdk;

pub mod batch;
#[doc(hidden)]
pub mod bindings;
pub mod host;
pub mod http;
pub mod json;
pub mod kernels;
pub mod proto;
pub mod testing;
pub mod time;
pub mod tls;
pub mod value;

pub use batch::{Batch, BatchBuilder, Event, EventBuilder, Key};
pub use value::{Value, severity};

/// A processor plugin: built once per instance from its config, then called
/// with one batch at a time.
pub trait Processor: Sized + 'static {
    /// Builds the processor from the pipeline's `config:` block as JSON.
    /// Return a message naming the bad key to refuse it (see [`parse_config`]).
    fn init(config: &str) -> Result<Self, String>;

    /// Transforms one batch. Return `Err` for a batch that cannot be processed.
    fn process(&mut self, input: Batch) -> Result<Batch, String>;
}

/// Why a flusher could not deliver a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlushError {
    /// Transient: the host retries the batch with backoff.
    Retryable(String),
    /// Permanent: the host dead-letters the batch and does not retry.
    Rejected(String),
}

/// A flusher plugin: built once per instance from its config, then called
/// with one batch at a time.
pub trait Flusher: Sized + 'static {
    /// Builds the flusher from the pipeline's `config:` block as JSON.
    fn init(config: &str) -> Result<Self, String>;

    /// Delivers one batch, all or nothing.
    fn flush(&mut self, input: Batch) -> Result<(), FlushError>;
}

/// A flusher for a destination that answers item by item (Elasticsearch
/// `_bulk`, Loki per stream): `flush` says which events to retry and which
/// were refused for good; the host retries and dead-letters just those.
/// Export it with [`export_item_flusher!`].
pub trait ItemFlusher: Sized + 'static {
    /// Builds the flusher from the pipeline's `config:` block as JSON.
    fn init(config: &str) -> Result<Self, String>;

    /// Delivers one batch; an empty [`Report`] means every event.
    fn flush(&mut self, input: Batch) -> Result<Report, FlushError>;
}

/// What an [`ItemFlusher`] did with each event: events neither retried nor
/// rejected were delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    retry: Vec<u32>,
    rejected: Vec<(u32, String)>,
}

impl Report {
    /// Event `index` is to be sent again (throttled, failed per item).
    pub fn retry(&mut self, index: usize) -> &mut Self {
        self.retry.push(index as u32);
        self
    }

    /// Event `index` was refused for good, for `reason`.
    pub fn reject(&mut self, index: usize, reason: impl Into<String>) -> &mut Self {
        self.rejected.push((index as u32, reason.into()));
        self
    }

    /// True when every event was delivered.
    pub fn is_empty(&self) -> bool {
        self.retry.is_empty() && self.rejected.is_empty()
    }

    /// Events to retry, ascending.
    pub fn retried(&self) -> Vec<u32> {
        let mut r = self.retry.clone();
        r.sort_unstable();
        r.dedup();
        r
    }

    /// Events refused, ascending, with their reasons.
    pub fn rejections(&self) -> Vec<(u32, String)> {
        let mut r = self.rejected.clone();
        r.sort_by_key(|(i, _)| *i);
        r.dedup_by_key(|(i, _)| *i);
        r
    }
}

/// Sends a batch's `requests` one by one (`send` may report events of its
/// request one by one) and folds the outcomes into one [`Report`]: a
/// request that failed as a whole has its `events` retried or rejected
/// with the error. When no request was answered and nothing was rejected,
/// the last error is returned for the whole batch instead (the host then
/// retries it as one). Adds the counters `items_retried` and
/// `items_rejected`.
pub fn deliver_each<R>(
    requests: &[R],
    events: impl Fn(&R) -> Vec<usize>,
    mut send: impl FnMut(&R, &mut Report) -> Result<(), FlushError>,
) -> Result<Report, FlushError> {
    let mut report = Report::default();
    let mut answered = 0;
    let mut last_error = None;
    for request in requests {
        match send(request, &mut report) {
            Ok(()) => answered += 1,
            Err(FlushError::Retryable(m)) => {
                for i in events(request) {
                    report.retry(i);
                }
                last_error = Some(FlushError::Retryable(m));
            }
            Err(FlushError::Rejected(m)) => {
                for i in events(request) {
                    report.reject(i, m.clone());
                }
            }
        }
    }
    if answered == 0
        && report.rejected.is_empty()
        && let Some(err) = last_error
    {
        return Err(err);
    }
    host::counter_add("items_retried", report.retried().len() as u64);
    host::counter_add("items_rejected", report.rejections().len() as u64);
    Ok(report)
}

/// Deserializes a plugin config from JSON; the error names the key path, e.g.
/// `pattern: invalid type: integer, expected a string`.
pub fn parse_config<T: serde::de::DeserializeOwned>(config: &str) -> Result<T, String> {
    let mut de = serde_json::Deserializer::from_str(config);
    match T::deserialize(&mut de) {
        Ok(v) => Ok(v),
        Err(e) => Err(e.to_string()),
    }
}

/// Resolves a path from a plugin's config the way Gleaner resolves paths in
/// its own config: relative to the config file's directory (the host passes
/// it as `GLEANER_CONFIG_DIR`), then [`normalize_path`]d. The result only
/// works if it lies inside a directory granted to the plugin.
pub fn resolve_path(path: &std::path::Path) -> std::path::PathBuf {
    match std::env::var_os("GLEANER_CONFIG_DIR") {
        Some(dir) if path.is_relative() => normalize_path(&std::path::Path::new(&dir).join(path)),
        _ => normalize_path(path),
    }
}

/// Removes `.` and resolves `..` lexically (no symlinks are followed: inside
/// the sandbox there are none to follow, and the host must resolve paths the
/// same way).
pub fn normalize_path(path: &std::path::Path) -> std::path::PathBuf {
    use std::path::{Component, PathBuf};
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;

    use crate::bindings::wit;

    pub fn batch_from_wit(raw: wit::Batch) -> crate::Batch {
        crate::Batch::from_wit(raw)
    }

    pub fn batch_into_wit(batch: crate::Batch) -> wit::Batch {
        batch.into_wit()
    }

    pub fn report_into_wit(r: crate::Report) -> wit::FlushReport {
        let (rejected, reasons) = r.rejections().into_iter().unzip();
        wit::FlushReport {
            retry: r.retried(),
            rejected,
            reasons,
        }
    }

    pub fn empty_report() -> wit::FlushReport {
        report_into_wit(crate::Report::default())
    }

    pub fn flush_error_into_wit(e: crate::FlushError) -> wit::FlushError {
        match e {
            crate::FlushError::Retryable(m) => wit::FlushError::Retryable(m),
            crate::FlushError::Rejected(m) => wit::FlushError::Rejected(m),
        }
    }

    pub const NOT_INITIALISED: &str = "plugin called before init succeeded";
}

/// Exports a [`Processor`] implementation as the component's `processor` world.
#[macro_export]
macro_rules! export_processor {
    ($ty:ty) => {
        const _: () = {
            ::std::thread_local! {
                static __GLEANER_STATE: ::std::cell::RefCell<Option<$ty>> = const { ::std::cell::RefCell::new(None) };
            }
            struct __GleanerExport;
            impl $crate::bindings::processor::Guest for __GleanerExport {
                fn init(config: String) -> Result<(), String> {
                    let plugin = <$ty as $crate::Processor>::init(&config)?;
                    __GLEANER_STATE.with(|s| *s.borrow_mut() = Some(plugin));
                    Ok(())
                }
                fn process(
                    input: $crate::bindings::wit::Batch,
                ) -> Result<$crate::bindings::wit::Batch, String> {
                    __GLEANER_STATE.with(|s| match s.borrow_mut().as_mut() {
                        Some(p) => $crate::Processor::process(p, $crate::__private::batch_from_wit(input))
                            .map($crate::__private::batch_into_wit),
                        None => Err($crate::__private::NOT_INITIALISED.to_string()),
                    })
                }
            }
            $crate::bindings::processor::__export_processor_world!(__GleanerExport);
        };
    };
}

/// Exports a [`Flusher`] implementation as the component's `flusher` world.
#[macro_export]
macro_rules! export_flusher {
    ($ty:ty) => {
        $crate::__export_flusher_world_with!($ty, Flusher, |()| {
            $crate::__private::empty_report()
        });
    };
}

/// Exports an [`ItemFlusher`] implementation as the component's `flusher` world.
#[macro_export]
macro_rules! export_item_flusher {
    ($ty:ty) => {
        $crate::__export_flusher_world_with!($ty, ItemFlusher, $crate::__private::report_into_wit);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_flusher_world_with {
    ($ty:ty, $trait:ident, $report:expr) => {
        const _: () = {
            ::std::thread_local! {
                static __GLEANER_STATE: ::std::cell::RefCell<Option<$ty>> = const { ::std::cell::RefCell::new(None) };
            }
            struct __GleanerExport;
            impl $crate::bindings::flusher::Guest for __GleanerExport {
                fn init(config: String) -> Result<(), String> {
                    let plugin = <$ty as $crate::$trait>::init(&config)?;
                    __GLEANER_STATE.with(|s| *s.borrow_mut() = Some(plugin));
                    Ok(())
                }
                fn flush(
                    input: $crate::bindings::wit::Batch,
                ) -> Result<$crate::bindings::wit::FlushReport, $crate::bindings::wit::FlushError> {
                    __GLEANER_STATE.with(|s| match s.borrow_mut().as_mut() {
                        Some(p) => $crate::$trait::flush(p, $crate::__private::batch_from_wit(input))
                            .map($report)
                            .map_err($crate::__private::flush_error_into_wit),
                        None => Err($crate::bindings::wit::FlushError::Rejected(
                            $crate::__private::NOT_INITIALISED.to_string(),
                        )),
                    })
                }
            }
            $crate::bindings::flusher::__export_flusher_world!(__GleanerExport);
        };
    };
}
