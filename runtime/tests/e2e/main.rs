//! End-to-end tests: the real `gleaner` binary, real files, real plugin
//! components built from source, real sockets.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod bundles;
mod common;
mod config_errors;
mod delivery;
mod deploy;
mod destinations;
mod docker;
mod faults;
mod flushers;
mod hardening_agent;
mod hardening_files;
mod http_sink;
mod k8s_api;
mod k8s_events;
mod k8s_kit;
mod k8s_metadata;
mod k8s_real;
mod k8s_resources;
mod kafka;
mod kubernetes;
mod live;
mod operating;
mod processors;
mod quickstart;
mod reload;
mod sdks;
mod sockets;
mod tailing;
mod throughput;
mod tls;
mod typed;
