//! The failure policy of a plugin entry, as the data path applies it:
//! retries with backoff, then what happens to the batch (`OnError`,
//! `GiveUp`), and a flusher's spill to its disk buffer (`Spill`). Plain
//! data; `config` resolves it from the file.

use serde::Deserialize;

/// What to do with a batch once retries are exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GiveUp {
    /// Write it to the pipeline's dead-letter file.
    #[default]
    DeadLetter,
    /// Discard it (counted).
    Drop,
    /// Processors only: pass the batch on as it came in.
    Skip,
}

/// Checked spill settings.
#[derive(Debug, Clone, Copy)]
pub struct Spill {
    /// Largest buffer size in bytes.
    pub max_bytes: u64,
    /// When full: drop the oldest segments (else block).
    pub drop_oldest: bool,
}

/// Checked failure policy.
#[derive(Debug, Clone)]
pub struct OnError {
    /// Retries after the first attempt.
    pub retries: u32,
    /// First backoff.
    pub backoff: std::time::Duration,
    /// Longest backoff.
    pub max_backoff: std::time::Duration,
    /// What to do after the retries.
    pub then: GiveUp,
}
