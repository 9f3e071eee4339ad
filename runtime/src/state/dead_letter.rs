//! The dead-letter file of a pipeline: batches that could not be processed
//! or delivered, one JSON object per event, with the plugin and the reason,
//! appended to `<data_dir>/dead-letter/<pipeline>.ndjson`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::model::event::{Batch, value};
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

    /// Writes every event of `batch`; counts them as dead-lettered, or as
    /// dropped if the file cannot be written (and says so).
    pub fn write(&self, plugin: &str, reason: &str, batch: &Batch, stats: &PipelineStats) {
        let mut text = Vec::with_capacity(batch.bodies.len() * 2);
        for i in 0..batch.len() {
            let mut obj = serde_json::Map::new();
            obj.insert("timestamp_ns".into(), batch.timestamps[i].into());
            obj.insert("plugin".into(), plugin.into());
            obj.insert("reason".into(), reason.into());
            let tags: serde_json::Map<_, _> = batch
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect();
            obj.insert("tags".into(), tags.into());
            if let Some(&severity) = batch.severities.get(i).filter(|s| **s != 0) {
                obj.insert("severity".into(), severity.into());
            }
            let fields: serde_json::Map<_, _> = batch
                .fields_of(i)
                .map(|(k, ty, v)| {
                    // A typed value is valid JSON (the layout check saw to it).
                    let typed = (ty != value::STRING)
                        .then(|| serde_json::from_slice::<serde_json::Value>(v).ok())
                        .flatten();
                    let v = typed.unwrap_or_else(|| String::from_utf8_lossy(v).into_owned().into());
                    (k.to_owned(), v)
                })
                .collect();
            obj.insert("fields".into(), fields.into());
            obj.insert(
                "message".into(),
                String::from_utf8_lossy(batch.body(i)).into_owned().into(),
            );
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
