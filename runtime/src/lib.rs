//! # Gleaner: a log collector with WebAssembly processors and flushers
//!
//! The tree is the floor plan; imports only point down it (no module
//! imports one on a floor above its own):
//!
//! - [`tooling`]: `gleaner bench` ([`tooling::bench`]) and `gleaner plugin
//!   new/build/test` ([`tooling::devkit`]). Uses everything below.
//! - [`control`]: the control plane. [`control::supervisor`] keeps the
//!   running pipelines by name and owner; [`control::reload`] reloads the
//!   config file; [`control::crd`] runs pipelines from Kubernetes
//!   resources; [`control::api`] serves probes, metrics and the JSON API;
//!   [`control::progress`] samples read progress.
//! - [`config`]: the YAML file resolved into a checked [`config::Config`]
//!   (every error names file and key).
//! - [`data`]: the data path, in the order a line travels:
//!   [`data::discovery`] (what to read: Docker, Kubernetes) →
//!   [`data::tail`] (how: files, rotation, formats, multiline) →
//!   [`data::batch`] (batches per source) → [`data::pipeline`] (the
//!   processor chain, swaps) → [`data::flush`] (one flusher: retries,
//!   give-up, spill).
//! - [`state`]: what survives a restart: [`state::checkpoint`] (delivered
//!   offsets, the `data_dir` lock), [`state::buffer`] (undelivered batches
//!   on disk), [`state::dead_letter`] (given-up events).
//! - [`plugin`]: compiles, sandboxes and calls the Wasm components (the
//!   only module that names wasmtime types); [`plugin::bundle`] is the
//!   plugins directory.
//! - [`model`]: the plain data every stage shares: [`model::event`] (the
//!   batch), [`model::ack`] (ordered acknowledgements),
//!   [`model::shutdown`] (a pipeline's stop signal and drain deadline).
//! - [`telemetry`]: counters, histograms and the Prometheus text;
//!   [`background`]: threads with an async runtime, backoff (for the API
//!   clients).
//!
//! The binary (`main.rs`) is the edge: CLI, logging setup, signals.

pub mod background;
pub mod config;
pub mod control;
pub mod data;
pub mod model;
pub mod plugin;
pub mod state;
pub mod telemetry;
pub mod tooling;

#[cfg(test)]
mod floor_plan_test;
