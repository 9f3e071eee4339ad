//! Read progress and checkpoint lag: every few seconds, each live file's
//! read and delivered offsets (from its acknowledgement tracker) are set
//! against its size. Per input this gives the backlog still to read, the
//! read rate and an estimate of the time left, logged while a large
//! backlog drains (e.g. `start_at: beginning` over gigabytes) and served
//! by the API; and the checkpoint lag (bytes in files not yet delivered).
//!
//! Reads the checkpoint store's trackers and `stat`s files; never reads
//! file contents, and changes nothing.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::state::checkpoint::CheckpointStore;

/// A backlog larger than this is logged while it drains.
pub const LOG_BACKLOG_BYTES: u64 = 64 << 20;

/// One live file.
#[derive(Debug, Clone, Serialize)]
pub struct FileProgress {
    /// Where it was last seen.
    pub path: String,
    /// Its size now (0 if it is gone or another file has its path).
    pub size: u64,
    /// Bytes read and handed to the pipeline.
    pub read: u64,
    /// Bytes delivered (the checkpoint).
    pub committed: u64,
}

/// One input's files, summed, with a rate from the last two samples.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InputProgress {
    /// Files open.
    pub files: usize,
    /// Their sizes, summed.
    pub bytes_total: u64,
    /// Bytes read of `bytes_total`.
    pub bytes_read: u64,
    /// Bytes still to read (`bytes_total - bytes_read`).
    pub backlog_bytes: u64,
    /// Bytes read but not yet delivered, plus the backlog: how far the
    /// checkpoints are behind the files.
    pub checkpoint_lag_bytes: u64,
    /// Read rate over the last sample interval.
    pub bytes_per_second: f64,
    /// Time left at that rate, if there is a backlog and a rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<f64>,
    /// Per file (largest backlog first).
    pub per_file: Vec<FileProgress>,
}

/// The last sample of every input (by `pipeline/index`).
#[derive(Debug, Default)]
pub struct Progress {
    inputs: Mutex<HashMap<String, InputProgress>>,
}

impl Progress {
    /// The last sample of `input` (`pipeline/index`).
    pub fn input(&self, input: &str) -> Option<InputProgress> {
        self.inputs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(input)
            .cloned()
    }
}

/// Samples `store` every `interval` on a thread of its own.
pub fn spawn(store: Arc<CheckpointStore>, interval: Duration) -> std::io::Result<Arc<Progress>> {
    let progress = Arc::new(Progress::default());
    let out = progress.clone();
    std::thread::Builder::new()
        .name("gleaner-progress".into())
        .spawn(move || {
            let mut sampler = Sampler::default();
            loop {
                std::thread::sleep(interval);
                let now = sampler.sample(&store, Instant::now());
                *out.inputs.lock().unwrap_or_else(|e| e.into_inner()) = now;
            }
        })?;
    Ok(progress)
}

/// Keeps the previous sample for rates and the log state.
#[derive(Default)]
struct Sampler {
    /// Per input: when, and read offsets by file path.
    last: HashMap<String, (Instant, HashMap<String, u64>)>,
    /// Inputs whose backlog is being logged.
    logging: std::collections::HashSet<String>,
}

impl Sampler {
    fn sample(&mut self, store: &CheckpointStore, now: Instant) -> HashMap<String, InputProgress> {
        let mut inputs: HashMap<String, InputProgress> = HashMap::new();
        for (input, tracker) in store.live_files() {
            let id = tracker.identity();
            let path = tracker.path();
            let size = std::fs::metadata(&path)
                .ok()
                .filter(|m| m.dev() == id.dev && m.ino() == id.ino)
                .map_or(0, |m| m.len());
            let read = tracker.registered();
            let committed = tracker.committed();
            let p = inputs.entry(input).or_default();
            p.files += 1;
            // A file gone from its path counts as read to where it is.
            let size = size.max(read);
            p.bytes_total += size;
            p.bytes_read += read;
            p.checkpoint_lag_bytes += size.saturating_sub(committed);
            p.per_file.push(FileProgress {
                path,
                size,
                read,
                committed,
            });
        }
        let mut next_last = HashMap::new();
        for (input, p) in &mut inputs {
            p.backlog_bytes = p.bytes_total.saturating_sub(p.bytes_read);
            p.per_file
                .sort_by_key(|f| std::cmp::Reverse(f.size.saturating_sub(f.read)));
            let offsets: HashMap<String, u64> = p
                .per_file
                .iter()
                .map(|f| (f.path.clone(), f.read))
                .collect();
            if let Some((then, before)) = self.last.get(input) {
                let secs = now.duration_since(*then).as_secs_f64();
                // Only files present in both samples: a new or closed file
                // is not a jump in the rate.
                let moved: u64 = offsets
                    .iter()
                    .filter_map(|(path, read)| before.get(path).map(|b| read.saturating_sub(*b)))
                    .sum();
                if secs > 0.0 {
                    p.bytes_per_second = moved as f64 / secs;
                }
            }
            if p.backlog_bytes > 0 && p.bytes_per_second > 0.0 {
                p.eta_seconds = Some(p.backlog_bytes as f64 / p.bytes_per_second);
            }
            next_last.insert(input.clone(), (now, offsets));
            self.log(input, p);
        }
        for gone in self
            .logging
            .iter()
            .filter(|k| !inputs.contains_key(*k))
            .cloned()
            .collect::<Vec<_>>()
        {
            self.logging.remove(&gone);
            tracing::info!(input = %gone, "Backlog read.");
        }
        self.last = next_last;
        inputs
    }

    fn log(&mut self, input: &str, p: &InputProgress) {
        // Logged from when it is large until it is read.
        if p.backlog_bytes > LOG_BACKLOG_BYTES
            || (p.backlog_bytes > 0 && self.logging.contains(input))
        {
            self.logging.insert(input.to_owned());
            let pct = p.bytes_read as f64 * 100.0 / p.bytes_total.max(1) as f64;
            let eta = p
                .eta_seconds
                .map(|s| {
                    humantime::format_duration(Duration::from_secs(s.ceil() as u64)).to_string()
                })
                .unwrap_or_else(|| "unknown".into());
            tracing::info!(
                input = %input,
                read_mib = p.bytes_read >> 20,
                total_mib = p.bytes_total >> 20,
                percent = format!("{pct:.1}"),
                mib_per_s = format!("{:.1}", p.bytes_per_second / f64::from(1 << 20)),
                eta = %eta,
                "Reading a backlog."
            );
        } else if self.logging.remove(input) {
            tracing::info!(
                input = %input,
                backlog_bytes = p.backlog_bytes,
                "Backlog read."
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ack::{FileIdentity, FileTracker};

    #[test]
    fn backlog_rate_eta_and_lag_from_trackers() {
        let t = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(t.path(), Duration::from_secs(60)).unwrap();
        let path = t.path().join("big.log");
        std::fs::write(&path, vec![b'x'; 1000]).unwrap();
        let m = std::fs::metadata(&path).unwrap();
        let id = FileIdentity {
            dev: m.dev(),
            ino: m.ino(),
            fingerprint: 0,
            fingerprint_len: 0,
            born_ns: 0,
        };
        let tracker = FileTracker::new(id, &path.to_string_lossy(), 0);
        store.track("p/0", &tracker);
        let mut s = Sampler::default();
        let t0 = Instant::now();
        let first = s.sample(&store, t0);
        let p = &first["p/0"];
        assert_eq!(
            (p.files, p.bytes_total, p.bytes_read, p.backlog_bytes),
            (1, 1000, 0, 1000)
        );
        assert_eq!(p.checkpoint_lag_bytes, 1000);
        assert_eq!(p.eta_seconds, None);
        // 400 bytes read in 2 s, 100 of them delivered.
        let delivered = tracker.register(100);
        let _in_flight = tracker.register(400);
        drop(delivered);
        let second = s.sample(&store, t0 + Duration::from_secs(2));
        let p = &second["p/0"];
        assert_eq!(
            (p.bytes_read, p.backlog_bytes, p.checkpoint_lag_bytes),
            (400, 600, 900)
        );
        assert_eq!(p.bytes_per_second, 200.0);
        assert_eq!(p.eta_seconds, Some(3.0));
        assert_eq!(p.per_file[0].committed, 100);
    }
}
