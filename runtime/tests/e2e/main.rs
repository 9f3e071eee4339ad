//! End-to-end tests: the real `gleaner` binary, real files, real plugin
//! components built from source, real sockets.

mod common;
mod config_errors;
mod faults;
mod flushers;
mod http_sink;
mod processors;
mod quickstart;
mod tailing;
