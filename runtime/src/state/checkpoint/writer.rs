//! The checkpoint writer: a thread that writes the checkpoint file on an
//! interval while the agent runs, says once when writing starts failing
//! (and every 60th failure after that) and when it works again, and writes
//! a last time when stopped, after every batch is delivered or buffered.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{CheckpointError, CheckpointStore};

/// A running interval writer.
#[derive(Debug)]
pub struct Writer {
    store: Arc<CheckpointStore>,
    running: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Writer {
    /// Writes `store` every `every` on a thread of its own.
    pub fn spawn(store: Arc<CheckpointStore>, every: Duration) -> std::io::Result<Writer> {
        let running = Arc::new(AtomicBool::new(true));
        let thread = {
            let (store, running) = (store.clone(), running.clone());
            std::thread::Builder::new()
                .name("gleaner-checkpoint".into())
                .spawn(move || {
                    while running.load(Ordering::Relaxed) {
                        let next = Instant::now() + every;
                        while running.load(Ordering::Relaxed) && Instant::now() < next {
                            std::thread::sleep(Duration::from_millis(20).min(every));
                        }
                        write_and_tell(&store);
                    }
                })?
        };
        Ok(Writer {
            store,
            running,
            thread,
        })
    }

    /// Stops the interval and writes the file once more (call when every
    /// batch is delivered, buffered or failed).
    pub fn finish(self) -> Result<(), CheckpointError> {
        self.running.store(false, Ordering::Relaxed);
        let _ = self.thread.join();
        self.store.write()
    }
}

/// One interval write; logs the change between writable and not.
fn write_and_tell(store: &CheckpointStore) {
    let was_writable = store.writable();
    match store.write() {
        Err(e) if was_writable || store.write_errors.get().is_multiple_of(60) => {
            tracing::error!(error = %e, failures = store.write_errors.get(), "Cannot write checkpoints; not ready until a write succeeds (the previous checkpoint file stays in place).");
        }
        Ok(()) if !was_writable => tracing::info!("Checkpoints are written again."),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_writes_on_its_interval_and_once_more_when_finished() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), Duration::from_secs(3600)).unwrap();
        let path = dir.path().join(super::super::FILE_NAME);
        let w = Writer::spawn(store.clone(), Duration::from_millis(10)).unwrap();
        let t0 = Instant::now();
        while !path.exists() && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(path.exists(), "written on the interval");
        std::fs::remove_file(&path).unwrap();
        w.finish().unwrap();
        assert!(path.exists(), "written when finished");
        assert!(store.writable());
    }
}
