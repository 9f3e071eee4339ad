//! What survives a restart, each kind owned by one module that also writes
//! it: delivered offsets and the `data_dir` lock (`checkpoint`), batches
//! undelivered at shutdown (`buffer`), and events given up on
//! (`dead_letter`); and, held in the cluster rather than on disk, the
//! Lease that elects one agent among many and keeps that leader's resume
//! point (`lease`). Knows nothing of plugins or Docker, and of Kubernetes
//! only the Lease object.

pub mod buffer;
pub mod checkpoint;
pub mod dead_letter;
pub mod lease;
