//! `gleaner dead-letter replay`: has a running agent send a pipeline's
//! dead letters back through it (all, or those dead-lettered in a time
//! range), each at the stage that gave it up, and waits until every one
//! is delivered — or given up again, and so back in the dead-letter file.
//!
//! Talks to the agent's local API only; the agent moves and sends the
//! records.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};

use crate::tooling::api_client::{ApiClient, encode};

/// `T` as RFC 3339: given so, or a duration back from now (`2h`).
fn time_arg(flag: &str, v: &str) -> anyhow::Result<String> {
    if humantime::parse_rfc3339_weak(v).is_ok() {
        return Ok(v.to_owned());
    }
    let ago = humantime::parse_duration(v).with_context(|| {
        format!("{flag} {v}: give an RFC 3339 time (2026-11-30T10:00:00Z) or a duration back from now (2h)")
    })?;
    let at = SystemTime::now() - ago;
    Ok(humantime::format_rfc3339_nanos(at).to_string())
}

/// Runs `gleaner dead-letter replay`.
pub fn replay(
    addr: SocketAddr,
    pipeline: &str,
    (since, until): (Option<&str>, Option<&str>),
    wait: bool,
) -> anyhow::Result<()> {
    let api = ApiClient::new(addr);
    let mut path = format!("/api/v1/pipelines/{}/dead-letter/replay?", encode(pipeline));
    for (key, flag, v) in [("since", "--since", since), ("until", "--until", until)] {
        if let Some(v) = v {
            path.push_str(&format!("{key}={}&", encode(&time_arg(flag, v)?)));
        }
    }
    let (_, text) = api.call("POST", path.trim_end_matches(['?', '&']))?;
    let taken: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("the agent answered something else than JSON: {text}"))?;
    let (events, kept) = (
        taken["events"].as_u64().unwrap_or(0),
        taken["kept"].as_u64().unwrap_or(0),
    );
    if events == 0 {
        println!(
            "No dead letters of `{pipeline}` to send back ({kept} in the file did not match)."
        );
        return Ok(());
    }
    eprintln!(
        "Sending {events} dead letters back through `{pipeline}` ({kept} stay in the dead-letter file)."
    );
    if !wait {
        return Ok(());
    }
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let (_, text) = api.call("GET", "/api/v1/pipelines")?;
        let all: serde_json::Value = serde_json::from_str(&text)?;
        let Some(p) = all["pipelines"]
            .as_array()
            .and_then(|l| l.iter().find(|p| p["name"] == pipeline))
        else {
            bail!(
                "pipeline `{pipeline}` stopped before the replay finished; it goes on when the pipeline starts again"
            );
        };
        let r = &p["dead_letter_replay"];
        if r["finished"] == true {
            println!(
                "Sent {} dead letters back through `{pipeline}`: every one delivered (or given up again, and so back in the dead-letter file); {kept} were not chosen and stay.",
                r["events"]
            );
            return Ok(());
        }
    }
}
