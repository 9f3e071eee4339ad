//! Tools around the agent: the end-to-end benchmark (`bench`), plugin
//! development (`devkit`: `gleaner plugin new`, `build`, `test`) and a
//! running agent's live view (`top`).

pub mod bench;
pub mod devkit;
pub mod plugin_cli;
pub mod top;
