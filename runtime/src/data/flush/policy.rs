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

/// What to do after a failed call, by the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The destination asked to be tried again (a flusher's `retryable`):
    /// wait with backoff, keep the batch (or spill it).
    Later,
    /// A trap (panic, deadline, out of memory) with retries left: rebuild
    /// the instance and try the batch again.
    Retry,
    /// Rejected, failed, or out of retries: dead-letter, drop or skip.
    GiveUp,
}

impl OnError {
    /// What follows `err` after `retried` retries of the batch so far.
    pub fn after(&self, err: &crate::plugin::CallError, retried: u32) -> Step {
        use crate::plugin::CallError;
        match err {
            CallError::Retryable(_) => Step::Later,
            CallError::Trap(_) if retried < self.retries => Step::Retry,
            _ => Step::GiveUp,
        }
    }

    /// The wait after `backoff`: doubled, at most `max_backoff`.
    pub fn next_backoff(&self, backoff: std::time::Duration) -> std::time::Duration {
        (backoff * 2).min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::plugin::CallError;

    fn policy(retries: u32) -> OnError {
        OnError {
            retries,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            then: GiveUp::DeadLetter,
        }
    }

    #[test]
    fn traps_are_retried_as_often_as_the_policy_says_then_given_up() {
        let p = policy(2);
        let trap = CallError::Trap("boom".into());
        assert_eq!(p.after(&trap, 0), Step::Retry);
        assert_eq!(p.after(&trap, 1), Step::Retry);
        assert_eq!(p.after(&trap, 2), Step::GiveUp);
        assert_eq!(policy(0).after(&trap, 0), Step::GiveUp);
    }

    #[test]
    fn a_retryable_answer_waits_and_a_rejection_is_never_retried() {
        let p = policy(5);
        assert_eq!(p.after(&CallError::Retryable("503".into()), 9), Step::Later);
        assert_eq!(p.after(&CallError::Rejected("400".into()), 0), Step::GiveUp);
        assert_eq!(p.after(&CallError::Failed("bad".into()), 0), Step::GiveUp);
    }

    #[test]
    fn backoff_doubles_up_to_its_maximum() {
        let p = policy(1);
        let b = p.next_backoff(p.backoff);
        assert_eq!(b, Duration::from_millis(200));
        assert_eq!(p.next_backoff(b), Duration::from_millis(350));
    }
}
