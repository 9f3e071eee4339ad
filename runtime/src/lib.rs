//! # Gleaner: a log collector with WebAssembly processors and flushers
//!
//! Data flows through these modules, in this order:
//!
//! - [`config`] reads the YAML file and resolves it into a checked [`config::Config`];
//! - [`tail`] finds and reads files, splits lines, groups multiline events;
//! - [`batch`] groups events per source into [`event::Batch`]es;
//! - [`pipeline`] wires inputs, the processor chain and the flushers;
//! - [`plugin`] compiles, sandboxes and calls the Wasm components (the
//!   only module that names wasmtime types);
//! - [`flush`] drives one flusher with retries and the give-up policy, and
//!   the [`buffer`] on disk at shutdown;
//! - [`ack`] tracks which bytes are delivered, in read order;
//! - [`checkpoint`] persists the delivered offsets;
//! - [`telemetry`] keeps the counters.
//!
//! The [`bench`] module runs the end-to-end benchmark (`gleaner bench`).
//!
//! The binary (`main.rs`) is the edge: CLI, logging setup, signals.

pub mod ack;
pub mod api;
pub mod batch;
pub mod bench;
pub mod buffer;
pub mod bundle;
pub mod checkpoint;
pub mod config;
pub mod crd;
pub mod devkit;
pub mod discovery;
pub mod event;
pub mod flush;
pub mod pipeline;
pub mod plugin;
pub mod progress;
pub mod reload;
pub mod shutdown;
pub mod supervisor;
pub mod tail;
pub mod telemetry;
