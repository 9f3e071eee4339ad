//! Sending a running pipeline's dead letters back through it: what that
//! needs (the pipeline's queue, let go of when the pipeline stops so it can
//! end; batch bounds; dead letters; stop signal; counters), and the replay
//! thread's progress. The sending itself is `data::replay`.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;

use super::processor::{PluginSeries, SharedPluginStats};
use crate::data::batch::Envelope;
use crate::data::replay::{Replay, ReplayStatus, Stages};
use crate::model::shutdown::Shutdown;
use crate::state::dead_letter::{DeadLetter, TakeError};
use crate::telemetry::stats::PipelineStats;

/// What sending dead letters back needs: the pipeline's queue (let go of
/// when the pipeline stops, so it can end), batch bounds, dead letters,
/// stop signal and counters, and the replay's progress and thread.
pub(super) struct Resend {
    pub(super) queue: std::sync::Mutex<Option<Sender<Envelope>>>,
    pub(super) limits: crate::data::batch::BatchLimits,
    pub(super) dead_letter: Arc<DeadLetter>,
    pub(super) shutdown: Arc<Shutdown>,
    pub(super) stats: Arc<PipelineStats>,
    pub(super) status: Arc<std::sync::Mutex<ReplayStatus>>,
    pub(super) thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

/// Why dead letters could not be sent back.
#[derive(Debug, thiserror::Error)]
pub enum ResendError {
    /// The records could not be moved.
    #[error(transparent)]
    Take(#[from] TakeError),
    /// The pipeline is stopping, or runs once (`--exit-on-eof`).
    #[error("the pipeline is stopping or runs once; it takes no dead letters back")]
    Closed,
    /// The replay thread could not start.
    #[error("cannot start sending dead letters back: {0}")]
    Spawn(std::io::Error),
}

impl Resend {
    /// Starts sending the replay file, if there is one.
    pub(super) fn start(&self, name: &str, stages: Stages) -> Result<bool, ResendError> {
        let file = self.dead_letter.replay_path();
        if !file.exists() {
            return Ok(false);
        }
        let Some(out) = self.queue.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
            return Err(ResendError::Closed);
        };
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = ReplayStatus::default();
        let replay = Replay {
            file,
            stages,
            limits: self.limits,
            out,
            shutdown: self.shutdown.clone(),
            stats: self.stats.clone(),
            status: self.status.clone(),
        };
        let t = crate::data::replay::spawn(format!("{name}-resend"), replay)
            .map_err(ResendError::Spawn)?;
        let old = self
            .thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(t);
        if let Some(old) = old {
            // Finished: a new replay starts only once the file is gone.
            let _ = old.join();
        }
        Ok(true)
    }
}

/// The plugins running now, by place, from their published series.
pub(super) fn stages_of(plugins: &SharedPluginStats) -> Stages {
    let set = plugins.lock().unwrap_or_else(|e| e.into_inner());
    let refs = |list: &[PluginSeries]| list.iter().map(|p| p.plugin.clone()).collect();
    Stages {
        processors: refs(&set.processors),
        flushers: refs(&set.flushers),
    }
}
