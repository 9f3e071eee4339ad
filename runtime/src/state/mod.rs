//! What survives a restart, each kind owned by one module that also writes
//! it: delivered offsets and the `data_dir` lock (`checkpoint`), batches
//! undelivered at shutdown (`buffer`), and events given up on
//! (`dead_letter`). Knows nothing of plugins, Docker or Kubernetes.

pub mod buffer;
pub mod checkpoint;
pub mod dead_letter;
