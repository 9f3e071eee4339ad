//! Tools around the agent: the end-to-end benchmark (`bench`) and plugin
//! development (`devkit`: `gleaner plugin new`, `build`, `test`).

pub mod bench;
pub mod devkit;
pub mod plugin_cli;
