//! The control plane: which pipelines run (`supervisor`), how one is
//! built from its config (`assemble`), config reloads
//! (`reload`), pipelines from Kubernetes resources (`crd`), the local HTTP
//! API (`api`) and read progress (`progress`). Starts, swaps and stops
//! pipelines; never touches a line itself.

pub mod agent;
pub mod api;
pub mod assemble;
pub mod crd;
pub mod progress;
pub mod reload;
pub mod supervisor;
