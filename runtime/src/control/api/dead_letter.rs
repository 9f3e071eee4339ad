//! `POST /api/v1/pipelines/NAME/dead-letter/replay[?since=T&until=T]`:
//! sends a running pipeline's dead letters back through it — all of them,
//! or those dead-lettered in `[since, until)` (RFC 3339 times) — each at
//! the stage that gave it up. Answers at once with how many records were
//! taken; `GET /api/v1/pipelines` shows the replay's progress.
//!
//! Chooses records and hands them to the pipeline; sends nothing itself.

use std::time::UNIX_EPOCH;

use hyper::{Response, StatusCode};
use serde_json::{Map, Value};

use super::{Body, reply};
use crate::control::supervisor::Supervisor;
use crate::data::pipeline::ResendError;

/// The pipeline named in `path`, if it is a replay path.
pub(super) fn replay_target(path: &str) -> Option<&str> {
    path.strip_prefix("/api/v1/pipelines/")?
        .strip_suffix("/dead-letter/replay")
        .filter(|n| !n.is_empty() && !n.contains('/'))
}

/// A time given as RFC 3339, in ns since the epoch.
fn ns(key: &str, v: &str) -> Result<i64, String> {
    humantime::parse_rfc3339_weak(v)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
        .ok_or(format!(
            "`{key}` is not an RFC 3339 time (e.g. 2026-11-30T10:00:00Z): {v}"
        ))
}

/// When a record was dead-lettered (its event's own time for records
/// written before that was noted).
fn when(record: &Map<String, Value>) -> Option<i64> {
    record
        .get("dead_lettered_ns")
        .or_else(|| record.get("timestamp_ns"))
        .and_then(Value::as_i64)
}

/// Answers the replay request for pipeline `name`.
pub(super) fn replay(name: &str, uri: &hyper::Uri, sup: &Supervisor) -> Response<Body> {
    const TEXT: &str = "text/plain; charset=utf-8";
    let q = super::stream::query(uri);
    let bound = |key: &str, default: i64| q.get(key).map_or(Ok(default), |v| ns(key, v));
    let (since, until) = match (bound("since", i64::MIN), bound("until", i64::MAX)) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(e), _) | (_, Err(e)) => return reply(StatusCode::BAD_REQUEST, TEXT, e + "\n"),
    };
    let chosen = move |r: &Map<String, Value>| {
        r.get("message").is_some_and(Value::is_string)
            && r.get("timestamp_ns").is_some_and(Value::is_i64)
            && when(r).is_some_and(|t| since <= t && t < until)
    };
    match sup.with_pipeline(name, |p, _| p.resend_dead_letters(&chosen)) {
        None => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            format!("no pipeline `{name}` runs\n"),
        ),
        Some(Ok(taken)) => {
            tracing::info!(pipeline = %name, events = taken.events, kept = taken.kept, "Sending dead letters back.");
            reply(
                if taken.events > 0 {
                    StatusCode::ACCEPTED
                } else {
                    StatusCode::OK
                },
                "application/json",
                serde_json::json!({"pipeline": name, "events": taken.events, "kept": taken.kept})
                    .to_string(),
            )
        }
        Some(Err(e @ ResendError::Take(crate::state::dead_letter::TakeError::Busy(_)))) => {
            reply(StatusCode::CONFLICT, TEXT, format!("{e}\n"))
        }
        Some(Err(e @ ResendError::Closed)) => {
            reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, format!("{e}\n"))
        }
        Some(Err(e)) => reply(StatusCode::INTERNAL_SERVER_ERROR, TEXT, format!("{e}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_path_names_one_pipeline() {
        assert_eq!(
            replay_target("/api/v1/pipelines/web/dead-letter/replay"),
            Some("web")
        );
        assert_eq!(replay_target("/api/v1/pipelines//dead-letter/replay"), None);
        assert_eq!(
            replay_target("/api/v1/pipelines/a/b/dead-letter/replay"),
            None
        );
    }

    #[test]
    fn times_are_rfc3339_and_records_are_placed_by_when_they_were_dead_lettered() {
        assert_eq!(ns("since", "1970-01-01T00:00:01Z"), Ok(1_000_000_000));
        assert!(ns("since", "yesterday").unwrap_err().contains("`since`"));
        let r = serde_json::json!({"timestamp_ns": 5, "dead_lettered_ns": 9});
        assert_eq!(when(r.as_object().unwrap()), Some(9));
        let old = serde_json::json!({"timestamp_ns": 5});
        assert_eq!(when(old.as_object().unwrap()), Some(5));
    }
}
