//! Plain data that crosses stages, below every one of them: the batch
//! (`event`), ordered acknowledgements (`ack`), a pipeline's stop signal
//! (`shutdown`) and what to read (`target`: the seam between discovery and
//! the tailer, also remembered by the checkpoints). No I/O, no threads.

pub mod ack;
pub mod event;
pub mod shutdown;
pub mod target;
