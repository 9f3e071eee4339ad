//! The dead-letter file of a pipeline: batches that could not be processed
//! or delivered, one JSON object per event, with the stage, the plugin, the
//! reason and the time, appended to `<data_dir>/dead-letter/<pipeline>.ndjson`.
//! For `gleaner dead-letter replay`, it moves the records chosen out of
//! that file into `<pipeline>.replay.ndjson` (which `data::replay` sends
//! back through the pipeline), under the same lock the writers take.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::{Map, Value};

use crate::model::event::{Batch, json};

/// What [`DeadLetter::take`] moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Taken {
    /// Records moved to the replay file.
    pub events: usize,
    /// Records left in the dead-letter file.
    pub kept: usize,
}

/// Why records could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    /// A replay has not finished.
    #[error("a replay is still in progress ({} exists)", .0.display())]
    Busy(PathBuf),
    /// Reading or writing failed.
    #[error("{path}: {source}", path = .0.display(), source = .1)]
    Io(PathBuf, std::io::Error),
}

/// Writes `bytes` to `path` through a temporary file, synced, then renamed.
fn write_synced(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}
use crate::telemetry::stats::PipelineStats;

/// Appends given-up batches to a file.
pub struct DeadLetter {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl DeadLetter {
    /// A dead-letter file at `path` (created on first use).
    pub fn new(path: PathBuf) -> Self {
        DeadLetter {
            path,
            file: Mutex::new(None),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Where records being sent back wait until they are delivered.
    pub fn replay_path(&self) -> PathBuf {
        self.path.with_extension("replay.ndjson")
    }

    /// Moves the records `chosen` picks out of the dead-letter file into
    /// [`DeadLetter::replay_path`] (written and synced before the
    /// dead-letter file is rewritten without them). Lines that are not
    /// JSON objects stay. Fails without moving anything if a replay file is
    /// already there.
    pub fn take(&self, chosen: &dyn Fn(&Map<String, Value>) -> bool) -> Result<Taken, TakeError> {
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let replay = self.replay_path();
        if replay.exists() {
            return Err(TakeError::Busy(replay));
        }
        let text = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(TakeError::Io(self.path.clone(), e)),
        };
        let (mut taken, mut kept) = (Vec::new(), Vec::new());
        let mut taken_events = 0;
        for line in text.split_inclusive(|b| *b == b'\n') {
            let obj = serde_json::from_slice::<Map<String, Value>>(line).ok();
            if obj.as_ref().is_some_and(chosen) {
                taken.extend_from_slice(line);
                taken_events += 1;
            } else {
                kept.extend_from_slice(line);
            }
        }
        let outcome = Taken {
            events: taken_events,
            kept: text.split_inclusive(|b| *b == b'\n').count() - taken_events,
        };
        if taken_events == 0 {
            return Ok(outcome);
        }
        write_synced(&replay, &taken).map_err(|e| TakeError::Io(replay.clone(), e))?;
        if let Err(e) = write_synced(&self.path, &kept) {
            let _ = std::fs::remove_file(&replay);
            return Err(TakeError::Io(self.path.clone(), e));
        }
        // The next write opens the new file.
        *guard = None;
        Ok(outcome)
    }

    /// Writes every event of `batch`, given up by `plugin` at `stage`
    /// (`processor:N` or `flusher:N`, by place in the pipeline's config):
    /// counts them as dead-lettered, or as dropped if the file cannot be
    /// written (and says so).
    pub fn write(
        &self,
        (stage, plugin): (&str, &str),
        reason: &str,
        batch: &Batch,
        stats: &PipelineStats,
    ) {
        let mut text = Vec::with_capacity(batch.bodies.len() * 2);
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        for i in 0..batch.len() {
            let mut obj = json::event_object(batch, i);
            obj.insert("plugin".into(), plugin.into());
            obj.insert("stage".into(), stage.into());
            obj.insert("reason".into(), reason.into());
            obj.insert("dead_lettered_ns".into(), now_ns.into());
            if serde_json::to_writer(&mut text, &obj).is_ok() {
                text.push(b'\n');
            }
        }
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let result = (|| -> std::io::Result<()> {
            if guard.is_none() {
                if let Some(dir) = self.path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                *guard = Some(
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&self.path)?,
                );
            }
            match guard.as_mut() {
                Some(f) => f.write_all(&text),
                None => Ok(()),
            }
        })();
        match result {
            Ok(()) => {
                stats.events_dead_lettered.add(batch.len() as u64);
                tracing::warn!(path = %self.path.display(), events = batch.len(), plugin, reason, "Wrote a batch to the dead-letter file.");
            }
            Err(e) => {
                stats.events_dropped.add(batch.len() as u64);
                tracing::error!(path = %self.path.display(), error = %e, events = batch.len(), "Cannot write the dead-letter file; the batch is dropped.");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_moves_the_chosen_records_and_later_writes_go_to_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let dl = DeadLetter::new(dir.path().join("p.ndjson"));
        let stats = PipelineStats::default();
        let mut b = Batch::default();
        for i in 0..4 {
            b.push(i, format!("e{i}").as_bytes());
        }
        dl.write(("flusher:0", "builtin:x"), "down", &b, &stats);
        let odd = |o: &Map<String, Value>| o["timestamp_ns"].as_i64().unwrap() % 2 == 1;
        assert_eq!(dl.take(&odd).unwrap(), Taken { events: 2, kept: 2 });
        assert!(matches!(dl.take(&odd), Err(TakeError::Busy(_))));
        let lines = |p: &std::path::Path| -> Vec<String> {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| {
                    serde_json::from_str::<Value>(l).unwrap()["message"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
                .collect()
        };
        assert_eq!(lines(&dl.replay_path()), ["e1", "e3"]);
        let mut c = Batch::default();
        c.push(9, b"later");
        dl.write(("processor:1", "builtin:y"), "bad", &c, &stats);
        assert_eq!(lines(dl.path()), ["e0", "e2", "later"]);
        let rec: Value = serde_json::from_str(
            std::fs::read_to_string(dl.path())
                .unwrap()
                .lines()
                .last()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            (rec["stage"].as_str(), rec["plugin"].as_str()),
            (Some("processor:1"), Some("builtin:y"))
        );
        assert!(rec["dead_lettered_ns"].as_i64().unwrap() > 0);
    }
}
