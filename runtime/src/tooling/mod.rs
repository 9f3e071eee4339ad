//! Tools around the agent: the end-to-end benchmark (`bench`), plugin
//! development (`devkit`: `gleaner plugin new`, `build`, `test`), and
//! tools that talk to a running agent through its API (`api_client`):
//! its live view (`top`), live events (`tap`) and sending dead letters
//! back (`dead_letter`).

pub mod api_client;
pub mod bench;
pub mod dead_letter;
pub mod devkit;
pub mod plugin_cli;
pub mod tap;
pub mod top;
