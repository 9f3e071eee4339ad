//! The data path, in the order a line travels: discovery (what to read)
//! → tail (reading files) → batch → pipeline (processors) → flush (one
//! flusher each). Stages hand data on through bounded channels and never
//! reach up into the control plane.

pub mod batch;
pub mod discovery;
pub mod flush;
pub mod kafka;
pub mod kube_events;
pub mod pipeline;
pub mod replay;
pub mod tail;
pub mod tap;
